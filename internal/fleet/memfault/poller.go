package memfault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/patch"
	"github.com/tandem-ota/tandem/internal/retry"
)

// AdapterName names the poller's job file: <data-dir>/fleet/memfault.json.
const AdapterName = "memfault"

// MaxRelease bounds a Release document.
const MaxRelease = 1 << 20

// Limits of the strings of a Release that the job keeps (issue 11,
// hardening 3): longer ones are refused, never written.
const (
	MaxVersion = 128     // the release's version (the job's id)
	MaxURL     = 8 << 10 // the artifact's URL
)

// Release is the part of Memfault's Release document tandem uses.
type Release struct {
	Version   string     `json:"version"`
	Artifacts []Artifact `json:"artifacts"`
}

// Artifact is a file of a Release.
type Artifact struct {
	URL             string `json:"url"`
	Filename        string `json:"filename"`
	FileSize        int64  `json:"file_size"`
	HardwareVersion string `json:"hardware_version"`
}

// ParseRelease parses a Release (at most MaxRelease bytes; unknown fields
// are accepted, wrong types are errors naming the field) and checks that it
// has a version and one bundle: the only artifact with a URL, or the only
// one named *.tandem (patches, *.tpatch, aside: Release.Patches).
func ParseRelease(r io.Reader) (*Release, *Artifact, error) {
	rel := &Release{}
	if err := hawkbit.DecodeJSON(r, "release", MaxRelease, rel); err != nil {
		return nil, nil, err
	}
	if rel.Version == "" {
		return nil, nil, fmt.Errorf("release: no version")
	}
	if len(rel.Version) > MaxVersion {
		return nil, nil, fmt.Errorf("release: version of %d bytes, longer than %d: refused", len(rel.Version), MaxVersion)
	}
	var all, tandem []*Artifact
	for i := range rel.Artifacts {
		a := &rel.Artifacts[i]
		if a.URL == "" {
			continue
		}
		if len(a.URL) > MaxURL {
			return nil, nil, fmt.Errorf("release %s: artifact url of %d bytes, longer than %d: refused", rel.Version, len(a.URL), MaxURL)
		}
		if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, nil, fmt.Errorf("release %s: artifact url %.128q: want an http or https URL", rel.Version, a.URL)
		}
		if strings.HasSuffix(a.Filename, patch.Ext) {
			continue // a patch of the bundle (Patches)
		}
		all = append(all, a)
		if strings.HasSuffix(a.Filename, ".tandem") {
			tandem = append(tandem, a)
		}
	}
	pick := all
	if len(all) > 1 {
		pick = tandem
	}
	if len(pick) != 1 {
		return nil, nil, fmt.Errorf("release %s: %d artifacts with a URL (%d named *.tandem); tandem installs exactly one bundle", rel.Version, len(all), len(tandem))
	}
	return rel, pick[0], nil
}

// Patches returns the patches of the release's bundle: its artifacts named
// as `tandem bundle delta` names patches (<bundle hash>.tpatch,
// version-<version>.tpatch; install.NamedPatches). Their URLs,
// like the bundle's, expire: a resumed install takes them afresh.
func (r *Release) Patches() []install.PatchRef {
	arts := make([][2]string, len(r.Artifacts))
	for i, a := range r.Artifacts {
		arts[i] = [2]string{a.Filename, a.URL}
	}
	return install.NamedPatches(arts, nil)
}

// Poller installs the releases Memfault's releases API offers. It has no
// server to report to: Memfault learns that a release runs from the
// current_version of the next query, which the poller makes at once after
// the commit; a release that failed stays recorded in the job (so it is not
// installed again) and is logged once.
type Poller struct {
	API                                               string // e.g. https://api.memfault.com
	ProjectKey, Serial, HardwareVersion, SoftwareType string
	HTTP                                              *http.Client
	Agent                                             *fleet.Agent
	Install                                           install.Options
	// Log receives what happens within a step (nil = discard); the loop
	// logs the steps themselves.
	Log *slog.Logger

	mu   sync.Mutex
	told map[string]bool // failed releases logged in this process
}

var _ fleet.Adapter = (*Poller)(nil)

// NewPoller builds the poller c describes on the device open opens; base
// holds the install options (trust, progress); log receives what happens
// within a step (nil = discard).
func NewPoller(c *Config, open func() (*device.Device, error), base install.Options, log *slog.Logger) (*Poller, error) {
	hc, err := hawkbit.NewHTTPClient(install.HTTPOptions{CAFile: c.CAFile})
	if err != nil {
		return nil, err
	}
	base.HTTP.CAFile = c.CAFile
	if log != nil {
		log = log.With("adapter", AdapterName)
	}
	return &Poller{API: c.API, ProjectKey: c.ProjectKey, Serial: c.DeviceSerial, HardwareVersion: c.HardwareVersion,
		SoftwareType: c.SoftwareType, HTTP: hc, Agent: &fleet.Agent{Open: open, Adapter: AdapterName}, Install: base, Log: log}, nil
}

// Loop is the loop the poller runs under: a query every poll.interval
// (± 10 %, the first one staggered), at most a minute apart while the
// health check decides; refusals back off from a minute, or wait what the
// server's Retry-After asks (up to a day).
func (c *Config) Loop() fleet.Loop {
	iv := c.Poll.Interval.Duration
	return fleet.Loop{Interval: iv, Waiting: time.Minute, Stagger: true,
		Retry: retry.Policy{Min: time.Minute, Max: max(time.Minute, iv), MaxRetryAfter: 24 * time.Hour}}
}

// Name is the adapter's name (its job file and log attribute).
func (p *Poller) Name() string { return AdapterName }

func (p *Poller) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log
}

// Latest asks for the release the device should run, given the version it
// runs; nil without error is "no update" (204). Connection errors, 408, 429
// and 5xx are transient (retry.Transient, with the Retry-After of a 429 or
// 503).
func (p *Poller) Latest(ctx context.Context, current string) (*Release, *Artifact, error) {
	q := url.Values{"hardware_version": {p.HardwareVersion}, "software_type": {p.SoftwareType},
		"current_version": {current}, "device_serial": {p.Serial}}
	u := strings.TrimRight(p.API, "/") + "/api/v0/releases/latest?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Memfault-Project-Key", p.ProjectKey)
	req.Header.Set("Accept", "application/json")
	client := p.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, retry.Transient(fmt.Errorf("releases API: %w", err), 0)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return ParseRelease(resp.Body)
	case http.StatusNoContent:
		return nil, nil, nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	detail := strings.Join(strings.Fields(string(msg)), " ")
	switch resp.StatusCode {
	case http.StatusBadRequest:
		return nil, nil, fmt.Errorf("releases API: %s (is hardware-version %q / software-type %q known to the project?) %s", resp.Status, p.HardwareVersion, p.SoftwareType, detail)
	case http.StatusForbidden, http.StatusUnauthorized:
		return nil, nil, fmt.Errorf("releases API: %s: the project key was refused %s", resp.Status, detail)
	}
	return nil, nil, retry.StatusError(fmt.Errorf("releases API: %s %s", resp.Status, detail), resp)
}

// currentVersion is the version of the running group.
func (p *Poller) currentVersion() (string, error) {
	d, err := p.Agent.Open()
	if err != nil {
		return "", err
	}
	st, err := d.Status()
	if err != nil {
		return "", err
	}
	v, _ := d.GroupVersion(st.Active)
	return v, nil
}

// tell reports whether the failure of release v was not logged yet in
// this process, and marks it.
func (p *Poller) tell(v string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.told == nil {
		p.told = map[string]bool{}
	}
	first := !p.told[v]
	p.told[v] = true
	return first
}

