package api

import (
	"context"
	"fmt"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/install"
)

// Local runs the operations in this process on the device Open opens (a
// fresh Device per call: the device's state changes between calls).
type Local struct {
	Open func() (*device.Device, error)
	// Warn receives install warnings (an insecure install); nil drops them.
	Warn func(string)
}

var _ Ops = Local{}

// Info implements Ops.
func (l Local) Info(context.Context) (*device.Info, error) {
	d, err := l.Open()
	if err != nil {
		return nil, err
	}
	return d.Info()
}

// Install implements Ops with install.Install and install.Activate, the
// one install path the CLI and the fleet adapters share.
func (l Local) Install(ctx context.Context, r InstallRequest, progress func(install.Event)) (*install.Result, error) {
	mode := r.Reboot
	if mode == "" {
		mode = install.RebootNo
	}
	if _, err := install.ParseReboot(string(mode)); err != nil {
		return nil, &Error{Status: 400, Kind: KindUsage, Message: "reboot " + err.Error()}
	}
	d, err := l.Open()
	if err != nil {
		return nil, err
	}
	o := r.Options
	o.Progress.Event, o.Progress.Warn = progress, l.Warn
	res, err := install.Install(ctx, d, o)
	if err != nil {
		return nil, err
	}
	return res, install.Activate(d, res, mode)
}

// Commit implements Ops.
func (l Local) Commit(_ context.Context, r CommitRequest) (*CommitResult, error) {
	d, err := l.Open()
	if err != nil {
		return nil, err
	}
	d.ForceIncomplete = r.ForceIncomplete
	changed, err := d.Commit()
	if err != nil {
		return nil, err
	}
	st, err := d.Status()
	if err != nil {
		return nil, err
	}
	return &CommitResult{Changed: changed, Default: st.Default}, nil
}

// Reboot implements Ops.
func (l Local) Reboot(_ context.Context, r RebootRequest) (*RebootResult, error) {
	d, err := l.Open()
	if err != nil {
		return nil, err
	}
	res := &RebootResult{}
	if r.Spare {
		d.ForceIncomplete = r.ForceIncomplete
		if res.Trial, err = d.TrySpare(); err != nil {
			return nil, err
		}
	}
	if err := d.Reboot(); err != nil {
		if res.Trial != "" {
			return nil, fmt.Errorf("group %s boots on trial at the next boot, but the reboot failed: %w", res.Trial, err)
		}
		return nil, err
	}
	if d.Sim != nil {
		res.Simulated, res.Root = true, d.Root
	}
	return res, nil
}

// MarkBad implements Ops.
func (l Local) MarkBad(_ context.Context, r MarkBadRequest) error {
	d, err := l.Open()
	if err != nil {
		return err
	}
	reason := r.Reason
	if reason == "" {
		reason = "marked bad through the API"
	}
	_, err = d.MarkBadWithReason(r.Group, reason)
	return err
}

// ResetState implements Ops.
func (l Local) ResetState(_ context.Context, r ResetRequest) error {
	d, err := l.Open()
	if err != nil {
		return err
	}
	return d.ResetState(r.Backup, r.Reboot)
}
