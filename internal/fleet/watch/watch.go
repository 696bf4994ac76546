// Package watch is the fleet adapter for update channels without a server:
// it polls a signed channel file (internal/channel) on any HTTP server,
// object store or CDN, and when the file names a release this device
// should run, carries it through a fleet.Agent — delta install with the
// bundle hash pinned AND the bundle signature checked, trial boot, the
// health-checked commit. There is no server to report to: the watcher
// records every outcome in its state file in the data directory, logs it,
// and never retries a bundle that failed on this device (a new bundle —
// a new version or rebuild — is tried). A bundle that matches its pinned
// hash but whose signature fails is the transport's fault, not the
// release's (the signature section lies outside the hashed header): it is
// tried again at the next poll.
//
// Files (under the device's data directory):
//
//	fleet/watch.json         the update under way (fleet.Agent's job)
//	watch/<channel>.json     the newest accepted channel file, its sequence,
//	                         ETag/Last-Modified, failed bundles, outcome history
package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/channel"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/retry"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/signature"
)

// Adapter is the watcher's name for fleet.Agent (its job file) and logs.
const Adapter = "watch"

// maxHistory bounds the outcomes kept in the state file.
const maxHistory = 20

// maxState bounds the state file.
const maxState = 1 << 20

// maxDeviceID bounds the device id file.
const maxDeviceID = 256

// Outcome is one finished update, as recorded.
type Outcome struct {
	Job        string    `json:"job"`
	Sequence   uint64    `json:"sequence"`
	Version    string    `json:"version"`
	BundleHash string    `json:"bundleHash"`
	Success    bool      `json:"success"`
	Reason     string    `json:"reason,omitempty"`
	Finished   time.Time `json:"finished"`
}

// State is what the watcher keeps between polls and reboots.
type State struct {
	URL string `json:"url"`
	// Seen is the newest accepted channel file; File its bytes (to decide
	// again on a 304 Not Modified).
	Seen         *channel.Seen `json:"seen,omitempty"`
	File         []byte        `json:"file,omitempty"`
	ETag         string        `json:"etag,omitempty"`
	LastModified string        `json:"lastModified,omitempty"`
	// Failed lists bundles that failed on this device: not retried.
	Failed []Outcome `json:"failed,omitempty"`
	// History is the last outcomes, newest last.
	History []Outcome `json:"history,omitempty"`
}

// jobExtra is the watcher's data in the fleet job.
type jobExtra struct {
	Channel  string `json:"channel"`
	Sequence uint64 `json:"sequence"`
}

// Watcher polls one channel for one device: a fleet.Adapter.
type Watcher struct {
	// Log receives the events within a step (an outcome recorded, a
	// retried fetch); nil = discard. The loop logs the steps themselves.
	// Records carry event= checked, skip, install, reboot, verifying,
	// outcome or retry, and the release's job, sequence and version.
	Log *slog.Logger
	// Now is the clock (New: time.Now); Floor the earliest trustworthy
	// time (zero = signature.DefaultFloor).
	Now   func() time.Time
	Floor time.Time
	// Retry is how one poll retries a transient failure of the channel
	// fetch (network errors, 408, 429, 5xx): New sets 4 tries, 2 s
	// doubling, a Retry-After up to a minute.
	Retry retry.Policy
	// Install sets further install options (progress, warnings); Source,
	// BundleHash, Reboot, Trust, HTTP and RequireSignature are the
	// watcher's.
	Install install.Options

	c        Config
	open     func() (*device.Device, error)
	agent    *fleet.Agent
	client   *http.Client
	header   http.Header
	deviceID *string
}

var _ fleet.Adapter = (*Watcher)(nil)

// ChannelName derives the channel name from a channel URL: its last path
// element without extension.
func ChannelName(channelURL string) (string, error) {
	if err := config.CheckURL("channel url", channelURL); err != nil {
		return "", err
	}
	u, _ := url.Parse(channelURL)
	base := path.Base(u.Path)
	if i := strings.IndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	return base, nil
}

