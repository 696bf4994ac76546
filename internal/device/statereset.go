package device

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/tandem-ota/tandem/internal/hooks"
	"github.com/tandem-ota/tandem/internal/state"
)

// RequestStateReset records a factory reset of the state for the next boot
// (state.RequestReset), under the device lock, between the hooks
// state-reset/pre — whose failure aborts it: nothing is recorded — and
// state-reset/post (docs/hooks.md). The reset itself happens at the next
// boot, in tandem init, before the system runs: no hook runs then.
func (d *Device) RequestStateReset(keepBackup bool) error {
	c, err := state.Load(d.FS)
	if err != nil {
		return err
	}
	if !c.Managed() {
		return state.ErrNotManaged
	}
	env := "TANDEM_KEEP_BACKUP=" + strconv.FormatBool(keepBackup)
	return d.WithLock(func() error {
		if err := hooks.Run(d.FS, d.Config.HooksDir, "state-reset", "pre", env); err != nil {
			return err
		}
		if err := state.RequestReset(d.FS, keepBackup); err != nil {
			return err
		}
		if err := hooks.Run(d.FS, d.Config.HooksDir, "state-reset", "post", env); err != nil {
			return fmt.Errorf("the reset is pending, but %w", err)
		}
		return nil
	})
}

// checkStateSpace refuses a trial when the data partition cannot hold the
// snapshot of the state it will take at its first boot (docs/state.md, What
// a trial costs). Only a shortage refuses: without state configuration, with
// an unreadable one (tandem init boots degraded on it) or without a layout
// on the data partition there is nothing to check.
func (d *Device) checkStateSpace() error {
	_, err := state.CheckTrialSpace(d.FS, d.Config.DataDir, d.StateFree)
	if errors.Is(err, state.ErrNoSpace) {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return nil
}

// ResetState is `tandem state reset` and rugix-ctrl's: RequestStateReset,
// then, with reboot, the reboot (recorded on a simulated device).
func (d *Device) ResetState(keepBackup, reboot bool) error {
	if err := d.RequestStateReset(keepBackup); err != nil {
		return err
	}
	if !reboot {
		return nil
	}
	if err := d.Reboot(); err != nil {
		return fmt.Errorf("the reset is pending, but the reboot failed: %w", err)
	}
	return nil
}