// Step does the next thing: record a final outcome, ask for the latest
// release, install it, set the trial and reboot.
func (p *Poller) Step(ctx context.Context) (fleet.Step, error) {
	out, err := p.Agent.Outcome()
	if errors.Is(err, fleet.ErrBadJob) {
		// Nothing to report to: drop it (issue 11, hardening 3).
		return fleet.Step{Activity: fleet.ActReported, Message: fmt.Sprintf("dropped a job file that cannot be used: %v", err)}, p.Agent.Done()
	}
	if err != nil {
		return fleet.Step{}, err
	}
	committed := ""
	switch out.State {
	case fleet.Success:
		if err := p.Agent.Done(); err != nil {
			return fleet.Step{}, err
		}
		// Memfault learns it from current_version: ask at once.
		committed = fmt.Sprintf("release %s committed in group %s", out.Job.Version, out.Job.Group)
		out = fleet.Outcome{State: fleet.Idle}
	case fleet.Failure:
		if p.tell(out.Job.Version) {
			return fleet.Step{Activity: fleet.ActReported, Message: fmt.Sprintf("release %s failed on this device: %s; it is not installed again", out.Job.Version, out.Reason)}, nil
		}
	case fleet.Verifying:
		return fleet.Step{Activity: fleet.ActWaiting}, nil
	case fleet.Rebooting:
		return fleet.Step{Activity: fleet.ActRebooting, Message: fmt.Sprintf("the trial of release %s is set; rebooting", out.Job.Version)}, p.Agent.Reboot()
	case fleet.Installed:
		return p.trial(out.Job)
	}
	st, err := p.poll(ctx, out)
	if committed != "" {
		if err == nil && st.Activity == fleet.ActIdle {
			return fleet.Step{Activity: fleet.ActReported, Message: committed}, nil
		}
		p.log().Info(committed)
	}
	return st, err
}

// poll asks for the latest release and starts, resumes or drops an install
// by what it says.
func (p *Poller) poll(ctx context.Context, out fleet.Outcome) (fleet.Step, error) {
	current, err := p.currentVersion()
	if err != nil {
		return fleet.Step{}, err
	}
	rel, art, err := p.Latest(ctx, current)
	if err != nil {
		return fleet.Step{}, err
	}
	switch out.State {
	case fleet.Installing:
		if rel == nil || rel.Version != out.Job.Version {
			if err := p.Agent.Fail("the release is no longer offered"); err != nil {
				return fleet.Step{}, err
			}
			return fleet.Step{Activity: fleet.ActWorking, Message: fmt.Sprintf("release %s is no longer offered; dropped its unfinished install", out.Job.Version)}, p.Agent.Done()
		}
		return p.install(ctx, out.Job, art.URL, rel.Patches()) // fresh URLs: Memfault's expire after 6 hours
	case fleet.Failure:
		if rel != nil && rel.Version == out.Job.Version {
			return fleet.Step{Activity: fleet.ActIdle}, nil // it failed here: wait for another release
		}
		if err := p.Agent.Done(); err != nil {
			return fleet.Step{}, err
		}
	}
	if rel == nil {
		return fleet.Step{Activity: fleet.ActIdle}, nil
	}
	j, err := p.Agent.Begin(fleet.Job{ID: rel.Version, Source: art.URL, Version: rel.Version, Patches: rel.Patches()})
	if err != nil {
		return fleet.Step{}, err
	}
	p.log().Info(fmt.Sprintf("installing release %s (running %s)", rel.Version, current))
	return p.install(ctx, j, art.URL, j.Patches)
}

func (p *Poller) install(ctx context.Context, j *fleet.Job, source string, patches []install.PatchRef) (fleet.Step, error) {
	o := p.Install
	o.Source, o.Patches = source, patches
	res, err := p.Agent.Install(ctx, o, install.RebootNo)
	if err != nil {
		if ctx.Err() != nil {
			return fleet.Step{}, err
		}
		p.tell(j.Version)
		// Recorded in the job: not installed again.
		return fleet.Step{Activity: fleet.ActReported, Message: fmt.Sprintf("release %s failed on this device: %v; it is not installed again", j.Version, err)}, nil
	}
	j.Group = res.Group
	return p.trial(j)
}

func (p *Poller) trial(j *fleet.Job) (fleet.Step, error) {
	if err := p.Agent.Try(); err != nil {
		return fleet.Step{}, err
	}
	return fleet.Step{Activity: fleet.ActRebooting, Message: fmt.Sprintf("rebooting into release %s on trial", j.Version)}, p.Agent.Reboot()
}
