// Package fleet is what every fleet adapter (Mender, thin-edge.io, hawkBit,
// update channels) stands on: an Agent carries one update — a Job — from the
// server's offer through the verified install, the trial boot and the
// health-checked commit to the report, across reboots and interruptions,
// with the same install, commit and info code the command line uses. An
// adapter only translates its protocol into these calls, and reports the
// outcome only when Outcome says it is final: success after the new group
// committed itself, failure after it was rolled back.
//
// A Job is kept in <data-dir>/fleet/<adapter>.json (written atomically), so
// an adapter that restarts — after the reboot into the trial, a crash or a
// power cut — finds where its update stands.
package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Phase is where a Job stands.
type Phase string

// Phases of a Job, in order.
const (
	PhaseInstalling Phase = "installing" // the bundle is being written (resumable)
	PhaseInstalled  Phase = "installed"  // written and verified; no trial set yet
	PhaseTrial      Phase = "trial"      // trial boot requested (BootID: the boot that requested it)
	PhaseFailed     Phase = "failed"     // the install failed (Error); nothing boots differently
)

// Job is one update an adapter carries.
type Job struct {
	// ID is the fleet server's name for the update (deployment action,
	// command id); adapters use it to report.
	ID string `json:"id"`
	// Source is the bundle: a path, "-" or an http(s) URL.
	Source string `json:"source"`
	// BundleHash pins the bundle (optional): it must have this hash.
	BundleHash string `json:"bundleHash,omitempty"`
	// Patches are the patches the server offers with the bundle
	// (install.Options.Patches); none: the device looks next to it.
	Patches []install.PatchRef `json:"patches,omitempty"`
	// Version is what the server says the update is (informational).
	Version string `json:"version,omitempty"`
	// Group is the group the bundle goes into; From the committed group
	// when the job began.
	Group string `json:"group,omitempty"`
	From  string `json:"from,omitempty"`
	Phase Phase  `json:"phase"`
	// BootID is the boot in which the trial was requested.
	BootID  string    `json:"bootId,omitempty"`
	Started time.Time `json:"started"`
	// Installed is the version the bundle declared.
	Installed string `json:"installed,omitempty"`
	Error     string `json:"error,omitempty"`
	// Extra is the adapter's own data (e.g. the command payload to echo).
	Extra json.RawMessage `json:"extra,omitempty"`
}

// State is what Outcome found.
type State string

// States of an adapter's update.
const (
	Idle       State = "idle"       // no job
	Installing State = "installing" // a job was begun or interrupted: Install (again) resumes it
	Installed  State = "installed"  // written; Try sets the trial
	Rebooting  State = "rebooting"  // the trial is set; waiting for the reboot
	Verifying  State = "verifying"  // running the new group on trial; the health check decides
	Success    State = "success"    // the new group committed itself (final)
	Failure    State = "failure"    // failed or rolled back; Reason says why (final)
)

// Outcome is the state of the adapter's job.
type Outcome struct {
	State State
	// Reason says why for Failure; for Success it may note that the device
	// has moved on since the update committed.
	Reason string
	Job    *Job // nil when Idle
}

// Final reports whether the outcome can be reported to the server.
func (o Outcome) Final() bool { return o.State == Success || o.State == Failure }

// ErrBusy is returned by Begin while another update is under way. It is a
// refusal (device.ErrRefused: exit status 4).
var ErrBusy = fmt.Errorf("%w: an update is already under way", device.ErrRefused)

// ErrBadJob is returned while the adapter's job file cannot be used (larger
// than the limit, not a job): the adapter reports the update failed where
// it can tell which one it was (BadJobError.ID, or its server's offer), and
// drops the file (Done, which moves it aside), so that one bad file never
// stops it for good (issue 11, hardening 3).
var ErrBadJob = errors.New("the job file cannot be used")

// BadJobError is the ErrBadJob of one job file.
type BadJobError struct {
	// ID is the job id the file starts with ("" when none can be read):
	// save writes it first, so it survives a file cut short or too large.
	ID   string
	Path string // the file (host path)
	Err  error  // what is wrong with it
}

func (e *BadJobError) Error() string { return fmt.Sprintf("%v: %s: %v", ErrBadJob, e.Path, e.Err) }

// Unwrap returns ErrBadJob and the cause.
func (e *BadJobError) Unwrap() []error { return []error{ErrBadJob, e.Err} }

// ErrJobData is returned when a job would keep more than a job file holds:
// the fleet side sent more (or deeper) data than an update needs. The
// adapter reports the command failed with this reason.
var ErrJobData = errors.New("the update's data is more than tandem keeps")

