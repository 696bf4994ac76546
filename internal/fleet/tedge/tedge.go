// Package tedge is tandem's thin-edge.io integration, in two forms that
// share the payload and topic rules in payload.go:
//
//   - Handler, a native operation handler for firmware_update over
//     thin-edge.io's MQTT API. It announces the capability, takes the
//     commands the cloud mapper publishes
//     (<root>/<device>/cmd/firmware_update/<id>, status init), and moves
//     each through executing (download and install, by delta when the URL
//     serves ranges), restarting (published before the reboot into the
//     trial) and verifying to successful — only after the new system
//     committed itself — or failed with a reason, keeping every field of the
//     command it does not know. On success it publishes the firmware twin.
//   - Workflow, the steps of a user-defined tedge-agent workflow
//     (integrations/thin-edge/firmware_update.toml), each invoked once by
//     tedge-agent's workflow engine, which reads the next state from its
//     output.
//
// Both are fleet.Adapters whose update is a fleet.Agent job, so they resume
// after a reboot, a crash or a broker restart wherever the update stood.
package tedge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/install"
)

// Adapter is the adapter name of the native handler's jobs
// (<data-dir>/fleet/tedge.json).
const Adapter = "tedge"

// Config configures the native handler.
type Config struct {
	// Agent carries the update; its Adapter should be Adapter and its
	// Options the base install options (trust, HTTP).
	Agent *fleet.Agent
	// Broker is the MQTT broker: host:port or a URL (tcp://, ssl://, ws://).
	Broker   string
	ClientID string // default "tandem-tedge"
	Topics   Topics // default te and device/main//
	// PreferRemoteURL installs from remoteUrl even when the command has a
	// tedgeUrl (thin-edge's local proxy). remoteUrl is the one to prefer when
	// it is a plain HTTP server or CDN that serves ranges.
	PreferRemoteURL bool
	// Retry is how often to try to reach the broker (default 2 s).
	Retry time.Duration
	// Log receives the MQTT session's own records (connection lost,
	// reconnected); nil = slog.Default(). What each step did goes to the
	// fleet.Loop's log.
	Log *slog.Logger
}

// Handler is the native firmware_update handler, a fleet.Adapter driven by
// MQTT events. Its connection opens on the first Step and closes with
// Close. Each Step handles one event that matters — the connection (the
// capability and the current status are published again), a command, the
// end of an install, the health check's decision — and returns
// fleet.ActRebooting once it has requested the reboot into the trial,
// fleet.ActReported after a final status, fleet.ActWaiting while the health
// check decides (the loop steps again within Loop.Waiting), else
// fleet.ActWorking. A Step waits for its event until ctx ends.
type Handler struct {
	cfg    Config
	broker string
	k      *conn

	// The install runs in a worker that outlives its step (the handler
	// keeps answering the broker meanwhile) and reports on installed.
	work       context.Context
	stopWork   context.CancelFunc
	workers    sync.WaitGroup
	installed  chan error
	installing bool

	resume    bool       // the next step starts from the job (first step, after an error)
	verifying bool       // the job waits for the health check
	job       *fleet.Job // the command being carried; nil when idle
	cmd       *Command   // its command message
	status    []byte     // the last status message published for it
}

// New checks cfg and returns the handler (not connected yet).
func New(cfg Config) (*Handler, error) {
	if cfg.Agent == nil {
		return nil, errors.New("tedge: no fleet agent")
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "tandem-tedge"
	}
	if cfg.Topics.Root == "" {
		cfg.Topics = Topics{Root: "te", Device: "device/main//"}
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	broker, err := brokerURL(cfg.Broker)
	if err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg, broker: broker, installed: make(chan error, 1)}, nil
}

// Name is Adapter.
func (h *Handler) Name() string { return Adapter }

// Close stops a running install (the next start resumes it) and closes the
// broker connection.
func (h *Handler) Close() error {
	if h.k == nil {
		return nil
	}
	h.stopWork()
	h.workers.Wait()
	h.k.close()
	h.k = nil
	return nil
}

