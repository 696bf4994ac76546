package tedge_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/fleet/tedge"
)

// engine plays tedge-agent's workflow engine running
// integrations/thin-edge/firmware_update.toml for each offer: it invokes the
// step of each state (as `tandem tedge workflow STEP` runs it: one step
// under fleet.Loop), reads the next state from the step's output, runs the
// restart state's `tandem system reboot`, and after the boot goes on with
// verify. A step killed with the agent runs again when the agent restarts
// (the engine resumes the state it recorded). The workflow cannot cancel
// a command, and there is no server to fail.
type engine struct {
	t     *testing.T
	agent *fleet.Agent

	fleettest.Mailbox
	mu    sync.Mutex
	twins []tedge.Twin
	cur   *fleettest.Offer
	state string // the workflow state of cur
}

// invoke runs one workflow step and returns the state it printed.
func (e *engine) invoke(ctx context.Context, w *tedge.Workflow) (tedge.WorkflowStatus, error) {
	var out bytes.Buffer
	w.Agent, w.Out = e.agent, &out
	w.PublishTwin = func(_ context.Context, twin tedge.Twin) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.twins = append(e.twins, twin)
		return nil
	}
	if _, err := (fleet.Loop{Once: true, Log: logger(e.t)}).Run(ctx, w); err != nil {
		return tedge.WorkflowStatus{}, err
	}
	return tedge.ParseWorkflowOutput(out.String())
}

func (e *engine) Run(ctx context.Context, t *testing.T) error {
	if e.cur == nil {
		o, ok := e.Take()
		if !ok {
			return nil
		}
		e.cur, e.state = &o, "executing"
	}
	o := e.cur
	for {
		var w *tedge.Workflow
		switch e.state {
		case "executing":
			w = &tedge.Workflow{State: tedge.StepBegin, ID: o.ID, RemoteURL: o.URL, Version: o.Version}
		case "install":
			w = &tedge.Workflow{State: tedge.StepInstall}
		case "restart":
			// background_script "tandem system reboot"; on_exec await_restart.
			e.state = "await_restart"
			return e.agent.Reboot()
		case "await_restart":
			e.state = "verify" // the agent restarted: on_success verify
			continue
		case "verify":
			// The step waits for the health check, which the suite runs
			// after this stretch: while the trial is undecided the stretch
			// ends here and verify runs in the next one. (Ending a waiting
			// step on a timer instead raced its result on a slow machine.)
			if out, err := e.agent.Outcome(); err == nil && out.State == fleet.Verifying {
				return nil
			}
			w = &tedge.Workflow{State: tedge.StepVerify, FirmwareName: "tandem-sim", RemoteURL: o.URL, Poll: 10 * time.Millisecond}
		default:
			t.Fatalf("the engine is in state %q", e.state)
		}
		out, err := e.invoke(ctx, w)
		if ctx.Err() != nil {
			return nil // killed: the state runs again
		}
		if err != nil {
			out = tedge.WorkflowStatus{Status: "failed", Reason: "tandem tedge workflow " + w.State + " could not run: " + err.Error()}
		}
		switch out.Status {
		case "successful", "failed":
			e.Put(o.ID, fleettest.Report{Success: out.Status == "successful", Detail: out.Reason})
			e.mu.Lock()
			if out.Status == "successful" && (len(e.twins) == 0 || e.twins[len(e.twins)-1].Version != o.Version) {
				t.Errorf("successful without the firmware twin of %s: %+v", o.Version, e.twins)
			}
			e.mu.Unlock()
			e.cur = nil
			return nil
		}
		e.state = out.Status
	}
}

// The workflow mode under the shared conformance suite.
func TestWorkflowConformance(t *testing.T) {
	fleettest.Run(t, func(t *testing.T, env *fleettest.Env) fleettest.Harness {
		return &engine{t: t, agent: &fleet.Agent{Open: env.Open, Adapter: tedge.WorkflowAdapter}}
	})
}
