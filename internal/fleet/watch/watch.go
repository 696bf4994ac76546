// Package watch is the fleet adapter for update channels without a server:
// it polls a signed channel file (internal/channel) on any HTTP server,
// object store or CDN, and when the file names a release this device
// should run, carries it through a fleet.Agent — delta install with the
// bundle hash pinned AND the bundle signature checked, trial boot, the
// health-checked commit. There is no server to report to: the watcher
// records every outcome in its state file in the data directory, logs it,
// and never retries a bundle that failed on this device (a new bundle —
// a new version or rebuild — is tried).
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
	"math/rand/v2"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/channel"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fetch"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/signature"
)

// Adapter is the watcher's name for fleet.Agent (its job file).
const Adapter = "watch"

// maxHistory bounds the outcomes kept in the state file.
const maxHistory = 20

// maxState bounds the state file.
const maxState = 1 << 20

// Options configure a Watcher.
type Options struct {
	// URL is the channel file's http(s) URL.
	URL string
	// Channel is the channel name the device follows; the file must carry
	// it. Empty: the URL's last path element without its extension
	// (".../stable.json" follows "stable").
	Channel string
	// Open opens the device afresh for every step.
	Open func() (*device.Device, error)
	// DeviceID identifies the device for selectors and rollout.
	DeviceID string
	// Labels are matched by release selectors.
	Labels map[string]string
	// Trust adds trust files (host paths) to the device's keys directory,
	// for channel files and bundles alike.
	Trust []string
	// HTTP configures TLS and headers for the channel and the bundle.
	HTTP install.HTTPOptions
	// AllowDowngrade installs a release older than the running version
	// (otherwise such a release is skipped).
	AllowDowngrade bool
	// Install sets further install options (progress, warnings); Source,
	// BundleHash, Reboot and RequireSignature are the watcher's.
	Install install.Options
	// Now is the clock (nil = time.Now); Floor the earliest trustworthy
	// time (zero = signature.DefaultFloor).
	Now   func() time.Time
	Floor time.Time
	// Log receives one line per event (nil = discard).
	Log func(Event)
	// Retries is how often one poll retries a transient failure (server
	// errors, 429, network errors) before it gives up (0 = 3; negative =
	// never); RetryDelay the first wait, doubling (0 = 2s).
	Retries    int
	RetryDelay time.Duration
}

// Event is one thing the watcher did or decided, for logs (JSON lines).
type Event struct {
	Time     time.Time `json:"time"`
	Event    string    `json:"event"` // checked, skip, install, reboot, verifying, outcome, error
	Sequence uint64    `json:"sequence,omitempty"`
	Version  string    `json:"version,omitempty"`
	Job      string    `json:"job,omitempty"`
	Success  *bool     `json:"success,omitempty"`
	Message  string    `json:"message,omitempty"`
}

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

// Watcher polls one channel for one device.
type Watcher struct {
	o      Options
	agent  *fleet.Agent
	client *http.Client
	header http.Header
}

// ChannelName derives the channel name from a channel URL: its last path
// element without extension.
func ChannelName(channelURL string) (string, error) {
	u, err := url.Parse(channelURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("channel url %q: want an http(s) URL", channelURL)
	}
	base := path.Base(u.Path)
	if i := strings.IndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	return base, nil
}

