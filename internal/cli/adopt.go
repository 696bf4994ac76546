package cli

import (
	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/adopt"
)

func (a *app) adoptCommand() *cobra.Command {
	var o adopt.Options
	cmd := &cobra.Command{
		Use:   "adopt [--from mender|rauc|rugix] [--write [--force]]",
		Short: "Print (--write: write) the system.toml that drives the boot integration Mender, RAUC or Rugix left here",
		Args:  exactArgs(0),
		RunE: func(*cobra.Command, []string) error {
			return adopt.Run(o, a.root, a.configPath, a.env.Stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.From, "from", "", "the system to adopt: mender, rauc or rugix (default: the one found)")
	f.StringVar(&o.Compatible, "compatible", "", "compatible string (default: Mender's device_type, RAUC's compatible)")
	f.StringVar(&o.ConfigDir, "config-dir", "", "where Rugix's config partition is mounted (default: looked for)")
	f.BoolVar(&o.Write, "write", false, "write the configuration to --config instead of printing it")
	f.BoolVar(&o.Force, "force", false, "with --write: replace an existing configuration")
	return cmd
}
