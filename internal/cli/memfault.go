package cli

import (
	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/fleet/memfault"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

func (a *app) memfaultCommand() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "memfault ddi|poll",
		Short: "Take updates from Memfault (its hawkBit endpoint or its releases API)",
		Long: `Connect the device to Memfault's OTA service, configured in /etc/tandem/memfault.toml
(project-key, device-serial, hardware-version, software-type; docs/integrations/memfault.md).
Two ways, pick one:

  tandem memfault ddi     # Memfault's hawkBit-compatible endpoint: tandem hawkbit with Memfault's
                          # conventions (gateway token = project key, memfault__* attributes)
  tandem memfault poll    # the releases API: GET /api/v0/releases/latest every poll.interval;
                          # 204 = no update, 503/429 wait for Retry-After

Either way the release's artifact is a tandem bundle; it is installed into the spare group, booted
on trial and kept only when tandem health commits it. A release that failed on the device is not
installed again by the poller until Memfault offers another version.`,
	}
	cmd.PersistentFlags().StringVar(&path, "memfault-config", memfault.DefaultConfigPath, "device path of the Memfault configuration")

	var df ddiFlags
	ddi := &cobra.Command{
		Use:   "ddi [--once]",
		Short: "Run the hawkBit (DDI) client against Memfault's endpoint",
		Args:  exactArgs(0),
		RunE: func(*cobra.Command, []string) error {
			h, err := memfault.LoadDDIConfig(rootfs.Join(a.root, path))
			if err != nil {
				return err
			}
			return a.runDDI(h, df)
		},
	}
	df.add(ddi, a)

	var pf ddiFlags
	poll := &cobra.Command{
		Use:   "poll [--once]",
		Short: "Poll Memfault's releases API and install what it offers",
		Args:  exactArgs(0),
		RunE: func(*cobra.Command, []string) error {
			c, err := memfault.LoadConfig(rootfs.Join(a.root, path))
			if err != nil {
				return err
			}
			p, err := memfault.NewPoller(c, a.open, install.Options{Trust: install.Trust{Files: pf.trust}}, a.logger())
			if err != nil {
				return err
			}
			return a.runAdapter(p, c.Loop(), pf.loopFlags)
		},
	}
	pf.add(poll, a)
	cmd.AddCommand(ddi, poll)
	return cmd
}
