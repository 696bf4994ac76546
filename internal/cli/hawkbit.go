package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// ddiFlags are the flags every DDI command (hawkbit, memfault ddi) has.
type ddiFlags struct {
	once  bool
	trust []string
}

func (f *ddiFlags) add(cmd *cobra.Command, a *app) {
	cmd.Flags().BoolVar(&f.once, "once", false, "do one step (poll, report, install or reboot) and exit")
	cmd.Flags().StringArrayVar(&f.trust, "trust", nil, "extra trusted public key or root certificate for bundles (PEM, repeatable)")
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print one JSON line per event")
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

The configuration (docs/integrations/hawkbit.md):

  server = "https://hawkbit.example.com"
  tenant = "DEFAULT"
  controller-id = "device-0001"
  target-token = "…"            # or gateway-token = "…", or a client certificate
  ca-file = "/etc/tandem/hawkbit-ca.pem"

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

// ddiEvent is one line of --json output.
type ddiEvent struct {
	Time     string `json:"time"`
	Event    string `json:"event"` // "log" or "step"
	Message  string `json:"message,omitempty"`
	Activity string `json:"activity,omitempty"`
}

func (a *app) ddiLog(msg string) {
	if a.jsonOut {
		a.printJSONLine(ddiEvent{Time: time.Now().UTC().Format(time.RFC3339), Event: "log", Message: msg})
		return
	}
	a.printf("%s\n", msg)
}

// ddiStep prints what one --once step did.
func (a *app) ddiStep(activity string) {
	if a.jsonOut {
		a.printJSONLine(ddiEvent{Time: time.Now().UTC().Format(time.RFC3339), Event: "step", Activity: activity})
		return
	}
	a.printf("%s\n", activity)
}

// runDDI runs the DDI adapter the configuration describes.
func (a *app) runDDI(c *hawkbit.Config, f ddiFlags) error {
	agent := &fleet.Agent{Open: a.open, Adapter: hawkbit.AdapterName}
	ad, err := c.NewAdapter(agent, install.Options{Trust: install.Trust{Files: f.trust}})
	if err != nil {
		return err
	}
	ad.Log, ad.Client.Log = a.ddiLog, a.ddiLog
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.once {
		act, err := ad.Step(ctx)
		if err != nil {
			return err
		}
		a.ddiStep(act.String())
		return nil
	}
	a.ddiLog(fmt.Sprintf("polling %s as %s", ad.Client.BaseURL(), c.ControllerID))
	err = ad.Run(ctx, c.Poll.Min.Duration, c.Poll.Max.Duration, c.Poll.Default.Duration)
	if ctx.Err() != nil {
		return nil // stopped by a signal
	}
	return err
}