// New checks c and makes the Watcher it describes on the device open
// opens; log receives the events within a step (nil = discard).
func New(c *Config, open func() (*device.Device, error), log *slog.Logger) (*Watcher, error) {
	if c.URL == "" {
		return nil, errors.New("no channel url")
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	if log != nil {
		log = log.With("adapter", Adapter)
	}
	w := &Watcher{c: *c, open: open, Log: log, Now: time.Now,
		Retry: retry.Policy{Attempts: 4, Min: 2 * time.Second, Max: 8 * time.Second, MaxRetryAfter: time.Minute}}
	if w.c.Channel == "" {
		w.c.Channel, _ = ChannelName(c.URL)
	}
	if err := channel.ValidName(w.c.Channel); err != nil {
		return nil, fmt.Errorf("%w (name the channel explicitly)", err)
	}
	if open == nil {
		return nil, errors.New("watch: no device")
	}
	if c.DeviceID != "" {
		w.deviceID = &w.c.DeviceID
	}
	var err error
	if w.client, w.header, err = w.httpOptions().Client(); err != nil {
		return nil, err
	}
	w.client.Timeout = 60 * time.Second
	w.agent = &fleet.Agent{Open: open, Adapter: Adapter, Now: func() time.Time { return w.Now() }}
	return w, nil
}

func (w *Watcher) httpOptions() install.HTTPOptions {
	return install.HTTPOptions{CAFile: w.c.CAFile, CertFile: w.c.CertFile, KeyFile: w.c.KeyFile, Headers: w.c.Headers}
}

// Name is the adapter's name.
func (w *Watcher) Name() string { return Adapter }

// Channel is the channel the watcher follows.
func (w *Watcher) Channel() string { return w.c.Channel }

// Agent is the watcher's fleet agent.
func (w *Watcher) Agent() *fleet.Agent { return w.agent }

// ev is an event of the watcher: its name and the release it is about.
type ev struct {
	name, job, version string
	sequence           uint64
	success            *bool
}

func (e ev) attrs() []slog.Attr {
	a := []slog.Attr{slog.String("event", e.name)}
	if e.job != "" {
		a = append(a, slog.String("job", e.job))
	}
	if e.sequence != 0 {
		a = append(a, slog.Uint64("sequence", e.sequence))
	}
	if e.version != "" {
		a = append(a, slog.String("version", e.version))
	}
	if e.success != nil {
		a = append(a, slog.Bool("success", *e.success))
	}
	return a
}

// step is a Step whose log record carries e.
func (e ev) step(act fleet.Activity, msg string, more ...slog.Attr) fleet.Step {
	return fleet.Step{Activity: act, Message: msg, Attrs: append(e.attrs(), more...)}
}

// log records e within a step.
func (w *Watcher) log(ctx context.Context, level slog.Level, e ev, msg string) {
	if w.Log != nil {
		w.Log.LogAttrs(ctx, level, msg, e.attrs()...)
	}
}

func statePath(d *device.Device, name string) string {
	return path.Join(d.Config.DataDir, "watch", name+".json")
}

// LoadState reads the watcher's state for the channel (empty when none).
func LoadState(d *device.Device, name string) (*State, error) {
	s := &State{}
	if _, err := d.ReadJSON(statePath(d, name), maxState, s); err != nil {
		return nil, err
	}
	return s, nil
}

func saveState(d *device.Device, name string, s *State) error {
	return d.WriteJSON(statePath(d, name), s)
}

// Step runs one step of the device's life: it finishes or continues the
// update under way (recording a final outcome), then, when idle, polls the
// channel and starts the release it names if this device should take it.
// An install runs to its end (or ctx's) and reboots into the trial. A
// failure that is not the release's (the network, the server, a bundle
// that is not the pinned one or whose signature section was damaged) is
// transient: the next poll tries again.
func (w *Watcher) Step(ctx context.Context) (fleet.Step, error) {
	unlock, err := w.lock()
	if err != nil {
		return fleet.Step{}, err
	}
	defer unlock()
	out, err := w.agent.Outcome()
	if errors.Is(err, fleet.ErrBadJob) {
		// Nothing tells which update it was: drop it (issue 11, hardening 3).
		w.log(ctx, slog.LevelWarn, ev{name: "outcome"}, fmt.Sprintf("dropped a job file that cannot be used: %v", err))
		if err := w.agent.Done(); err != nil {
			return fleet.Step{}, err
		}
		out = fleet.Outcome{State: fleet.Idle}
	} else if err != nil {
		return fleet.Step{}, err
	}
	e := ev{}
	if out.Job != nil {
		e = ev{job: out.Job.ID, version: out.Job.Version}
	}
	switch out.State {
	case fleet.Installing:
		// An interrupted install resumes, unless the channel names another
		// bundle by now (the release was pulled or replaced): then it is
		// dropped (nothing boots differently yet) for the channel's.
		a, cerr := w.Check(ctx)
		if cerr != nil || a.Channel.Release.BundleHash == out.Job.BundleHash {
			e.name = "install"
			w.log(ctx, slog.LevelInfo, e, "resuming an interrupted install")
			return w.install(ctx, e)
		}
		e.name, e.sequence = "skip", a.Channel.Sequence
		w.log(ctx, slog.LevelInfo, e, fmt.Sprintf("the interrupted install of %s is dropped: the channel names %s now", out.Job.Version, a.Channel.Release.Version))
		if err := w.agent.Done(); err != nil {
			return fleet.Step{}, err
		}
	case fleet.Installed:
		if err := w.agent.Try(); err != nil {
			return fleet.Step{}, err
		}
		e.name = "reboot"
		return e.step(fleet.ActRebooting, "rebooting into the trial"), w.agent.Reboot()
	case fleet.Rebooting:
		e.name = "reboot"
		return e.step(fleet.ActRebooting, "the trial is set: rebooting again"), w.agent.Reboot()
	case fleet.Verifying:
		e.name = "verifying"
		return e.step(fleet.ActWaiting, "the new group runs on trial; tandem health decides"), nil
	case fleet.Success, fleet.Failure:
		if err := w.record(ctx, out); err != nil {
			return fleet.Step{}, err
		}
	}
	return w.poll(ctx)
}

// LockFile is the device path of the lock one watcher step holds, so that
// two watchers (a service and a timer, say) never act at once.
const LockFile = "/run/tandem/watch.lock"

func (w *Watcher) lock() (func(), error) {
	d, err := w.open()
	if err != nil {
		return nil, err
	}
	return d.LockPath(LockFile, "another tandem watch is at work")
}

// record keeps a final outcome in the state, then forgets the job.
func (w *Watcher) record(ctx context.Context, out fleet.Outcome) error {
	d, err := w.open()
	if err != nil {
		return err
	}
	j := out.Job
	var x jobExtra
	_ = json.Unmarshal(j.Extra, &x)
	name := x.Channel
	if name == "" {
		name = w.c.Channel
	}
	st, err := LoadState(d, name)
	if err != nil {
		return err
	}
	o := Outcome{Job: j.ID, Sequence: x.Sequence, Version: j.Version, BundleHash: j.BundleHash,
		Success: out.State == fleet.Success, Reason: out.Reason, Finished: w.Now().UTC().Truncate(time.Second)}
	// A crash between saving and Done records the outcome again: once.
	if !slices.ContainsFunc(st.History, func(h Outcome) bool { return h.Job == o.Job }) {
		st.History = append(st.History, o)
		if len(st.History) > maxHistory {
			st.History = st.History[len(st.History)-maxHistory:]
		}
		if !o.Success && !slices.ContainsFunc(st.Failed, func(f Outcome) bool { return f.BundleHash == o.BundleHash }) {
			st.Failed = append(st.Failed, o)
			if len(st.Failed) > maxHistory {
				st.Failed = st.Failed[len(st.Failed)-maxHistory:]
			}
		}
		if err := saveState(d, name, st); err != nil {
			return err
		}
	}
	msg := "version " + o.Version + " committed"
	if !o.Success {
		msg = "version " + o.Version + " failed and will not be retried on this device: " + o.Reason
	}
	w.log(ctx, slog.LevelInfo, ev{name: "outcome", job: o.Job, sequence: o.Sequence, version: o.Version, success: &o.Success}, msg)
	return w.agent.Done()
}

// trust loads the device's keys directory and the extra trust files.
func (w *Watcher) trust(d *device.Device) (*signature.TrustStore, error) {
	return signature.LoadTrust(d.FS.Path(d.Config.KeysDir), w.c.Trust)
}

// fetch gets the channel file (on 304 the cached bytes), retrying
// transient failures by w.Retry.
func (w *Watcher) fetch(ctx context.Context, st *State) (data []byte, etag, modified string, err error) {
	err = w.Retry.Do(ctx, func() error {
		var err error
		data, etag, modified, err = w.fetchOnce(ctx, st)
		return err
	}, func(_ int, wait time.Duration, err error) {
		w.log(ctx, slog.LevelWarn, ev{name: "retry"}, fmt.Sprintf("%v; trying again in %s", err, wait.Round(time.Millisecond)))
	})
	return data, etag, modified, err
}

// fetchOnce makes one request; its transient failures are marked
// (retry.Transient).
func (w *Watcher) fetchOnce(ctx context.Context, st *State) (data []byte, etag, modified string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.c.URL, nil)
	if err != nil {
		return nil, "", "", err
	}
	req.Header = w.header.Clone()
	cached := st.URL == w.c.URL && len(st.File) > 0
	if cached && st.ETag != "" {
		req.Header.Set("If-None-Match", st.ETag)
	}
	if cached && st.LastModified != "" {
		req.Header.Set("If-Modified-Since", st.LastModified)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, "", "", retry.Transient(fmt.Errorf("channel %s: %w", w.c.URL, err), 0)
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code == http.StatusNotModified && cached:
		return st.File, st.ETag, st.LastModified, nil
	case code != http.StatusOK:
		return nil, "", "", retry.StatusError(fmt.Errorf("channel %s: HTTP %s", w.c.URL, resp.Status), resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, channel.MaxSize+1))
	if err != nil {
		return nil, "", "", retry.Transient(fmt.Errorf("channel %s: %w", w.c.URL, err), 0)
	}
	return b, resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"), nil
}

