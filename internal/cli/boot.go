package cli

import (
	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/device"
)

func (a *app) bootCommand() *cobra.Command {
	return group("boot", "Mark the running trial good, or a trial bad (docs/boot-flows.md)",
		a.markCommand("mark-good [GROUP]", "Commit the running group, as system commit does",
			cobra.MaximumNArgs(1), (*device.Device).MarkGood),
		a.markCommand("mark-bad GROUP", "End GROUP's trial: the boot loader does not start it again",
			cobra.ExactArgs(1), (*device.Device).MarkBad))
}

func (a *app) markCommand(use, short string, args cobra.PositionalArgs, mark func(*device.Device, string) (device.Mark, error)) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: usageArgs(args), RunE: a.onDevice(func(d *device.Device, args []string) error {
		m, err := mark(d, append(args, "")[0])
		if err == nil {
			a.printf("%s\n", m)
		}
		return err
	})}
}
