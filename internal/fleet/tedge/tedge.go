// Package tedge is tandem's thin-edge.io integration: a native operation
// handler for firmware_update over thin-edge.io's MQTT API. It announces the
// capability, takes the commands the cloud mapper publishes
// (<root>/<device>/cmd/firmware_update/<id>, status init), and moves each
// through executing (download and install, by delta when the URL serves
// ranges), restarting (published before the reboot into the trial) and
// verifying to successful — only after the new system committed itself — or
// failed with a reason, keeping every field of the command it does not know.
// On success it publishes the firmware twin. The update itself is a
// fleet.Agent job, so the handler resumes after a reboot, a crash or a broker
// restart wherever the update stood.
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

// Config configures the handler.
type Config struct {
	// Agent carries the update; its Adapter should be Adapter and its
	// Options the base install options (trust, HTTP).
	Agent *fleet.Agent
	// Broker is the MQTT broker: host:port or a URL (tcp://, ssl://, ws://).
	Broker   string
	ClientID string // default "tandem-tedge"
	Topics   Topics
	// PreferRemoteURL installs from remoteUrl even when the command has a
	// tedgeUrl (thin-edge's local proxy). remoteUrl is the one to prefer when
	// it is a plain HTTP server or CDN that serves ranges.
	PreferRemoteURL bool
	// Poll is how often to look whether the health check has decided
	// (default 5 s); Retry how often to try to reach the broker (default 2 s).
	Poll, Retry time.Duration
	// Once makes Run return when the device's life must move on before the
	// handler can do more: after a final report, or when the outcome waits
	// for the health check. (Run always returns after requesting a reboot.)
	// Tests use it to play the device's life step by step.
	Once bool
	Log  *slog.Logger
}

