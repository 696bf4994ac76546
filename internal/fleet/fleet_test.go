package fleet_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/sim"
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

// Wait keeps polling while the trial is undecided, ends with ctx, and
// returns the outcome once the health check commits.
func TestWait(t *testing.T) {
	a, root := begunJob(t, bytes.Repeat([]byte("wait "), 4096))
	if _, err := a.Install(context.Background(), install.Options{}, install.RebootSet); err != nil {
		t.Fatal(err)
	}
	if group, _, err := sim.Reboot(root, false); err != nil || group != "b" {
		t.Fatalf("trial boot: %s %v", group, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if out, err := a.Wait(ctx, time.Millisecond); !errors.Is(err, context.DeadlineExceeded) || out.State != fleet.Verifying {
		t.Fatalf("undecided trial: %s %v, want verifying and the deadline", out.State, err)
	}

	done := make(chan fleet.Outcome, 1)
	go func() {
		out, err := a.Wait(context.Background(), time.Millisecond)
		if err != nil {
			t.Error(err)
		}
		done <- out
	}()
	d, err := a.Open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case out := <-done:
		if out.State != fleet.Success {
			t.Fatalf("after the commit: %s, want success", out.State)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return after the commit")
	}
}
