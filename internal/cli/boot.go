package cli

import (
	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/device"
)

func (a *app) bootCommand() *cobra.Command {
	return group("boot", "Mark the running trial good, or a trial bad (boot flows that count attempts)",
		a.markCommand("mark-good [GROUP]", "Keep the running group: commit it, as system commit does", cobra.RangeArgs(0, 1)),
		a.markCommand("mark-bad GROUP", "End GROUP's trial: the boot loader does not start it again", cobra.ExactArgs(1)))
}

func (a *app) markCommand(use, short string, args cobra.PositionalArgs) *cobra.Command {
	good := use[:9] == "mark-good"
	return &cobra.Command{Use: use, Short: short, Long: short + `.
mark-good takes only the running group (the default when GROUP is left out). mark-bad
refuses the default group; on a running trial it records the update as rolled back, and
the next reboot starts the default (docs/cli.md, docs/boot-flows.md).`,
		Args: func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: a.onDevice(func(d *device.Device, args []string) error {
			mark := d.MarkBad
			if good {
				mark = d.MarkGood
			}
			m, err := mark(append(args, "")[0])
			if err != nil {
				return err
			}
			a.printf("%s\n", m)
			return nil
		})}
}