// Run serves firmware_update commands until ctx ends (returning its error)
// or until it has requested a reboot (returning nil: the device goes down).
func Run(ctx context.Context, cfg Config) error {
	if cfg.Agent == nil {
		return errors.New("tedge: no fleet agent")
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "tandem-tedge"
	}
	if cfg.Topics.Root == "" {
		cfg.Topics = Topics{Root: "te", Device: "device/main//"}
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 5 * time.Second
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	broker, err := brokerURL(cfg.Broker)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	h := &handler{cfg: cfg, log: cfg.Log, installed: make(chan error, 1), decided: make(chan waitResult, 1)}
	h.k = dial(broker, cfg.ClientID, cfg.Topics.Commands(), cfg.Retry, cfg.Log)
	defer h.k.close()
	defer func() { cancel(); h.workers.Wait() }() // before the connection closes

	o, err := cfg.Agent.Outcome()
	if err != nil {
		return err
	}
	if o.Job != nil {
		if h.cmd, err = ParseCommand(o.Job.Extra); err != nil {
			h.cmd = &Command{} // a job without its command message: report with the status alone
		}
		h.job = o.Job
		h.log.Info("resuming firmware update", "command", o.Job.ID, "state", o.State)
		if err := h.advance(ctx, o); err != nil {
			return err
		}
	}
	for !h.stop() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-h.k.connected:
			err = h.announce(ctx)
		case m := <-h.k.msgs:
			err = h.onMessage(ctx, m)
		case ierr := <-h.installed:
			err = h.onInstalled(ctx, ierr)
		case w := <-h.decided:
			if w.err != nil {
				err = w.err
				break
			}
			err = h.advance(ctx, w.o)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

type waitResult struct {
	o   fleet.Outcome
	err error
}

type handler struct {
	cfg Config
	log *slog.Logger
	k   *conn

	job    *fleet.Job // the command being carried; nil when idle
	cmd    *Command   // its command message
	status []byte     // the last status message published for it

	// The install and the wait for the health check run in workers that
	// report on these channels; at most one runs at a time.
	installed chan error
	decided   chan waitResult
	workers   sync.WaitGroup

	rebooting bool // a reboot was requested
	reported  bool // a final status was published (in this run)
	waiting   bool // the outcome waits for the health check (Once)
}

func (h *handler) stop() bool {
	return h.rebooting || (h.cfg.Once && (h.reported || h.waiting))
}

// announce publishes the capability and, after a reconnection, the current
// command's status again.
func (h *handler) announce(ctx context.Context) error {
	if err := h.k.publish(ctx, h.cfg.Topics.Capability(), true, []byte("{}")); err != nil {
		return err
	}
	if h.job != nil && h.status != nil {
		return h.k.publish(ctx, h.cfg.Topics.Command(h.job.ID), true, h.status)
	}
	return nil
}

// publishStatus publishes the current command with status (and reason).
func (h *handler) publishStatus(ctx context.Context, status, reason string) error {
	msg := h.cmd.With("status", status, "reason", reason).Marshal()
	h.log.Info("firmware update", "command", h.job.ID, "status", status, "reason", reason)
	if err := h.k.publish(ctx, h.cfg.Topics.Command(h.job.ID), true, msg); err != nil {
		return err
	}
	h.status = msg
	return nil
}

// reject answers a command tandem does not take with failed and a reason.
func (h *handler) reject(ctx context.Context, id string, c *Command, reason string) error {
	if c == nil {
		c = &Command{}
	}
	h.log.Warn("firmware update refused", "command", id, "reason", reason)
	return h.k.publish(ctx, h.cfg.Topics.Command(id), true, c.With("status", StatusFailed, "reason", reason).Marshal())
}

func (h *handler) onMessage(ctx context.Context, m message) error {
	id, ok := h.cfg.Topics.CommandID(m.topic)
	if !ok || len(m.payload) == 0 {
		return nil // not a command, or a command the requester cleared
	}
	if h.job != nil && h.job.ID == id {
		return nil // ours: our own status coming back, or its init delivered again
	}
	c, err := ParseCommand(m.payload)
	if err != nil {
		return h.reject(ctx, id, nil, err.Error())
	}
	if c.Status() != StatusInit {
		return nil
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
	h.log.Info("firmware update received", "command", id, "name", c.Get("name"), "version", c.Get("version"), "source", src)
	return h.advance(ctx, fleet.Outcome{State: fleet.Installing, Job: job})
}

// advance takes the next step for outcome o of the current job.
func (h *handler) advance(ctx context.Context, o fleet.Outcome) error {
	a := h.cfg.Agent
	switch o.State {
	case fleet.Idle:
		h.job, h.cmd, h.status = nil, nil, nil
		return nil
	case fleet.Installing:
		if err := h.publishStatus(ctx, StatusExecuting, ""); err != nil {
			return err
		}
		opts := a.Options
		h.workers.Go(func() {
			_, err := a.Install(ctx, opts, install.RebootSet)
			h.installed <- err
		})
		return nil
	case fleet.Installed:
		if err := a.Try(); err != nil {
			return h.fail(ctx, err.Error())
		}
		return h.next(ctx)
	case fleet.Rebooting:
		// thin-edge.io's rule for restarts: the state is published before
		// the device goes down.
		if err := h.publishStatus(ctx, StatusRestarting, ""); err != nil {
			return err
		}
		if err := a.Reboot(); err != nil {
			return h.fail(ctx, fmt.Sprintf("reboot: %v", err))
		}
		h.rebooting = true
		return nil
	case fleet.Verifying:
		if err := h.publishStatus(ctx, StatusVerifying, ""); err != nil {
			return err
		}
		if h.cfg.Once {
			h.waiting = true
			return nil
		}
		h.workers.Go(func() {
			o, err := a.Wait(ctx, h.cfg.Poll)
			h.decided <- waitResult{o, err}
		})
		return nil
	case fleet.Success:
		version := o.Job.Installed
		if version == "" {
			version = h.cmd.Get("version")
		}
		twin := Twin{Name: h.cmd.Get("name"), Version: version, URL: h.cmd.Get("remoteUrl")}
		if err := h.k.publish(ctx, h.cfg.Topics.Twin(), true, mustJSON(twin)); err != nil {
			return err
		}
		return h.final(ctx, StatusSuccessful, "")
	case fleet.Failure:
		reason := o.Reason
		if reason == "" {
			reason = "the update failed"
		}
		return h.final(ctx, StatusFailed, reason)
	}
	return fmt.Errorf("firmware update %s: unexpected state %q", o.Job.ID, o.State)
}

// next advances by the agent's current outcome.
func (h *handler) next(ctx context.Context) error {
	o, err := h.cfg.Agent.Outcome()
	if err != nil {
		return err
	}
	return h.advance(ctx, o)
}

func (h *handler) onInstalled(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // stopped mid-download: the next run resumes
	}
	return h.next(ctx)
}

// fail ends the job as failed with reason (before any trial ran).
func (h *handler) fail(ctx context.Context, reason string) error {
	if err := h.cfg.Agent.Fail(reason); err != nil {
		return err
	}
	return h.next(ctx)
}

// final publishes the final status; once the broker has it, the job is done.
func (h *handler) final(ctx context.Context, status, reason string) error {
	if err := h.publishStatus(ctx, status, reason); err != nil {
		return err
	}
	if err := h.cfg.Agent.Done(); err != nil {
		return err
	}
	h.job, h.cmd, h.status, h.reported = nil, nil, nil, true
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with plain structs of strings
	}
	return b
}
