package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/signature"
)

// kindErrors are the sentinels a Client's errors unwrap to, by kind.
var kindErrors = map[string]error{
	KindBusy:      device.ErrRefused,
	KindRefused:   device.ErrRefused,
	KindBundle:    bundle.ErrVerify,
	KindConfig:    config.ErrInvalid,
	KindBootState: bootflow.ErrBootState,
	KindCancelled: ErrCancelled,
}

// bundleErrs are the errors of a rejected bundle (the CLI's exit 6).
var bundleErrs = []error{
	bundle.ErrFormat, bundle.ErrVersion, bundle.ErrTooLarge, bundle.ErrTruncated, bundle.ErrTrailing,
	bundle.ErrDigest, bundle.ErrChunk, bundle.ErrVerify,
	signature.ErrNoTrust, signature.ErrUnsigned, signature.ErrUntrusted, signature.ErrBadSignature, signature.ErrExpired,
	install.ErrIncompatible, install.ErrDowngrade, install.ErrPayload, install.ErrUnsafeTree,
}

// asError turns err into the API's answer: its kind and HTTP status.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	status, kind := http.StatusInternalServerError, KindFailure
	var mb *http.MaxBytesError
	switch {
	case errors.Is(err, ErrCancelled), errors.Is(err, context.Canceled):
		status, kind = 499, KindCancelled
	case errors.As(err, &mb):
		status, kind = http.StatusRequestEntityTooLarge, KindTooLarge
	case errors.Is(err, config.ErrInvalid), errors.As(err, new(device.ConfigError)):
		kind = KindConfig
	case errors.Is(err, device.ErrRefused), errors.Is(err, device.ErrNoActiveGroup):
		status, kind = http.StatusConflict, KindRefused
	case errors.Is(err, bootflow.ErrBootState):
		kind = KindBootState
	case slices.ContainsFunc(bundleErrs, func(s error) bool { return errors.Is(err, s) }):
		status, kind = http.StatusUnprocessableEntity, KindBundle
	}
	return &Error{Status: status, Kind: kind, Message: oneLine(err.Error()), err: err}
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }
