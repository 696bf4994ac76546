// Package health decides the fate of a group that runs on trial: it runs the
// health-check hooks (<hooks-dir>/health/check/*, docs/hooks.md), commits the
// group when they all pass, and rolls back — withdraws the trial, records why,
// reboots into the committed group — when they still fail once a deadline has
// passed. Fleet adapters report an update's outcome only after this decided.
//
// The deadline counts from the first check in the running boot (kept in
// <data-dir>/health.json with the boot id), so a restarted checker does not
// get a fresh deadline.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/hooks"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/state"
)

// Defaults of Options.
const (
	DefaultDeadline = 5 * time.Minute
	DefaultInterval = 10 * time.Second
)

// StateFile keeps the start of the deadline, relative to the data directory.
const StateFile = "health.json"

// Verdict is what a check decided.
type Verdict string

// Verdicts.
const (
	NotOnTrial Verdict = "not-on-trial" // nothing to decide: the running group is the default
	Committed  Verdict = "committed"    // the checks passed; the running group is the default now
	RolledBack Verdict = "rolled-back"  // the checks failed past the deadline; the device reboots into the default
	Failing    Verdict = "failing"      // the checks failed; the deadline has not passed yet
)

// Result is the outcome of a check.
type Result struct {
	Verdict Verdict `json:"verdict"`
	Group   string  `json:"group"`             // the running group
	Message string  `json:"message,omitempty"` // why the checks failed
	// Left is the time until the deadline (Failing).
	Left time.Duration `json:"left,omitempty"`
}

// ErrUnhealthy marks a result that is not a success (RolledBack, or Failing
// when not waiting).
var ErrUnhealthy = errors.New("health check failed")

// Options of a health check.
type Options struct {
	Open     func() (*device.Device, error)
	Deadline time.Duration // 0: roll back at the first failed check (the CLI's default is DefaultDeadline)
	Interval time.Duration // between checks in Run; 0 = DefaultInterval
	Now      func() time.Time
	// Progress, when set, is told about every failing check.
	Progress func(Result)
}

func (o *Options) defaults() {
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Check runs the checks once and acts on them: commit when they pass,
// roll back when they fail past the deadline.
func Check(o Options) (Result, error) {
	o.defaults()
	d, err := o.Open()
	if err != nil {
		return Result{}, err
	}
	// A simulated system that hung could not run the checker at all.
	if err := d.CheckNotHung(); err != nil {
		return Result{}, err
	}
	st, err := d.Status()
	if err != nil {
		return Result{}, err
	}
	res := Result{Group: st.Active}
	if !st.CommitPending() {
		// Flows that count every boot (RAUC's) need the committed group
		// marked good again after each boot.
		res.Verdict = NotOnTrial
		_, err := d.Refresh()
		return res, err
	}
	// A trial that was given up (by an earlier check, a fleet adapter's
	// rollback) is never committed: go back to the committed group.
	db, err := d.LoadState()
	if err != nil {
		return res, err
	}
	if u := db.LastUpdate; db.Trial == nil && u != nil && u.Group == st.Active && u.Status == "rolled-back" {
		res.Verdict, res.Message = RolledBack, u.Message
		return res, d.Reboot()
	}
	since, err := deadlineStart(d, o.Now())
	if err != nil {
		return res, err
	}
	// A boot whose state tandem init could not set up fails the check
	// before the hooks run: committing would make a system that never saw
	// its state the default (docs/state.md).
	herr := state.CheckCommit(d.FS)
	if herr == nil {
		herr = hooks.Run(d.FS, d.Config.HooksDir, "health", "check", "TANDEM_GROUP="+st.Active)
	}
	if herr == nil {
		if _, err := d.Commit(); err != nil {
			return res, fmt.Errorf("the health checks passed, but the commit failed: %w", err)
		}
		res.Verdict = Committed
		return res, nil
	}
	res.Message = herr.Error()
	if left := since.Add(o.Deadline).Sub(o.Now()); left > 0 {
		res.Verdict, res.Left = Failing, left
		return res, nil
	}
	reason := fmt.Sprintf("the health check of group %s failed until its deadline (%s): %s", st.Active, o.Deadline, herr)
	if err := d.RollBack(reason); err != nil {
		return res, err
	}
	res.Verdict, res.Message = RolledBack, reason
	return res, d.Reboot()
}

// Run checks every interval until the group is committed, rolled back or
// was not on trial, or ctx ends.
func Run(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	for {
		res, err := Check(o)
		if err != nil || res.Verdict != Failing {
			return res, err
		}
		if o.Progress != nil {
			o.Progress(res)
		}
		wait := min(o.Interval, res.Left)
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(wait):
		}
	}
}

type stateDoc struct {
	BootID string    `json:"bootId"`
	Since  time.Time `json:"since"`
}

// deadlineStart returns when checking began in this boot, recording now if
// this is the first check.
func deadlineStart(d *device.Device, now time.Time) (time.Time, error) {
	bootID, err := d.BootID()
	if err != nil {
		return time.Time{}, err
	}
	p := path.Join(d.Config.DataDir, StateFile)
	var doc stateDoc
	b, err := d.FS.ReadFile(p)
	switch {
	case err == nil && len(b) < 4096 && json.Unmarshal(b, &doc) == nil && doc.BootID == bootID && !doc.Since.IsZero():
		return doc.Since, nil
	case err != nil && !rootfs.IsNotExist(err):
		return time.Time{}, err
	}
	// Missing, from another boot, or unreadable: the deadline starts now.
	doc = stateDoc{BootID: bootID, Since: now.UTC()}
	if b, err = json.Marshal(doc); err != nil {
		return time.Time{}, err
	}
	if err := d.FS.MkdirAll(d.Config.DataDir, 0o700); err != nil {
		return time.Time{}, err
	}
	return doc.Since, rootfs.WriteAtomic(d.FS, p, append(b, '\n'), 0o600)
}
