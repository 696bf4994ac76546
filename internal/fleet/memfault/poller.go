package memfault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/fetch"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit"
	"github.com/tandem-ota/tandem/internal/install"
)

// AdapterName names the poller's job file: <data-dir>/fleet/memfault.json.
const AdapterName = "memfault"

// MaxRelease bounds a Release document.
const MaxRelease = 1 << 20

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
// one named *.tandem.
func ParseRelease(r io.Reader) (*Release, *Artifact, error) {
	rel := &Release{}
	if err := hawkbit.DecodeJSON(r, "release", MaxRelease, rel); err != nil {
		return nil, nil, err
	}
	if rel.Version == "" {
		return nil, nil, fmt.Errorf("release: no version")
	}
	var all, tandem []*Artifact
	for i := range rel.Artifacts {
		a := &rel.Artifacts[i]
		if a.URL == "" {
			continue
		}
		if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, nil, fmt.Errorf("release %s: artifact url %q: want an http or https URL", rel.Version, a.URL)
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

// Activity is what one Step did.
type Activity string

// Activities of Step.
const (
	Idle      Activity = "idle"      // no update (or only one that failed here)
	Waiting   Activity = "waiting"   // the trial runs; the health check decides
	Rebooting Activity = "rebooting" // rebooting into the trial
	Done      Activity = "done"      // a final outcome was recorded
)

// RetryError is a refusal of the server that names when to ask again.
type RetryError struct {
	Status string
	After  time.Duration
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("releases API answered %s; asking again in %s", e.Status, e.After)
}

// Poller installs the releases Memfault's releases API offers.
type Poller struct {
	API                                               string // e.g. https://api.memfault.com
	ProjectKey, Serial, HardwareVersion, SoftwareType string
	HTTP                                              *http.Client
	Agent                                             *fleet.Agent
	Install                                           install.Options
	Log                                               func(string)
}

func (p *Poller) logf(format string, args ...any) {
	if p.Log != nil {
		p.Log(fmt.Sprintf(format, args...))
	}
}

// Latest asks for the release the device should run, given the version it
// runs; nil without error is "no update" (204).
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
		return nil, nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return ParseRelease(resp.Body)
	case http.StatusNoContent:
		return nil, nil, nil
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		after, ok := fetch.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		if !ok {
			after = time.Minute
		}
		return nil, nil, &RetryError{Status: resp.Status, After: after}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	detail := strings.Join(strings.Fields(string(msg)), " ")
	switch resp.StatusCode {
	case http.StatusBadRequest:
		return nil, nil, fmt.Errorf("releases API: %s (is hardware-version %q / software-type %q known to the project?) %s", resp.Status, p.HardwareVersion, p.SoftwareType, detail)
	case http.StatusForbidden, http.StatusUnauthorized:
		return nil, nil, fmt.Errorf("releases API: %s: the project key was refused %s", resp.Status, detail)
	}
	return nil, nil, fmt.Errorf("releases API: %s %s", resp.Status, detail)
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

// Step does the next thing: record a final outcome, ask for the latest
// release, install it, set the trial and reboot.
func (p *Poller) Step(ctx context.Context) (Activity, error) {
	out, err := p.Agent.Outcome()
	if err != nil {
		return Idle, err
	}
	switch out.State {
	case fleet.Success:
		p.logf("release %s committed in group %s", out.Job.Version, out.Job.Group)
		return Done, p.Agent.Done()
	case fleet.Verifying:
		return Waiting, nil
	case fleet.Rebooting:
		return Rebooting, p.Agent.Reboot()
	case fleet.Installed:
		return p.trial(out.Job)
	}
	current, err := p.currentVersion()
	if err != nil {
		return Idle, err
	}
	rel, art, err := p.Latest(ctx, current)
	if err != nil {
		return Idle, err
	}
	switch out.State {
	case fleet.Installing:
		if rel == nil || rel.Version != out.Job.Version {
			p.logf("release %s is no longer offered; dropping its unfinished install", out.Job.Version)
			if err := p.Agent.Fail("the release is no longer offered"); err != nil {
				return Idle, err
			}
			return Idle, p.Agent.Done()
		}
		return p.install(ctx, out.Job, art.URL) // a fresh URL: Memfault's expire after 6 hours
	case fleet.Failure:
		if rel != nil && rel.Version == out.Job.Version {
			p.logf("release %s failed on this device (%s); waiting for another release", rel.Version, out.Reason)
			return Idle, nil
		}
		if err := p.Agent.Done(); err != nil {
			return Idle, err
		}
	}
	if rel == nil {
		return Idle, nil
	}
	j, err := p.Agent.Begin(fleet.Job{ID: rel.Version, Source: art.URL, Version: rel.Version})
	if err != nil {
		return Idle, err
	}
	p.logf("installing release %s (running %s)", rel.Version, current)
	return p.install(ctx, j, art.URL)
}

func (p *Poller) install(ctx context.Context, j *fleet.Job, source string) (Activity, error) {
	o := p.Install
	o.Source = source
	res, err := p.Agent.Install(ctx, o, install.RebootNo)
	if err != nil {
		if ctx.Err() == nil {
			p.logf("release %s failed: %v", j.Version, err)
			return Done, nil // recorded in the job: not installed again
		}
		return Idle, err
	}
	j.Group = res.Group
	return p.trial(j)
}

func (p *Poller) trial(j *fleet.Job) (Activity, error) {
	if err := p.Agent.Try(); err != nil {
		return Idle, err
	}
	p.logf("rebooting into release %s on trial", j.Version)
	return Rebooting, p.Agent.Reboot()
}

// Run steps every interval (±10 % jitter) until ctx ends, waiting what a
// Retry-After asks for when the server refuses, and at most a minute while
// the trial waits for the health check.
func (p *Poller) Run(ctx context.Context, interval time.Duration) error {
	for {
		act, err := p.Step(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := interval + time.Duration((rand.Float64()-0.5)*0.2*float64(interval))
		var re *RetryError
		switch {
		case errors.As(err, &re):
			p.logf("%v", err)
			wait = max(re.After, time.Second)
		case err != nil:
			p.logf("%v", err)
		case act == Waiting:
			wait = min(wait, time.Minute)
		case act == Done:
			wait = 0
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