// Check fetches and accepts the channel file (as Step does, without
// acting on it); it records the accepted file in the state.
func (w *Watcher) Check(ctx context.Context) (*channel.Accepted, error) {
	d, err := w.open()
	if err != nil {
		return nil, err
	}
	st, err := LoadState(d, w.c.Channel)
	if err != nil {
		return nil, err
	}
	data, etag, modified, err := w.fetch(ctx, st)
	if err != nil {
		return nil, err
	}
	f, err := channel.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("channel %s: %w", w.c.URL, err)
	}
	trust, err := w.trust(d)
	if err != nil {
		return nil, err
	}
	a, err := channel.Accept(f, channel.Policy{Trust: trust, Channel: w.c.Channel, Compatible: d.Config.Compatible,
		Last: st.Seen, Now: w.Now(), Floor: w.Floor})
	if err != nil {
		return nil, fmt.Errorf("channel %s: %w", w.c.URL, err)
	}
	if st.Seen == nil || *st.Seen != a.Seen || st.ETag != etag || st.LastModified != modified || st.URL != w.c.URL {
		st.URL, st.Seen, st.File, st.ETag, st.LastModified = w.c.URL, &a.Seen, data, etag, modified
		if err := saveState(d, w.c.Channel, st); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// device returns this device's id: the configured one, or the contents of
// the device id file (read once).
func (w *Watcher) device(d *device.Device) (string, error) {
	if w.deviceID != nil {
		return *w.deviceID, nil
	}
	p := w.c.DeviceIDFile
	if p == "" {
		p = "/etc/machine-id"
	}
	b, err := d.FS.ReadFile(p)
	if err != nil && (w.c.DeviceIDFile != "" || !rootfs.IsNotExist(err)) {
		return "", fmt.Errorf("device id: %w", err)
	}
	if len(b) > maxDeviceID {
		return "", fmt.Errorf("device id file %s: larger than %d bytes", p, maxDeviceID)
	}
	id := strings.TrimSpace(string(b))
	w.deviceID = &id
	return id, nil
}

// poll checks the channel and starts its release when this device takes it.
func (w *Watcher) poll(ctx context.Context) (fleet.Step, error) {
	a, err := w.Check(ctx)
	if err != nil {
		return fleet.Step{}, err
	}
	c := a.Channel
	r := c.Release
	e := ev{sequence: c.Sequence, version: r.Version}
	d, err := w.open()
	if err != nil {
		return fleet.Step{}, err
	}
	skip := func(msg string) (fleet.Step, error) {
		e.name = "skip"
		return e.step(fleet.ActIdle, msg), nil
	}
	status, err := d.Status()
	if err != nil {
		return fleet.Step{}, err
	}
	running, _ := d.GroupVersion(status.Active)
	if running == r.Version {
		e.name = "checked"
		return e.step(fleet.ActIdle, "up to date: version "+running), nil
	}
	st, err := LoadState(d, w.c.Channel)
	if err != nil {
		return fleet.Step{}, err
	}
	if i := slices.IndexFunc(st.Failed, func(f Outcome) bool { return f.BundleHash == r.BundleHash }); i >= 0 {
		return skip(fmt.Sprintf("version %s (bundle %s) failed on this device at %s and is not retried: %s",
			r.Version, short(r.BundleHash), st.Failed[i].Finished.Format(time.RFC3339), st.Failed[i].Reason))
	}
	id, err := w.device(d)
	if err != nil {
		return fleet.Step{}, err
	}
	if dec := c.Decide(channel.Device{ID: id, Compatible: d.Config.Compatible, Labels: w.c.Labels}); !dec.Take {
		return skip(dec.Reason)
	}
	if err := device.CheckDowngrade(running, r.Version, w.c.AllowDowngrade); err != nil {
		return skip(err.Error())
	}
	src, err := c.Resolve(w.c.URL)
	if err != nil {
		return fleet.Step{}, err
	}
	patches, err := c.ResolvePatches(w.c.URL)
	if err != nil {
		return fleet.Step{}, err
	}
	var refs []install.PatchRef
	for _, p := range patches {
		refs = append(refs, install.PatchRef{URL: p.URL, FromBundle: p.FromBundle, FromVersion: p.FromVersion, Hash: p.Hash})
	}
	extra, _ := json.Marshal(jobExtra{Channel: c.Channel, Sequence: c.Sequence})
	j, err := w.agent.Begin(fleet.Job{ID: fmt.Sprintf("%s-%d", c.Channel, c.Sequence), Source: src,
		BundleHash: r.BundleHash, Version: r.Version, Patches: refs, Extra: extra})
	if errors.Is(err, fleet.ErrBusy) {
		// Someone else's update (a trial not committed yet): not now.
		return fleet.Step{}, fmt.Errorf("%w: %w", device.ErrRefused, err)
	}
	if err != nil {
		return fleet.Step{}, err
	}
	e.name, e.job = "install", j.ID
	w.log(ctx, slog.LevelInfo, e, fmt.Sprintf("installing %s (bundle %s) from %s", r.Version, short(r.BundleHash), src))
	return w.install(ctx, e)
}

// install runs (or resumes) the job's install and reboots into the trial;
// a failure that is the release's is recorded at once, any other forgets
// the job for the next poll.
func (w *Watcher) install(ctx context.Context, e ev) (fleet.Step, error) {
	o := w.Install
	o.Source, o.Trust.BundleHash = "", ""
	o.HTTP = w.httpOptions()
	o.Trust.Files = w.c.Trust
	o.Trust.RequireSignature = true
	o.Policy.AllowDowngrade = w.c.AllowDowngrade
	res, err := w.agent.Install(ctx, o, install.RebootYes)
	if err != nil && ctx.Err() == nil {
		if j, _ := w.agent.Job(); j != nil {
			err = fmt.Errorf("bundle %s: %w", j.Source, err)
		}
	}
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return fleet.Step{}, err
	case !Permanent(err):
		// Not this release's fault (network, a CDN serving another or a
		// damaged file): forget the job; the next poll tries again.
		if derr := w.agent.Done(); derr != nil {
			return fleet.Step{}, errors.Join(err, derr)
		}
		return fleet.Step{}, retry.Transient(fmt.Errorf("install failed, will try again: %w", err), 0)
	default:
		out, oerr := w.agent.Outcome()
		if oerr != nil {
			return fleet.Step{}, errors.Join(err, oerr)
		}
		if rerr := w.record(ctx, out); rerr != nil {
			return fleet.Step{}, errors.Join(err, rerr)
		}
		return fleet.Step{}, err
	}
	e.name = "reboot"
	return e.step(fleet.ActRebooting, fmt.Sprintf("installed into group %s; rebooting into the trial", res.Group),
		slog.Int64("downloaded", res.Transfer.BytesDownloaded), slog.Int64("reused", res.Transfer.BytesReused)), nil
}

// Permanent reports whether an install error condemns the release itself,
// so that the watcher does not try its bundle again: what the pinned,
// hashed header says does not fit this device (another compatible, an
// older version, payloads that do not fit, an unsafe file tree). These
// errors come only after the bundle's hash matched the pin. Everything
// else is the transport's: network and server errors, a file that is not
// the pinned bundle (malformed, another hash), chunks that do not match
// their digests, and a signature that fails on a bundle matching the pin —
// the signature section lies outside the hashed header, so a CDN can
// damage or replace it (issue 11, hardening 4). The next poll tries again.
func Permanent(err error) bool {
	for _, e := range []error{install.ErrIncompatible, install.ErrDowngrade, install.ErrPayload, install.ErrUnsafeTree} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
