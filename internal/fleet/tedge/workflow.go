package tedge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/install"
)

// WorkflowAdapter names the job of the workflow steps
// (<data-dir>/fleet/tedge-workflow.json).
const WorkflowAdapter = "tedge-workflow"

// The workflow steps (integrations/thin-edge/firmware_update.toml), and
// the states each may print next.
const (
	StepBegin   = "begin"   // → install | failed
	StepInstall = "install" // → restart | failed
	StepVerify  = "verify"  // → successful | failed
	StepAbort   = "abort"   // → failed
)

// Workflow is one step of tedge-agent's user-defined firmware_update
// workflow, a fleet.Adapter whose one Step runs that step: tedge-agent's
// workflow engine invokes `tandem tedge workflow STEP` once per state and
// moves the command on to the state the step prints between
// :::begin-tedge::: and :::end-tedge::: ({"status":...,"reason":...}). An
// error is a step that could not run at all (its process exits non-zero).
// The reboot between install and verify is the workflow's own restart
// state.
type Workflow struct {
	// Agent carries the update; its Adapter should be WorkflowAdapter and
	// its Options the base install options.
	Agent *fleet.Agent
	// State is the workflow step this invocation runs (StepBegin, ...).
	State string
	// ID is the command id (begin); TedgeURL, RemoteURL, Version and
	// FirmwareName are the command's fields (begin: the source; verify: the
	// twin).
	ID, TedgeURL, RemoteURL, Version, FirmwareName string
	// PreferRemoteURL installs from RemoteURL even when there is a TedgeURL.
	PreferRemoteURL bool
	// Reason is why the update is given up (abort).
	Reason string
	// Poll is how often verify looks whether the health check has decided
	// (default 5 s).
	Poll time.Duration
	// PublishTwin publishes the firmware twin after a success (verify).
	PublishTwin func(ctx context.Context, twin Twin) error
	// Out receives the next state for tedge-agent.
	Out io.Writer
}

// WorkflowStatus is what a workflow step prints for tedge-agent: the
// workflow's next state and, for failed, the reason.
type WorkflowStatus struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// ParseWorkflowOutput returns the status a step printed (what tedge-agent
// reads from its stdout).
func ParseWorkflowOutput(out string) (WorkflowStatus, error) {
	var s WorkflowStatus
	_, rest, ok := strings.Cut(out, ":::begin-tedge:::")
	body, _, ok2 := strings.Cut(rest, ":::end-tedge:::")
	if !ok || !ok2 {
		return s, fmt.Errorf("no :::begin-tedge::: ... :::end-tedge::: output")
	}
	err := json.Unmarshal([]byte(body), &s)
	return s, err
}

// Name is WorkflowAdapter.
func (w *Workflow) Name() string { return WorkflowAdapter }

// Step runs the workflow step w.State and prints the next state.
func (w *Workflow) Step(ctx context.Context) (fleet.Step, error) {
	switch w.State {
	case StepBegin:
		return w.begin()
	case StepInstall:
		return w.install(ctx)
	case StepVerify:
		return w.verify(ctx)
	case StepAbort:
		if err := w.Agent.Fail(w.Reason); err != nil {
			return fleet.Step{}, err
		}
		return w.final(StatusFailed, w.Reason)
	}
	return fleet.Step{}, fmt.Errorf("unknown workflow step %q: want begin, install, verify or abort", w.State)
}

// print prints the next state.
func (w *Workflow) print(next, reason string) error {
	b, err := json.Marshal(WorkflowStatus{Status: next, Reason: oneLine(reason)})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w.Out, ":::begin-tedge:::\n%s\n:::end-tedge:::\n", b)
	return err
}

// next prints a state that moves the workflow on.
func (w *Workflow) next(state, format string, args ...any) (fleet.Step, error) {
	return fleet.Step{Activity: fleet.ActWorking, Message: fmt.Sprintf(format, args...)}, w.print(state, "")
}

// refuse prints failed for a command that was never taken (no job).
func (w *Workflow) refuse(reason string) (fleet.Step, error) {
	return fleet.Step{Activity: fleet.ActReported, Message: "failed: " + reason}, w.print(StatusFailed, reason)
}

// final prints the final state and forgets the job.
func (w *Workflow) final(status, reason string) (fleet.Step, error) {
	if err := w.print(status, reason); err != nil {
		return fleet.Step{}, err
	}
	msg := status
	if reason != "" {
		msg += ": " + reason
	}
	return fleet.Step{Activity: fleet.ActReported, Message: msg}, w.Agent.Done()
}

func (w *Workflow) begin() (fleet.Step, error) {
	c := (&Command{}).With("status", StatusExecuting, "tedgeUrl", w.TedgeURL, "remoteUrl", w.RemoteURL, "version", w.Version)
	src, err := c.Source(w.PreferRemoteURL)
	if err != nil {
		return w.refuse(err.Error())
	}
	j, err := w.Agent.Job()
	if errors.Is(err, fleet.ErrBadJob) {
		// An earlier command's job file cannot be used: drop it (its
		// command ended failed when its step could not run).
		if err := w.Agent.Done(); err != nil {
			return fleet.Step{}, err
		}
	} else if err == nil && j != nil && j.ID == w.ID {
		if o, err := w.Agent.Outcome(); err == nil && !o.Final() {
			return w.next("install", "command %s: begun already (the agent restarted during this step)", w.ID)
		}
	}
	if _, err := w.Agent.Begin(fleet.Job{ID: w.ID, Source: src, Version: w.Version}); err != nil {
		return w.refuse(err.Error())
	}
	return w.next("install", "command %s: recorded (%s)", w.ID, src)
}

func (w *Workflow) install(ctx context.Context) (fleet.Step, error) {
	res, err := w.Agent.Install(ctx, w.Agent.Options, install.RebootSet)
	if err != nil {
		if ctx.Err() != nil {
			return fleet.Step{}, err // killed: the step runs again and resumes
		}
		return w.final(StatusFailed, err.Error()) // nothing was tried
	}
	return w.next("restart", "installed %s into group %s; it boots on trial at the next reboot", res.Version, res.Group)
}

func (w *Workflow) verify(ctx context.Context) (fleet.Step, error) {
	poll := w.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	out, err := w.Agent.Wait(ctx, poll)
	if err != nil {
		return fleet.Step{}, err
	}
	switch out.State {
	case fleet.Success:
		version := out.Job.Installed
		if version == "" {
			version = out.Job.Version
		}
		if err := w.PublishTwin(ctx, Twin{Name: w.FirmwareName, Version: version, URL: w.RemoteURL}); err != nil {
			return fleet.Step{}, fmt.Errorf("publish the firmware twin: %w", err)
		}
		return w.final(StatusSuccessful, "")
	case fleet.Failure:
		return w.final(StatusFailed, out.Reason)
	case fleet.Rebooting:
		reason := "the device did not reboot into the new group"
		if err := w.Agent.Fail(reason); err != nil {
			return fleet.Step{}, err
		}
		return w.final(StatusFailed, reason)
	case fleet.Idle:
		return w.refuse("tandem has no firmware update job (was it installed?)")
	}
	return w.final(StatusFailed, fmt.Sprintf("the update is %s, not verifiable", out.State))
}

// oneLine joins the lines of s (tedge-agent shows the reason as it is).
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
