package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/mender"
	"github.com/tandem-ota/tandem/internal/health"
)

func (a *app) menderCommand() *cobra.Command {
	m := &mender.Module{Agent: &fleet.Agent{Open: a.open, Adapter: mender.Adapter}}
	o := &m.Agent.Options
	cmd := &cobra.Command{
		Use:   "mender-module STATE TREE",
		Short: "The Mender update module (protocol v3) for the payload type \"tandem\"",
		Long: `The Mender update module for artifacts of payload type "tandem". The Mender client runs it as
/usr/share/mender/modules/v3/tandem STATE TREE; that file is a two-line shell script that calls
"tandem mender-module" with the flags below (integrations/mender/tandem, docs/integrations/mender.md).

  Download                  the artifact's one file is a tandem bundle: it is streamed straight into
                            the spare group (every chunk verified against the bundle's signature,
                            no copy on disk); or a descriptor {"url","bundleHash","version"}: the
                            bundle is installed from the URL, by delta when the server supports
                            ranges, and must have that hash and a trusted signature
  ArtifactInstall           the new group boots on trial at the next reboot
  NeedsArtifactReboot       Yes (ArtifactReboot reboots with the boot flow's arguments)
  ArtifactReboot            reboot into the trial
  ArtifactVerifyReboot      the new group runs (on trial, or already committed by tandem health)
  ArtifactCommit            run the health checks until they pass, then commit; past the deadline
                            roll back (and reboot into the committed group)
  SupportsRollback          Yes
  ArtifactRollback          withdraw the trial (not booted yet) or give it up (running)
  ArtifactRollbackReboot    reboot into the committed group if the trial still runs
  ArtifactVerifyRollbackReboot  the committed group runs
  ArtifactFailure, Cleanup  nothing boots differently; the job file is removed
  other states              nothing (exit 0)

The update's progress is kept in <data-dir>/fleet/mender.json between the states and across reboots.`,
		Example: `  mender-artifact --compression none write module-image -T tandem -t my-board -n release-2.0 -f v2.tandem -o v2.mender
  mender install v2.mender && tandem system reboot     # then, on the new system:
  mender commit`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError{fmt.Errorf("want STATE TREE, got %d arguments", len(args))}
			}
			if len(args) == 1 && args[0] == "Download" {
				return usageError{fmt.Errorf("the Download state needs the module TREE")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			m.State, m.Tree, m.Stdout, m.Log = args[0], "", a.env.Stdout, a.env.Stderr
			if len(args) == 2 {
				m.Tree = args[1]
			}
			o.Progress.Warn = a.warn
			return a.runInvoked(m)
		},
	}
	f := cmd.Flags()
	addFetchFlags(f, o)
	f.BoolVar(&o.Policy.AllowDowngrade, "allow-downgrade", false, "allow a version older than the running one")
	f.DurationVar(&m.Health.Deadline, "health-deadline", 10*time.Minute, "ArtifactCommit rolls back when the health checks still fail this long after the first check in this boot")
	f.DurationVar(&m.Health.Interval, "health-interval", health.DefaultInterval, "time between two health checks in ArtifactCommit")
	return cmd
}
