package fleet_test

import (
	"context"
	"sync"
	"testing"

	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/install"
)

// direct is the smallest adapter: its "server" is in memory. It is the
// reference for how an adapter uses the Agent, and it keeps the suite
// honest against the Agent alone.
type direct struct {
	agent   *fleet.Agent
	mu      sync.Mutex
	offers  []fleettest.Offer
	reports map[string]fleettest.Report
}

func (d *direct) Offer(_ *testing.T, o fleettest.Offer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.offers = append(d.offers, o)
}

func (d *direct) Report(_ *testing.T, id string) (fleettest.Report, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.reports[id]
	return r, ok
}

// Run is one start of the adapter process.
func (d *direct) Run(ctx context.Context, _ *testing.T) error {
	out, err := d.agent.Outcome()
	if err != nil {
		return err
	}
	switch out.State {
	case fleet.Idle:
		d.mu.Lock()
		if len(d.offers) == 0 {
			d.mu.Unlock()
			return nil
		}
		o := d.offers[0]
		d.offers = d.offers[1:]
		d.mu.Unlock()
		if _, err := d.agent.Begin(fleet.Job{ID: o.ID, Source: o.URL, Version: o.Version}); err != nil {
			return err
		}
		return d.install(ctx)
	case fleet.Installing:
		return d.install(ctx)
	case fleet.Verifying, fleet.Rebooting, fleet.Installed:
		return nil // the health check or a reboot decides; look again later
	}
	d.mu.Lock()
	d.reports[out.Job.ID] = fleettest.Report{Success: out.State == fleet.Success, Detail: out.Reason}
	d.mu.Unlock()
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
		return &direct{agent: &fleet.Agent{Open: env.Open, Adapter: "direct"}, reports: map[string]fleettest.Report{}}
	})
}