// New checks o and makes a Watcher.
func New(o Options) (*Watcher, error) {
	name, err := ChannelName(o.URL)
	if err != nil {
		return nil, err
	}
	if o.Channel == "" {
		o.Channel = name
	}
	if err := channel.ValidName(o.Channel); err != nil {
		return nil, fmt.Errorf("%w (name the channel explicitly)", err)
	}
	if o.Open == nil {
		return nil, errors.New("watch: no device")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Retries == 0 {
		o.Retries = 3
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 2 * time.Second
	}
	client, header, err := o.HTTP.Client()
	if err != nil {
		return nil, err
	}
	client.Timeout = 60 * time.Second
	return &Watcher{o: o, agent: &fleet.Agent{Open: o.Open, Adapter: Adapter, Now: o.Now}, client: client, header: header}, nil
}

// Agent is the watcher's fleet agent.
func (w *Watcher) Agent() *fleet.Agent { return w.agent }

func (w *Watcher) log(e Event) {
	if w.o.Log != nil {
		e.Time = w.o.Now().UTC().Truncate(time.Second)
		w.o.Log(e)
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

// Result says what one Once call did.
type Result struct {
	// Action: "idle" (nothing to do), "skip" (a release this device does
	// not take now), "reboot" (installed, rebooting into the trial),
	// "verifying" (the new group runs on trial), "resume" (an interrupted
	// install went on), or "recorded" (an outcome was recorded and
	// nothing else to do).
	Action  string
	Message string
	// Recorded is the outcome recorded in this call, if any.
	Recorded *Outcome
	// Installed is the install this call made, if any.
	Installed *install.Result
}

// Once runs one step of the device's life: it finishes or continues the
// update under way (recording a final outcome), then, when idle, polls the
// channel and starts the release it names if this device should take it.
// An install runs to its end (or ctx's) and reboots into the trial.
func (w *Watcher) Once(ctx context.Context) (Result, error) {
	unlock, err := w.lock()
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	out, err := w.agent.Outcome()
	if err != nil {
		return Result{}, err
	}
	var recorded *Outcome
	switch out.State {
	case fleet.Installing:
		// An interrupted install resumes, unless the channel names another
		// bundle by now (the release was pulled or replaced): then it is
		// dropped (nothing boots differently yet) for the channel's.
		a, cerr := w.Check(ctx)
		if cerr != nil || a.Channel.Release.BundleHash == out.Job.BundleHash {
			w.log(Event{Event: "install", Job: out.Job.ID, Version: out.Job.Version, Message: "resuming an interrupted install"})
			return w.install(ctx, "resume")
		}
		w.log(Event{Event: "skip", Job: out.Job.ID, Version: out.Job.Version, Sequence: a.Channel.Sequence,
			Message: fmt.Sprintf("the interrupted install of %s is dropped: the channel names %s now", out.Job.Version, a.Channel.Release.Version)})
		if err := w.agent.Done(); err != nil {
			return Result{}, err
		}
	case fleet.Installed:
		if err := w.agent.Try(); err != nil {
			return Result{}, err
		}
		w.log(Event{Event: "reboot", Job: out.Job.ID, Version: out.Job.Version, Message: "rebooting into the trial"})
		return Result{Action: "reboot"}, w.agent.Reboot()
	case fleet.Rebooting:
		w.log(Event{Event: "reboot", Job: out.Job.ID, Version: out.Job.Version, Message: "the trial is set: rebooting again"})
		return Result{Action: "reboot"}, w.agent.Reboot()
	case fleet.Verifying:
		w.log(Event{Event: "verifying", Job: out.Job.ID, Version: out.Job.Version, Message: "the new group runs on trial; tandem health decides"})
		return Result{Action: "verifying"}, nil
	case fleet.Success, fleet.Failure:
		if recorded, err = w.record(out); err != nil {
			return Result{}, err
		}
	}
	res, err := w.poll(ctx)
	res.Recorded = recorded
	if recorded != nil && res.Action == "idle" {
		res.Action = "recorded"
	}
	return res, err
}

// LockFile is the device path of the lock one watcher step holds, so that
// two watchers (a service and a timer, say) never act at once.
const LockFile = "/run/tandem/watch.lock"

func (w *Watcher) lock() (func(), error) {
	d, err := w.o.Open()
	if err != nil {
		return nil, err
	}
	return d.LockPath(LockFile, "another tandem watch is at work")
}

// record keeps a final outcome in the state, then forgets the job.
func (w *Watcher) record(out fleet.Outcome) (*Outcome, error) {
	d, err := w.o.Open()
	if err != nil {
		return nil, err
	}
	j := out.Job
	var x jobExtra
	_ = json.Unmarshal(j.Extra, &x)
	name := x.Channel
	if name == "" {
		name = w.o.Channel
	}
	st, err := LoadState(d, name)
	if err != nil {
		return nil, err
	}
	o := Outcome{Job: j.ID, Sequence: x.Sequence, Version: j.Version, BundleHash: j.BundleHash,
		Success: out.State == fleet.Success, Reason: out.Reason, Finished: w.o.Now().UTC().Truncate(time.Second)}
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
			return nil, err
		}
	}
	ok := o.Success
	msg := "version " + o.Version + " committed"
	if !ok {
		msg = "version " + o.Version + " failed and will not be retried on this device: " + o.Reason
	}
	w.log(Event{Event: "outcome", Job: o.Job, Sequence: o.Sequence, Version: o.Version, Success: &ok, Message: msg})
	return &o, w.agent.Done()
}

// trust loads the device's keys directory and the extra trust files.
func (w *Watcher) trust(d *device.Device) (*signature.TrustStore, error) {
	return signature.LoadTrust(d.FS.Path(d.Config.KeysDir), w.o.Trust)
}

// fetch gets the channel file (on 304 the cached bytes), retrying
// transient failures — network errors, 408, 429 and 5xx — Options.Retries
// times, after RetryDelay doubling each time, or the server's Retry-After
// (at most a minute).
func (w *Watcher) fetch(ctx context.Context, st *State) (data []byte, etag, modified string, err error) {
	for attempt := 0; ; attempt++ {
		var wait time.Duration
		data, etag, modified, wait, err = w.fetchOnce(ctx, st)
		if err == nil || wait < 0 || attempt >= w.o.Retries || ctx.Err() != nil {
			return data, etag, modified, err
		}
		if wait == 0 {
			wait = w.o.RetryDelay << attempt
		}
		w.log(Event{Event: "error", Message: fmt.Sprintf("%v; trying again in %s", err, wait)})
		select {
		case <-ctx.Done():
			return nil, "", "", err
		case <-time.After(wait):
		}
	}
}

// fetchOnce makes one request. wait is negative when the error is not
// transient, positive when the server asked for a delay.
func (w *Watcher) fetchOnce(ctx context.Context, st *State) (data []byte, etag, modified string, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.o.URL, nil)
	if err != nil {
		return nil, "", "", -1, err
	}
	req.Header = w.header.Clone()
	cached := st.URL == w.o.URL && len(st.File) > 0
	if cached && st.ETag != "" {
		req.Header.Set("If-None-Match", st.ETag)
	}
	if cached && st.LastModified != "" {
		req.Header.Set("If-Modified-Since", st.LastModified)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, "", "", 0, fmt.Errorf("channel %s: %w", w.o.URL, err)
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code == http.StatusNotModified && cached:
		return st.File, st.ETag, st.LastModified, 0, nil
	case fetch.TransientStatus(code):
		wait, _ := fetch.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		wait = min(wait, time.Minute)
		return nil, "", "", wait, fmt.Errorf("channel %s: HTTP %s", w.o.URL, resp.Status)
	case code != http.StatusOK:
		return nil, "", "", -1, fmt.Errorf("channel %s: HTTP %s", w.o.URL, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, channel.MaxSize+1))
	if err != nil {
		return nil, "", "", 0, fmt.Errorf("channel %s: %w", w.o.URL, err)
	}
	return b, resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"), 0, nil
}