// Bounds of what a Job keeps, checked when it is written, so that hostile
// fleet input can never make a job file the adapter cannot read back
// (issue 11, hardening 3).
const (
	// MaxExtra bounds Job.Extra (compact JSON bytes); MaxExtraDepth its
	// nesting depth.
	MaxExtra      = 64 << 10
	MaxExtraDepth = 32
	// maxJobText bounds each string of a job (ID, Source, Version, Error).
	maxJobText = 16 << 10
	// maxJobFile bounds a job file.
	maxJobFile = 1 << 20
)

// Agent runs the updates of one adapter on one device.
type Agent struct {
	// Open opens the device afresh for every step (its state changes under
	// the agent: reboots, the health check).
	Open func() (*device.Device, error)
	// Adapter names the adapter; its job file is <data-dir>/fleet/<Adapter>.json.
	Adapter string
	// Options are the adapter's base install options (trust, HTTP,
	// progress), kept here for its own use: Install takes the options it is
	// given and fills in only the source, pin and patches from the job.
	Options install.Options
	// Now is the clock (nil = time.Now).
	Now func() time.Time
}

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func jobPath(d *device.Device, adapter string) string {
	return path.Join(d.Config.DataDir, "fleet", adapter+".json")
}

// Job returns the adapter's job, nil if there is none.
func (a *Agent) Job() (*Job, error) {
	d, err := a.Open()
	if err != nil {
		return nil, err
	}
	return a.load(d)
}

// load reads the adapter's job. A job file that cannot be used (larger than
// maxJobFile, not a job) is a *BadJobError; a large one is not read
// beyond its start.
func (a *Agent) load(d *device.Device) (*Job, error) {
	p := jobPath(d, a.Adapter)
	fi, err := d.FS.Stat(p)
	if rootfs.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxJobFile {
		return nil, &BadJobError{ID: leadingID(head(d.FS.Path(p), 64<<10)), Path: d.FS.Path(p),
			Err: fmt.Errorf("larger than %d bytes", maxJobFile)}
	}
	b, err := d.FS.ReadFile(p)
	if err != nil {
		return nil, err
	}
	j := &Job{}
	var bad error
	if err := json.Unmarshal(b, j); err != nil {
		bad = err
	} else if err := j.check(); err != nil {
		bad = err
	} else if !slices.Contains([]Phase{PhaseInstalling, PhaseInstalled, PhaseTrial, PhaseFailed}, j.Phase) {
		bad = fmt.Errorf("unknown phase %.32q", j.Phase)
	}
	if bad != nil {
		return nil, &BadJobError{ID: leadingID(b), Path: d.FS.Path(p), Err: bad}
	}
	return j, nil
}

// head returns the first n bytes of the host file p (nil on error).
func head(p string, n int64) []byte {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return b
}

// leadingID returns the job id a job file starts with ("" if none): save
// writes it first, so it survives a file that is cut short or too large.
func leadingID(b []byte) string {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	if t, err := dec.Token(); err != nil || t != "id" {
		return ""
	}
	var id string
	if dec.Decode(&id) != nil || len(id) > maxJobText {
		return ""
	}
	return id
}

// check refuses a job that keeps more than a job file holds.
func (j *Job) check() error {
	for _, s := range []string{j.ID, j.Source, j.Version, j.BundleHash, j.Group, j.From, j.BootID, j.Installed} {
		if len(s) > maxJobText {
			return fmt.Errorf("%w: a field of %d bytes (at most %d)", ErrJobData, len(s), maxJobText)
		}
	}
	if err := install.CheckPatchRefs(j.Patches); err != nil {
		return fmt.Errorf("%w: %w", ErrJobData, err)
	}
	if len(j.Extra) > MaxExtra {
		return fmt.Errorf("%w: the command is %d bytes (at most %d)", ErrJobData, len(j.Extra), MaxExtra)
	}
	if depth := jsonDepth(j.Extra); depth > MaxExtraDepth {
		return fmt.Errorf("%w: the command nests JSON more than %d deep", ErrJobData, MaxExtraDepth)
	}
	return nil
}

// jsonDepth returns the deepest nesting of arrays and objects in the JSON
// text b.
func jsonDepth(b []byte) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			escaped, inString = c == '\\', c != '"'
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// save writes the job, compact (indentation would multiply a deep
// command's size), after checking what it keeps. The error text is cut to
// what a job keeps.
func (a *Agent) save(d *device.Device, j *Job) error {
	j.Error = oneLine(j.Error, maxJobText)
	if err := j.check(); err != nil {
		return err
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	p := jobPath(d, a.Adapter)
	if err := d.FS.MkdirAll(path.Dir(p), 0o755); err != nil {
		return err
	}
	return rootfs.WriteAtomic(d.FS, p, append(b, '\n'), 0o644)
}

// oneLine returns s on one line, cut to at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n-3], "") + "..."
	}
	return s
}