// Step handles the next event (see Handler).
func (h *Handler) Step(ctx context.Context) (st fleet.Step, err error) {
	if h.k == nil {
		h.work, h.stopWork = context.WithCancel(ctx)
		h.k = dial(h.broker, h.cfg.ClientID, h.cfg.Topics.Commands(), h.cfg.Retry, h.cfg.Log)
		h.resume = true
	}
	defer func() {
		if err != nil {
			h.resume = true // start again from the job, which is what survives
		}
	}()
	if h.resume && !h.installing {
		h.resume = false
		o, err := h.cfg.Agent.Outcome()
		if errors.Is(err, fleet.ErrBadJob) {
			return h.dropBadJob(ctx, err)
		}
		if err != nil {
			return fleet.Step{}, err
		}
		h.job, h.cmd, h.status, h.verifying = nil, nil, nil, false
		if o.Job != nil {
			if h.cmd, err = ParseCommand(o.Job.Extra); err != nil {
				h.cmd = &Command{} // a job without its command message: report with the status alone
			}
			h.job = o.Job
			return h.advance(ctx, o)
		}
	}
	for {
		if h.verifying {
			// Handle what arrived; when nothing did, look at the decision.
			select {
			case <-h.k.connected:
				return h.announce(ctx)
			case m := <-h.k.msgs:
				if st, done, err := h.onMessage(ctx, m); done || err != nil {
					return st, err
				}
				continue
			default:
			}
			o, err := h.cfg.Agent.Outcome()
			if err != nil || o.State == fleet.Verifying {
				return fleet.Step{Activity: fleet.ActWaiting}, err
			}
			h.verifying = false
			return h.advance(ctx, o)
		}
		select {
		case <-ctx.Done():
			return fleet.Step{}, ctx.Err()
		case <-h.k.connected:
			return h.announce(ctx)
		case m := <-h.k.msgs:
			if st, done, err := h.onMessage(ctx, m); done || err != nil {
				return st, err
			}
		case ierr := <-h.installed:
			h.installing = false
			if ierr != nil && ctx.Err() != nil {
				return fleet.Step{}, ctx.Err() // stopped mid-download: the next start resumes
			}
			return h.next(ctx)
		}
	}
}

// dropBadJob reports the command of a job file that cannot be used (when
// the file names it) failed, and drops the file (issue 11, hardening 3).
func (h *Handler) dropBadJob(ctx context.Context, err error) (fleet.Step, error) {
	var bad *fleet.BadJobError
	if errors.As(err, &bad) && bad.ID != "" {
		if _, ok := h.cfg.Topics.CommandID(h.cfg.Topics.Command(bad.ID)); ok {
			msg := (&Command{}).With("status", StatusFailed, "reason", "tandem lost its record of this update: "+err.Error()).Marshal()
			if err := h.k.publish(ctx, h.cfg.Topics.Command(bad.ID), true, msg); err != nil {
				return fleet.Step{}, err
			}
		}
	}
	if err := h.cfg.Agent.Done(); err != nil {
		return fleet.Step{}, err
	}
	return fleet.Step{Activity: fleet.ActReported, Message: "dropped a job file that cannot be used: " + err.Error()}, nil
}

func working(format string, args ...any) fleet.Step {
	return fleet.Step{Activity: fleet.ActWorking, Message: fmt.Sprintf(format, args...)}
}

// announce publishes the capability and, after a reconnection, the current
// command's status again.
func (h *Handler) announce(ctx context.Context) (fleet.Step, error) {
	if err := h.k.publish(ctx, h.cfg.Topics.Capability(), true, []byte("{}")); err != nil {
		return fleet.Step{}, err
	}
	if h.job != nil && h.status != nil {
		if err := h.k.publish(ctx, h.cfg.Topics.Command(h.job.ID), true, h.status); err != nil {
			return fleet.Step{}, err
		}
	}
	return working("connected to the broker; %s announced", Operation), nil
}

// publishStatus publishes the current command with status (and reason).
func (h *Handler) publishStatus(ctx context.Context, status, reason string) error {
	msg := h.cmd.With("status", status, "reason", reason).Marshal()
	if err := h.k.publish(ctx, h.cfg.Topics.Command(h.job.ID), true, msg); err != nil {
		return err
	}
	h.status = msg
	return nil
}

// reject answers a command tandem does not take with failed and a reason.
func (h *Handler) reject(ctx context.Context, id string, c *Command, reason string) (fleet.Step, bool, error) {
	if c == nil {
		c = &Command{}
	}
	err := h.k.publish(ctx, h.cfg.Topics.Command(id), true, c.With("status", StatusFailed, "reason", reason).Marshal())
	return fleet.Step{Activity: fleet.ActReported, Message: fmt.Sprintf("command %s refused: %s", id, reason)}, true, err
}