// Check fetches and accepts the channel file (as Once does, without
// acting on it); it records the accepted file in the state.
func (w *Watcher) Check(ctx context.Context) (*channel.Accepted, error) {
	d, err := w.o.Open()
	if err != nil {
		return nil, err
	}
	st, err := LoadState(d, w.o.Channel)
	if err != nil {
		return nil, err
	}
	data, etag, modified, err := w.fetch(ctx, st)
	if err != nil {
		return nil, err
	}
	f, err := channel.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("channel %s: %w", w.o.URL, err)
	}
	trust, err := w.trust(d)
	if err != nil {
		return nil, err
	}
	a, err := channel.Accept(f, channel.Policy{Trust: trust, Channel: w.o.Channel, Compatible: d.Config.Compatible,
		Last: st.Seen, Now: w.o.Now(), Floor: w.o.Floor})
	if err != nil {
		return nil, fmt.Errorf("channel %s: %w", w.o.URL, err)
	}
	if st.Seen == nil || *st.Seen != a.Seen || st.ETag != etag || st.LastModified != modified || st.URL != w.o.URL {
		st.URL, st.Seen, st.File, st.ETag, st.LastModified = w.o.URL, &a.Seen, data, etag, modified
		if err := saveState(d, w.o.Channel, st); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// poll checks the channel and starts its release when this device takes it.
func (w *Watcher) poll(ctx context.Context) (Result, error) {
	a, err := w.Check(ctx)
	if err != nil {
		w.log(Event{Event: "error", Message: err.Error()})
		return Result{}, err
	}
	c := a.Channel
	r := c.Release
	d, err := w.o.Open()
	if err != nil {
		return Result{}, err
	}
	skip := func(msg string) (Result, error) {
		w.log(Event{Event: "skip", Sequence: c.Sequence, Version: r.Version, Message: msg})
		return Result{Action: "skip", Message: msg}, nil
	}
	status, err := d.Status()
	if err != nil {
		return Result{}, err
	}
	running, _ := d.GroupVersion(status.Active)
	if running == r.Version {
		w.log(Event{Event: "checked", Sequence: c.Sequence, Version: r.Version, Message: "up to date"})
		return Result{Action: "idle", Message: "up to date: version " + running}, nil
	}
	st, err := LoadState(d, w.o.Channel)
	if err != nil {
		return Result{}, err
	}
	if i := slices.IndexFunc(st.Failed, func(f Outcome) bool { return f.BundleHash == r.BundleHash }); i >= 0 {
		return skip(fmt.Sprintf("version %s (bundle %s) failed on this device at %s and is not retried: %s",
			r.Version, short(r.BundleHash), st.Failed[i].Finished.Format(time.RFC3339), st.Failed[i].Reason))
	}
	if dec := c.Decide(channel.Device{ID: w.o.DeviceID, Compatible: d.Config.Compatible, Labels: w.o.Labels}); !dec.Take {
		return skip(dec.Reason)
	}
	if running != "" && !w.o.AllowDowngrade {
		rv, err1 := bundle.ParseVersion(r.Version)
		iv, err2 := bundle.ParseVersion(running)
		if err1 == nil && err2 == nil && rv.Compare(iv) < 0 {
			return skip(fmt.Sprintf("version %s is older than the running %s (allow downgrades to install it)", r.Version, running))
		}
	}
	src, err := c.Resolve(w.o.URL)
	if err != nil {
		return Result{}, err
	}
	extra, _ := json.Marshal(jobExtra{Channel: c.Channel, Sequence: c.Sequence})
	j, err := w.agent.Begin(fleet.Job{ID: fmt.Sprintf("%s-%d", c.Channel, c.Sequence), Source: src,
		BundleHash: r.BundleHash, Version: r.Version, Extra: extra})
	if errors.Is(err, fleet.ErrBusy) {
		// Someone else's update (a trial not committed yet): not now.
		return Result{}, fmt.Errorf("%w: %w", device.ErrRefused, err)
	}
	if err != nil {
		return Result{}, err
	}
	w.log(Event{Event: "install", Job: j.ID, Sequence: c.Sequence, Version: r.Version,
		Message: fmt.Sprintf("installing %s (bundle %s) from %s", r.Version, short(r.BundleHash), src)})
	return w.install(ctx, "reboot")
}

// install runs (or resumes) the job's install and reboots into the trial;
// a failed install is recorded at once.
func (w *Watcher) install(ctx context.Context, action string) (Result, error) {
	o := w.o.Install
	o.Source, o.Trust.BundleHash = "", ""
	o.HTTP = w.o.HTTP
	o.Trust.Files = w.o.Trust
	o.Trust.RequireSignature = true
	o.Policy.AllowDowngrade = w.o.AllowDowngrade
	res, err := w.agent.Install(ctx, o, install.RebootYes)
	if err != nil && ctx.Err() == nil {
		if j, _ := w.agent.Job(); j != nil {
			err = fmt.Errorf("bundle %s: %w", j.Source, err)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return Result{Action: "resume"}, err
		}
		if !Permanent(err) {
			// Not this bundle's fault (network, a CDN serving another or
			// damaged file): forget the job; the next poll tries again.
			w.log(Event{Event: "error", Message: "install failed, will try again: " + err.Error()})
			if derr := w.agent.Done(); derr != nil {
				return Result{}, errors.Join(err, derr)
			}
			return Result{Action: "retry", Message: err.Error()}, err
		}
		out, oerr := w.agent.Outcome()
		if oerr != nil {
			return Result{}, errors.Join(err, oerr)
		}
		rec, rerr := w.record(out)
		if rerr != nil {
			return Result{}, errors.Join(err, rerr)
		}
		return Result{Action: "recorded", Recorded: rec, Message: err.Error()}, err
	}
	w.log(Event{Event: "reboot", Version: res.Version, Message: fmt.Sprintf("installed into group %s (%d bytes downloaded, %d reused); rebooting into the trial",
		res.Group, res.Transfer.BytesDownloaded, res.Transfer.BytesReused)})
	if action == "resume" {
		action = "reboot"
	}
	return Result{Action: action, Installed: res}, nil
}

// Permanent reports whether an install error condemns the bundle itself
// (so that the watcher does not try it again): the bundle the channel
// pinned is badly signed, not for this device, or does not fit (these
// errors come only after the bundle hash matched the pin). Network and
// server errors, a file that is not the pinned bundle (malformed, another
// hash) and chunks that do not match their digests are not permanent: a CDN can serve a stale,
// half-uploaded or damaged copy, and the next poll tries again.
func Permanent(err error) bool {
	if errors.Is(err, install.ErrNotPinned) {
		return false // also a signature.ErrUntrusted
	}
	for _, e := range []error{
		signature.ErrUnsigned, signature.ErrUntrusted, signature.ErrBadSignature, signature.ErrExpired,
		install.ErrIncompatible, install.ErrDowngrade, install.ErrPayload, install.ErrUnsafeTree,
	} {
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

// Schedule is how Run spaces its polls.
type Schedule struct {
	Interval time.Duration // between polls (default 1h)
	Jitter   time.Duration // each wait is Interval ± up to Jitter (default Interval/10)
	// MinBackoff, MaxBackoff bound the wait after an error (doubling from
	// MinBackoff; defaults 30s and Interval).
	MinBackoff, MaxBackoff time.Duration
	// Rand is the jitter source (nil = math/rand/v2).
	Rand func() float64
}

func (s *Schedule) defaults() {
	if s.Interval <= 0 {
		s.Interval = time.Hour
	}
	if s.Jitter < 0 {
		s.Jitter = 0
	} else if s.Jitter == 0 {
		s.Jitter = s.Interval / 10
	}
	if s.MinBackoff <= 0 {
		s.MinBackoff = 30 * time.Second
	}
	if s.MaxBackoff <= 0 {
		s.MaxBackoff = s.Interval
	}
	if s.MinBackoff > s.MaxBackoff {
		s.MinBackoff = s.MaxBackoff
	}
	if s.Rand == nil {
		s.Rand = rand.Float64
	}
}

// Next returns the wait before the next poll after fails consecutive
// errors (0 = the last poll worked).
func (s Schedule) Next(fails int) time.Duration {
	s.defaults()
	if fails == 0 {
		return max(0, s.Interval+time.Duration((2*s.Rand()-1)*float64(s.Jitter)))
	}
	b := s.MinBackoff
	for i := 1; i < fails && b < s.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, s.MaxBackoff)
	// Full jitter on the upper half: spread devices that failed together.
	return b/2 + time.Duration(s.Rand()*float64(b/2))
}

// Run polls until ctx ends: Once, then a wait by the schedule. It starts
// with a random wait of up to the jitter, so that a fleet powered on at
// once does not poll at once.
func (w *Watcher) Run(ctx context.Context, s Schedule) error {
	s.defaults()
	wait := time.Duration(s.Rand() * float64(s.Jitter))
	fails := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		res, err := w.Once(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && res.Recorded == nil {
			fails++
		} else {
			fails = 0
		}
		wait = s.Next(fails)
		if res.Action == "verifying" {
			// The health check decides within minutes: look again sooner.
			wait = min(wait, time.Minute)
		}
		if fails > 0 {
			w.log(Event{Event: "error", Message: fmt.Sprintf("next try in %s", wait.Round(time.Second))})
		}
	}
}
