package cli

import (
	"errors"
	"slices"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/channel"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/signature"

	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/health"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Exit codes, the only place they are decided (documented in docs/cli.md).
const (
	ExitOK        = 0  // success (also: nothing to do, e.g. commit of the default group)
	ExitFailure   = 1  // the operation failed (I/O, a tool or controller failed)
	ExitUsage     = 2  // wrong command line
	ExitConfig    = 3  // the configuration is missing or invalid
	ExitRefused   = 4  // refused by a safety rule, or the running group is unknown
	ExitBootState = 5  // the boot loader's state is unreadable or corrupt
	ExitBundle    = 6  // the bundle or channel file was rejected: malformed, unverified, not for this device
	ExitUnhealthy = 7  // tandem health rolled the trial back, or (--once) the checks fail
	ExitPowerCut  = 10 // a simulated power cut stopped the command (simulated devices only)
)

// usageError marks errors of the command line.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// exitCode maps an error to the process exit status.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return ExitUsage
	case errors.Is(err, rootfs.ErrPowerCut):
		return ExitPowerCut
	case errors.Is(err, config.ErrInvalid), errors.As(err, new(device.ConfigError)):
		return ExitConfig
	case errors.Is(err, device.ErrRefused), errors.Is(err, device.ErrNoActiveGroup):
		return ExitRefused
	case errors.Is(err, bootflow.ErrBootState):
		return ExitBootState
	case errors.Is(err, health.ErrUnhealthy):
		return ExitUnhealthy
	case slices.ContainsFunc(bundleErrs, func(e error) bool { return errors.Is(err, e) }):
		return ExitBundle
	}
	return ExitFailure
}

var bundleErrs = []error{
	bundle.ErrFormat, bundle.ErrVersion, bundle.ErrTooLarge, bundle.ErrTruncated, bundle.ErrTrailing,
	bundle.ErrDigest, bundle.ErrChunk, bundle.ErrVerify,
	signature.ErrNoTrust, signature.ErrUnsigned, signature.ErrUntrusted, signature.ErrBadSignature, signature.ErrExpired,
	install.ErrIncompatible, install.ErrDowngrade, install.ErrPayload, install.ErrUnsafeTree,
	channel.ErrFormat, channel.ErrWrongChannel, channel.ErrReplay, channel.ErrExpired,
}