// Begin records a new job. It refuses (ErrBusy) while a job of this adapter
// is not final, and while the device runs a group on trial.
func (a *Agent) Begin(j Job) (*Job, error) {
	d, err := a.Open()
	if err != nil {
		return nil, err
	}
	if old, err := a.load(d); err != nil {
		return nil, err
	} else if old != nil {
		o, err := a.outcome(d, old)
		if err != nil {
			return nil, err
		}
		if !o.Final() {
			return nil, fmt.Errorf("%w: job %s is %s", ErrBusy, old.ID, o.State)
		}
	}
	st, err := d.Status()
	if err != nil {
		return nil, err
	}
	if st.CommitPending() {
		return nil, fmt.Errorf("%w: group %s runs on trial and is not committed", ErrBusy, st.Active)
	}
	j.Phase, j.Started, j.From = PhaseInstalling, a.now().UTC().Truncate(time.Second), st.Default
	j.Group, j.BootID, j.Error, j.Installed = "", "", "", ""
	return &j, a.save(d, &j)
}

// Install writes the job's bundle into the spare group (resuming an
// interrupted one: the install journal is keyed by the bundle hash), then
// does what reboot asks: with install.RebootSet (or RebootYes) it requests
// the trial through Try, after the job recorded the install, so that a crash
// in between never leaves a trial the job does not know; with RebootYes it
// then reboots. An install failure is recorded in the job (phase failed)
// unless it was cancelled through the context, so that a restarted adapter
// resumes.
func (a *Agent) Install(ctx context.Context, o install.Options, reboot install.Reboot) (*install.Result, error) {
	d, err := a.Open()
	if err != nil {
		return nil, err
	}
	j, err := a.load(d)
	if err != nil {
		return nil, err
	}
	if j == nil || (j.Phase != PhaseInstalling && j.Phase != PhaseInstalled) {
		return nil, fmt.Errorf("%w: no job to install", device.ErrRefused)
	}
	if o.Source == "" {
		o.Source = j.Source
	}
	if o.Trust.BundleHash == "" {
		o.Trust.BundleHash = j.BundleHash
	}
	if len(o.Patches) == 0 {
		o.Patches = j.Patches
	}
	res, err := install.Install(ctx, d, o)
	if err != nil {
		if ctx.Err() == nil {
			j.Phase, j.Error = PhaseFailed, err.Error()
			if serr := a.save(d, j); serr != nil {
				return nil, fmt.Errorf("%w (and the job was not updated: %v)", err, serr)
			}
		}
		return nil, err
	}
	j.Group, j.Installed, j.Phase = res.Group, res.Version, PhaseInstalled
	if err := a.save(d, j); err != nil {
		return res, err
	}
	if reboot == install.RebootSet || reboot == install.RebootYes {
		if err := a.Try(); err != nil {
			return res, err
		}
	}
	if reboot == install.RebootYes {
		return res, a.Reboot()
	}
	return res, nil
}

// Try requests the trial boot of the installed job's group.
func (a *Agent) Try() error {
	d, err := a.Open()
	if err != nil {
		return err
	}
	j, err := a.load(d)
	if err != nil {
		return err
	}
	if j == nil || j.Phase != PhaseInstalled {
		return fmt.Errorf("%w: no installed job to try", device.ErrRefused)
	}
	bootID, err := d.BootID()
	if err != nil {
		return err
	}
	// The job says "trial" before the boot flow does: a crash between the
	// two leaves a job whose trial never started (its outcome is a
	// failure), never a trial the job does not know of.
	j.Phase, j.BootID = PhaseTrial, bootID
	if err := a.save(d, j); err != nil {
		return err
	}
	if err := d.TryNext(j.Group); err != nil {
		j.Phase, j.BootID = PhaseInstalled, ""
		if errors.Is(err, device.ErrIncomplete) {
			// Another install began overwriting the group since: this
			// job's install must run again before its group is tried.
			j.Phase = PhaseInstalling
		}
		if serr := a.save(d, j); serr != nil {
			return fmt.Errorf("%w (and the job was not updated: %v)", err, serr)
		}
		return err
	}
	return nil
}

// Reboot reboots the device (into the trial, when one is set).
func (a *Agent) Reboot() error {
	d, err := a.Open()
	if err != nil {
		return err
	}
	return d.Reboot()
}