// onMessage handles a message on the command subscription; done is false
// when it was nothing to act on.
func (h *Handler) onMessage(ctx context.Context, m message) (fleet.Step, bool, error) {
	id, ok := h.cfg.Topics.CommandID(m.topic)
	if !ok || len(m.payload) == 0 {
		return fleet.Step{}, false, nil // not a command, or a command the requester cleared
	}
	if h.job != nil && h.job.ID == id {
		return fleet.Step{}, false, nil // ours: our own status coming back, or its init delivered again
	}
	c, err := ParseCommand(m.payload)
	if err != nil {
		return h.reject(ctx, id, nil, err.Error())
	}
	if c.Status() != StatusInit {
		return fleet.Step{}, false, nil
	}
	src, err := c.Source(h.cfg.PreferRemoteURL)
	if err != nil {
		return h.reject(ctx, id, c, err.Error())
	}
	if h.job != nil {
		return h.reject(ctx, id, c, fmt.Sprintf("another firmware update (command %s) is in progress", h.job.ID))
	}
	job, err := h.cfg.Agent.Begin(fleet.Job{ID: id, Source: src, Version: c.Get("version"), Extra: c.Marshal()})
	if err != nil {
		return h.reject(ctx, id, c, err.Error())
	}
	h.job, h.cmd, h.status = job, c, nil
	st, err := h.advance(ctx, fleet.Outcome{State: fleet.Installing, Job: job})
	return st, true, err
}

// advance takes the next step for outcome o of the current job.
func (h *Handler) advance(ctx context.Context, o fleet.Outcome) (fleet.Step, error) {
	a := h.cfg.Agent
	switch o.State {
	case fleet.Idle:
		h.job, h.cmd, h.status = nil, nil, nil
		return working("no firmware update under way"), nil
	case fleet.Installing:
		if err := h.publishStatus(ctx, StatusExecuting, ""); err != nil {
			return fleet.Step{}, err
		}
		opts := a.Options
		work := h.work
		h.installing = true
		h.workers.Go(func() {
			_, err := a.Install(work, opts, install.RebootSet)
			h.installed <- err
		})
		return working("command %s: executing: installing %s (version %s)", o.Job.ID, o.Job.Source, o.Job.Version), nil
	case fleet.Installed:
		if err := a.Try(); err != nil {
			return h.fail(ctx, err.Error())
		}
		return h.next(ctx)
	case fleet.Rebooting:
		// thin-edge.io's rule for restarts: the state is published before
		// the device goes down.
		if err := h.publishStatus(ctx, StatusRestarting, ""); err != nil {
			return fleet.Step{}, err
		}
		if err := a.Reboot(); err != nil {
			return h.fail(ctx, fmt.Sprintf("reboot: %v", err))
		}
		return fleet.Step{Activity: fleet.ActRebooting, Message: fmt.Sprintf("command %s: restarting into group %s on trial", o.Job.ID, o.Job.Group)}, nil
	case fleet.Verifying:
		if err := h.publishStatus(ctx, StatusVerifying, ""); err != nil {
			return fleet.Step{}, err
		}
		h.verifying = true
		return fleet.Step{Activity: fleet.ActWaiting, Message: fmt.Sprintf("command %s: verifying: group %s runs on trial; the health check decides", o.Job.ID, o.Job.Group)}, nil
	case fleet.Success:
		version := o.Job.Installed
		if version == "" {
			version = h.cmd.Get("version")
		}
		twin := Twin{Name: h.cmd.Get("name"), Version: version, URL: h.cmd.Get("remoteUrl")}
		if err := h.k.publish(ctx, h.cfg.Topics.Twin(), true, mustJSON(twin)); err != nil {
			return fleet.Step{}, err
		}
		return h.final(ctx, StatusSuccessful, "")
	case fleet.Failure:
		reason := o.Reason
		if reason == "" {
			reason = "the update failed"
		}
		return h.final(ctx, StatusFailed, reason)
	}
	return fleet.Step{}, fmt.Errorf("firmware update %s: unexpected state %q", o.Job.ID, o.State)
}

// next advances by the agent's current outcome.
func (h *Handler) next(ctx context.Context) (fleet.Step, error) {
	o, err := h.cfg.Agent.Outcome()
	if err != nil {
		return fleet.Step{}, err
	}
	return h.advance(ctx, o)
}

// fail ends the job as failed with reason (before any trial ran).
func (h *Handler) fail(ctx context.Context, reason string) (fleet.Step, error) {
	if err := h.cfg.Agent.Fail(reason); err != nil {
		return fleet.Step{}, err
	}
	return h.next(ctx)
}

// final publishes the final status; once the broker has it, the job is done.
func (h *Handler) final(ctx context.Context, status, reason string) (fleet.Step, error) {
	if err := h.publishStatus(ctx, status, reason); err != nil {
		return fleet.Step{}, err
	}
	if err := h.cfg.Agent.Done(); err != nil {
		return fleet.Step{}, err
	}
	id := h.job.ID
	h.job, h.cmd, h.status, h.verifying = nil, nil, nil, false
	msg := fmt.Sprintf("command %s: %s", id, status)
	if reason != "" {
		msg += ": " + reason
	}
	return fleet.Step{Activity: fleet.ActReported, Message: msg}, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with plain structs of strings
	}
	return b
}
