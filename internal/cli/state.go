package cli

import (
	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/state"
	"github.com/tandem-ota/tandem/internal/state/initsys"
)

func (a *app) initCommand() *cobra.Command {
	return &cobra.Command{Use: "init [ARG...]", Short: "Run as the system's first process: mount the state, then exec the real init (docs/state.md)",
		DisableFlagParsing: true, RunE: func(_ *cobra.Command, args []string) error { return initsys.Main(args) }}
}

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
		RunE: a.onDevice(func(d *device.Device, _ []string) error {
			active, err := d.ActiveGroup()
			if err != nil {
				return err
			}
			r, err := state.Inspect(d.FS, d.Config.DataDir, active)
			if err != nil {
				return err
			}
			return a.show(a.jsonOut, r, r.WriteText)
		}),
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print one JSON document")
	return cmd
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
		RunE: a.onDevice(func(d *device.Device, _ []string) error {
			if err := d.ResetState(keep, reboot); err != nil {
				return err
			}
			a.printf("factory reset pending: the next boot starts with clean state\n")
			if !reboot {
				a.printf("next: reboot the device (or run `tandem state reset --reboot`)\n")
			} else if d.Sim != nil {
				a.printf("reboot recorded; run `tandem sim reboot %s` to boot\n", a.root)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&keep, "keep-backup", false, "keep the old state on the data partition instead of wiping it")
	cmd.Flags().BoolVar(&reboot, "reboot", false, "reboot at once")
	return cmd
}
