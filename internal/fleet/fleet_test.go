package fleet_test

import (
	"context"
	"testing"

	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/install"
)

// direct is the smallest adapter: its "server" is in memory. It is the
// reference for how an adapter uses the Agent, and it keeps the suite
// honest against the Agent alone.
type direct struct {
	fleettest.Mailbox
	agent *fleet.Agent
}

// Run is one start of the adapter process.
func (d *direct) Run(ctx context.Context, _ *testing.T) error {
	out, err := d.agent.Outcome()
	if err != nil {
		return err
	}
	switch out.State {
	case fleet.Idle:
		o, ok := d.Take()
		if !ok {
			return nil
		}
		if _, err := d.agent.Begin(fleet.Job{ID: o.ID, Source: o.URL, Version: o.Version}); err != nil {
			return err
		}
		return d.install(ctx)
	case fleet.Installing:
		return d.install(ctx)
	case fleet.Verifying, fleet.Rebooting, fleet.Installed:
		return nil // the health check or a reboot decides; look again later
	}
	d.Put(out.Job.ID, fleettest.Report{Success: out.State == fleet.Success, Detail: out.Reason})
	return d.agent.Done()
}

func (d *direct) install(ctx context.Context) error {
	_, err := d.agent.Install(ctx, install.Options{}, install.RebootYes)
	if err != nil && ctx.Err() == nil {
		return d.Run(ctx, nil) // the job failed: report it
	}
	return err
}

func TestConformance(t *testing.T) {
	fleettest.Run(t, func(t *testing.T, env *fleettest.Env) fleettest.Harness {
		return &direct{agent: &fleet.Agent{Open: env.Open, Adapter: "direct"}}
	})
}
