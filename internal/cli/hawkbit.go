package cli

import (
	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// ddiFlags are the flags of the polling adapters (hawkbit, memfault ddi
// and poll).
type ddiFlags struct {
	loopFlags
	trust []string
}

func (f *ddiFlags) add(cmd *cobra.Command, a *app) {
	f.loopFlags.add(cmd, a)
	cmd.Flags().StringArrayVar(&f.trust, "trust", nil, "extra trusted public key or root certificate for bundles (PEM, repeatable)")
}

func (a *app) hawkbitCommand() *cobra.Command {
	var f ddiFlags
	var path, preset string
	cmd := &cobra.Command{
		Use:   "hawkbit [--hawkbit-config /etc/tandem/hawkbit.toml] [--preset memfault] [--once]",
		Short: "Take updates from an Eclipse hawkBit server (DDI API): poll, install, trial, report after the commit",
		Long: `Run tandem as the device's hawkBit client (Direct Device Integration API). It polls the
controller base resource at the interval the server asks for (bounded by poll.min and poll.max,
with ETag), sends the device's attributes when the server asks for configData, and takes
deployment actions: the bundle (one *.tandem artifact) is installed into the spare group by
delta download, the device reboots into it on trial, and the action is closed with success only
after tandem health committed the new group — with failure and the reason after a rollback, a
trial that never came up or a rejected bundle. An interrupted download resumes; a cancel is
accepted until the trial is set and refused after.

The configuration (server, tenant, controller-id, target-token or gateway-token or a client
certificate, ca-file; docs/integrations/hawkbit.md):

  tandem hawkbit                  # run (the systemd unit tandem-hawkbit.service does this)
  tandem hawkbit --once --json    # one step, machine-readable
  tandem hawkbit --preset memfault # Memfault's DDI endpoint (gateway-token = project key)

Exit codes: 0 stopped by a signal or --once done; 3 bad configuration; others as for every
command (docs/cli.md).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := hawkbit.LoadConfig(rootfs.Join(a.root, path), preset)
			if err != nil {
				return err
			}
			return a.runDDI(c, f)
		},
	}
	cmd.Flags().StringVar(&path, "hawkbit-config", hawkbit.DefaultConfigPath, "device path of the hawkBit client configuration")
	cmd.Flags().StringVar(&preset, "preset", "", "server conventions to apply: memfault")
	f.add(cmd, a)
	return cmd
}

// runDDI runs the DDI adapter the configuration describes.
func (a *app) runDDI(c *hawkbit.Config, f ddiFlags) error {
	ad, err := hawkbit.New(c, a.open, install.Options{Trust: install.Trust{Files: f.trust}}, a.logger())
	if err != nil {
		return err
	}
	return a.runAdapter(ad, c.Loop(), f.loopFlags)
}
