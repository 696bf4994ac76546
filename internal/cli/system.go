package cli

import (
	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/api"
	"github.com/tandem-ota/tandem/internal/device"
)

func (a *app) systemCommand() *cobra.Command {
	return group("system", "Show and change the boot state: info, commit, reboot", a.infoCommand(), a.commitCommand(), a.rebootCommand())
}

func (a *app) infoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show the boot flow, the active, default and spare groups, slots and the last update",
		Long: `Show the boot state. With --json, print one JSON document (camelCase, described in
docs/cli.md), e.g.

  tandem system info --json | jq -r .boot.activeGroup`,
		Args: exactArgs(0),
		RunE: a.onDevice(func(d *device.Device, _ []string) error {
			info, err := d.Info()
			if err != nil {
				return err
			}
			return a.show(a.jsonOut, info, info.WriteText)
		}),
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print one JSON document")
	return cmd
}

func (a *app) commitCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "commit",
		Short: "Make the running group the default (keep a trial)",
		Long: `Make the active group the default, so that it keeps booting. Run it once the new system
is known to work (tandem's health check will do it for you). If the active group already
is the default, nothing is committed and the exit status is 0. A group whose install was
interrupted (incomplete in system info) is refused (exit 4) unless --force-incomplete.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := a.ops().Commit(cmd.Context(), api.CommitRequest{ForceIncomplete: force})
			if err == nil && res.Changed {
				a.printf("committed: group %s is now the default\n", res.Default)
			} else if err == nil {
				a.printf("nothing to commit: group %s already is the default\n", res.Default)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&force, forceIncompleteFlag, false, "commit the running group even if its install did not finish")
	return cmd
}

// forceIncompleteFlag overrides the refusal to try or commit a group whose
// install was interrupted (device.ErrIncomplete).
const forceIncompleteFlag = "force-incomplete"

func (a *app) rebootCommand() *cobra.Command {
	var spare, force bool
	cmd := &cobra.Command{
		Use:   "reboot [--spare]",
		Short: "Reboot, optionally into the spare group on trial",
		Long: `Reboot the device. With --spare, first ask the boot loader to start the spare group
once on trial; if that system does not commit itself, the next boot returns to the default.
A spare group whose install was interrupted (incomplete in system info) is refused (exit 4)
unless --force-incomplete. On a simulated device the reboot is recorded; "tandem sim reboot
DIR" performs it.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := a.ops().Reboot(cmd.Context(), api.RebootRequest{Spare: spare, ForceIncomplete: force})
			if err != nil {
				return err
			}
			if res.Trial != "" {
				a.printf("group %s boots on trial at the next boot\n", res.Trial)
			}
			if res.Simulated {
				a.printf("reboot recorded; run `tandem sim reboot %s` to boot\n", res.Root)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&spare, "spare", false, "boot the spare group once on trial")
	cmd.Flags().BoolVar(&force, forceIncompleteFlag, false, "with --spare: try the spare group even if its install did not finish")
	return cmd
}