// Fail ends the job as failed with reason, withdrawing its trial if it was
// requested but not booted yet. It refuses once the trial runs (RollBack).
func (a *Agent) Fail(reason string) error {
	d, err := a.Open()
	if err != nil {
		return err
	}
	j, err := a.load(d)
	if err != nil || j == nil {
		return err
	}
	st, err := d.Status()
	if err != nil {
		return err
	}
	if j.Group != "" && st.Active == j.Group {
		return fmt.Errorf("%w: group %s is running; roll back instead", device.ErrRefused, j.Group)
	}
	if j.Phase == PhaseTrial {
		if err := d.CancelTry(); err != nil {
			return err
		}
	}
	j.Phase, j.Error = PhaseFailed, reason
	return a.save(d, j)
}

// RollBack gives up the trial of the job's group while it runs: the next
// boot starts the committed group. The caller reboots (Reboot).
func (a *Agent) RollBack(reason string) error {
	d, err := a.Open()
	if err != nil {
		return err
	}
	return d.RollBack(reason)
}

// Done forgets the job, once its final outcome was reported. A job file
// that cannot be used (ErrBadJob) is moved aside to <job>.json.bad.
func (a *Agent) Done() error {
	d, err := a.Open()
	if err != nil {
		return err
	}
	p := jobPath(d, a.Adapter)
	if _, lerr := a.load(d); errors.Is(lerr, ErrBadJob) {
		err = d.FS.Rename(p, p+".bad") // kept for a look, never read again
	} else {
		err = d.FS.Remove(p)
	}
	if rootfs.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return d.FS.SyncDir(path.Dir(jobPath(d, a.Adapter)))
}

// Outcome tells where the adapter's job stands.
func (a *Agent) Outcome() (Outcome, error) {
	d, err := a.Open()
	if err != nil {
		return Outcome{}, err
	}
	j, err := a.load(d)
	if err != nil || j == nil {
		return Outcome{State: Idle}, err
	}
	return a.outcome(d, j)
}

func (a *Agent) outcome(d *device.Device, j *Job) (Outcome, error) {
	o := Outcome{Job: j}
	switch j.Phase {
	case PhaseInstalling:
		o.State = Installing
		return o, nil
	case PhaseInstalled:
		o.State = Installed
		return o, nil
	case PhaseFailed:
		o.State, o.Reason = Failure, j.Error
		return o, nil
	case PhaseTrial:
	default:
		return o, fmt.Errorf("%w: job %.64q: unknown phase %.32q", ErrBadJob, j.ID, j.Phase)
	}
	st, err := d.Status()
	if err != nil {
		return o, err
	}
	if st.Active == j.Group {
		o.State = Verifying
		if !st.CommitPending() {
			o.State = Success
		}
		return o, nil
	}
	bootID, err := d.BootID()
	if err != nil {
		return o, err
	}
	db, err := d.LoadState()
	if err != nil {
		return o, err
	}
	if bootID == j.BootID && db.Trial != nil && db.Trial.Group == j.Group {
		o.State = Rebooting
		return o, nil
	}
	o.State = Failure
	switch u := db.LastUpdate; {
	case u != nil && u.Group == j.Group && u.Status == "rolled-back" && u.Message != "":
		o.Reason = u.Message
	case bootID == j.BootID:
		o.Reason = fmt.Sprintf("the trial of group %s was withdrawn before the reboot", j.Group)
	case committedSince(db, j):
		// The update committed itself; the device has moved on since (a
		// later update, another fleet manager). issue 11, hardening 10.
		o.State = Success
		o.Reason = fmt.Sprintf("group %s committed %s; the device has since moved to group %s", j.Group, db.Groups[j.Group].Version, st.Active)
	default:
		o.Reason = fmt.Sprintf("group %s did not commit itself on its trial boot; the boot loader went back to %s", j.Group, st.Active)
	}
	return o, nil
}

// committedSince reports whether the job's group committed the job's
// version after the job began.
func committedSince(db *device.State, j *Job) bool {
	gs, ok := db.Groups[j.Group]
	return ok && !gs.CommittedAt.IsZero() && !gs.CommittedAt.Before(j.Started) && (j.Installed == "" || gs.Version == j.Installed)
}

// Wait polls Outcome every poll interval until it is not Verifying (the
// health check has decided) or ctx ends.
func (a *Agent) Wait(ctx context.Context, poll time.Duration) (Outcome, error) {
	for {
		o, err := a.Outcome()
		if err != nil || o.State != Verifying {
			return o, err
		}
		select {
		case <-ctx.Done():
			return o, ctx.Err()
		case <-time.After(poll):
		}
	}
}
