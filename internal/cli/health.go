package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/health"
)

func (a *app) healthCommand() *cobra.Command {
	o := health.Options{Open: a.open}
	var once bool
	cmd := &cobra.Command{
		Use:   "health [--deadline 5m] [--interval 10s] [--once]",
		Short: "Decide a trial: commit when the health checks pass, roll back when they keep failing",
		Long: `Decide the fate of a group that runs on trial. tandem runs the executable health-check hooks in
<hooks-dir>/health/check/ (default /etc/tandem/hooks/health/check/, in name order, docs/hooks.md):

  - all pass: the running group is committed (made the default);
  - one fails: the checks are repeated every --interval until the --deadline, counted from the first
    check in this boot; still failing then: the trial is withdrawn, the reason is recorded (fleet
    adapters report it) and the device reboots into the committed group.

With no hooks installed, booting far enough to run this command is the health check. Not on trial:
exit 0 (RAUC's flows: the committed group is marked good again). The shipped systemd units
(systemd/tandem-health.service and .timer) run it at every boot.

  tandem health                     # wait up to 5 minutes for the checks to pass
  tandem health --deadline 0        # roll back at the first failed check
  tandem health --once              # one check; exit 7 while failing (for your own scheduler)

Exit codes: 0 committed or nothing on trial, 7 rolled back (the reboot is under way) or, with
--once, failing before the deadline; others as for every command (docs/cli.md).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Deadline < 0 || o.Interval <= 0 {
				return usageError{fmt.Errorf("--deadline must be ≥ 0 and --interval > 0")}
			}
			o.Progress = func(r health.Result) { a.healthReport(r) }
			var res health.Result
			var err error
			if once {
				res, err = health.Check(o)
			} else {
				res, err = health.Run(context.Background(), o)
			}
			if err != nil {
				return err
			}
			a.healthReport(res)
			return res.Err()
		},
	}
	cmd.Flags().DurationVar(&o.Deadline, "deadline", health.DefaultDeadline, "roll back when the checks still fail this long after the first check in this boot")
	cmd.Flags().DurationVar(&o.Interval, "interval", health.DefaultInterval, "time between two checks")
	cmd.Flags().BoolVar(&once, "once", false, "check once and exit (7 while failing)")
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print one JSON line per result")
	return cmd
}

func (a *app) healthReport(r health.Result) {
	if a.jsonOut {
		a.printJSONLine(r)
		return
	}
	a.printf("%s\n", r)
}
