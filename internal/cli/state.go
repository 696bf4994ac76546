package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/state"
)

func (a *app) stateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Show and reset the device's state: data partition, persistent paths, trial snapshot",
		Long: `The state is what the device writes that is not a system copy. It lives on the data
partition declared in /etc/tandem/state.d/*.toml; a trial sees a snapshot of it, a rollback
returns to the state as it was. docs/state.md has the model and the configuration.`,
	}
	cmd.AddCommand(a.stateInfoCommand(), a.stateResetCommand())
	return cmd
}

func (a *app) stateInfoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show the data partition, overlay mode, persistent paths with sizes, pending reset and trial snapshot",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.open()
			if err != nil {
				return err
			}
			active, err := d.ActiveGroup()
			if err != nil {
				return err
			}
			r, err := state.Inspect(d.FS, d.Config.DataDir, active)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(r)
			}
			a.printStateInfo(r)
			return nil
		},
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print one JSON document")
	return cmd
}

func (a *app) printStateInfo(r *state.Report) {
	a.printf("status          %s\n", r.Status)
	if r.DataPartition == nil {
		a.printf("data partition  none configured (%s/*.toml)\n", state.ConfigDir)
	} else {
		a.printf("data partition  %s on %s\n", r.DataPartition.Device, r.DataPartition.Mount)
		a.printf("overlay         %s\n", r.Overlay)
	}
	if r.Committed != nil {
		a.printf("committed       generation %d (group %s)\n", r.Committed.Gen, orNone(r.Committed.Group))
	}
	if r.Trial != nil {
		a.printf("trial snapshot  generation %d for group %s\n", r.Trial.Gen, r.Trial.Group)
	} else {
		a.printf("trial snapshot  none\n")
	}
	switch {
	case r.ResetPending == nil:
		a.printf("reset           not pending\n")
	case r.ResetPending.KeepBackup:
		a.printf("reset           pending at the next boot (the old state is kept as a backup)\n")
	default:
		a.printf("reset           pending at the next boot\n")
	}
	if r.Backup != nil {
		a.printf("backup          generations %d and %d (shared)\n", r.Backup.Gen, r.Backup.Shared)
	}
	if len(r.Paths) == 0 {
		a.printf("persistent paths  none\n")
		return
	}
	a.printf("persistent paths\n")
	for _, p := range r.Paths {
		shared := ""
		if p.Shared {
			shared = ", shared"
		}
		a.printf("  %-30s %s%s, %d bytes\n", p.Path, p.Type, shared, p.Size)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none yet"
	}
	return s
}

func (a *app) stateResetCommand() *cobra.Command {
	var keep, reboot bool
	cmd := &cobra.Command{
		Use:   "reset [--keep-backup] [--reboot]",
		Short: "Ask for a factory reset of the state at the next boot",
		Long: `Record a factory reset: at the next boot, before anything uses it, the state is replaced
by a clean one (seeded again from the system image). The old state is wiped, or kept aside
with --keep-backup. tandem's own data directory is kept. A power cut leaves either the old
state with the reset still pending, or the clean state. Without --reboot nothing happens
until the next boot.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.open()
			if err != nil {
				return err
			}
			if err := d.CheckNotHung(); err != nil {
				return err
			}
			unlock, err := d.Lock()
			if err != nil {
				return err
			}
			err = state.RequestReset(d.FS, keep)
			unlock()
			if err != nil {
				return err
			}
			a.printf("factory reset pending: the next boot starts with clean state\n")
			if !reboot {
				a.printf("next: reboot the device (or run `tandem state reset --reboot`)\n")
				return nil
			}
			if err := d.Reboot(); err != nil {
				return fmt.Errorf("the reset is pending, but the reboot failed: %w", err)
			}
			if d.Sim != nil {
				a.printf("reboot recorded; run `tandem sim reboot %s` to boot\n", a.root)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&keep, "keep-backup", false, "keep the old state on the data partition instead of wiping it")
	cmd.Flags().BoolVar(&reboot, "reboot", false, "reboot at once")
	return cmd
}
