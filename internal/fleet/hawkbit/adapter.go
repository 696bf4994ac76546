package hawkbit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/install"
)

// AdapterName names the adapter's job file: <data-dir>/fleet/hawkbit.json.
const AdapterName = "hawkbit"

// CancelReason is the failure reason of a job the server canceled.
const CancelReason = "canceled by the server"

// Activity is what one Step did.
type Activity int

// Activities of Step.
const (
	Idle      Activity = iota // nothing to do: poll again after the interval
	Working                   // progress was made: step again at once
	Waiting                   // an update waits (health check, maintenance window, update=skip)
	Rebooting                 // the device reboots into the trial
	Reported                  // a final outcome was sent to the server
)

func (a Activity) String() string {
	return [...]string{"idle", "working", "waiting", "rebooting", "reported"}[a]
}

// Adapter carries the server's deployment actions through a fleet.Agent.
type Adapter struct {
	Client *Client
	Agent  *fleet.Agent
	// Install are the install options for artifacts (trust, TLS); the
	// Authorization header is added for artifacts on the DDI server.
	Install install.Options
	// Attributes are extra configData attributes.
	Attributes map[string]string
	// DeviceAttributes computes the device's own attributes (nil =
	// DefaultAttributes).
	DeviceAttributes func(*device.Device) (map[string]string, error)
	// CancelPoll is how often the base resource is read while a download
	// runs, to see a cancel (0 = 30s).
	CancelPoll time.Duration
	// Log receives one line per notable event (optional).
	Log func(string)

	mu        sync.Mutex
	announced map[string]bool // feedback already sent in this process (action/kind)
	lastBase  *Base
}

func (a *Adapter) logf(format string, args ...any) {
	if a.Log != nil {
		a.Log(fmt.Sprintf(format, args...))
	}
}

// once reports whether key was not announced yet in this process, and
// marks it.
func (a *Adapter) once(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.announced == nil {
		a.announced = map[string]bool{}
	}
	if a.announced[key] {
		return false
	}
	a.announced[key] = true
	return true
}

// extra is what a job keeps of its action.
type extra struct {
	Part     string `json:"part,omitempty"`
	Name     string `json:"name,omitempty"`
	Filename string `json:"filename,omitempty"`
	Size     int64  `json:"size,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
}

// Step does the next thing the device's state and the server ask for: report
// a final outcome, send configData, cancel, start or resume a deployment,
// set the trial and reboot. Run calls it in a loop.
func (a *Adapter) Step(ctx context.Context) (Activity, error) {
	out, err := a.Agent.Outcome()
	if err != nil {
		return Idle, err
	}
	if out.Final() {
		return a.report(ctx, out)
	}
	base, _, err := a.Client.Poll(ctx)
	if err != nil {
		return Idle, err
	}
	a.mu.Lock()
	a.lastBase = base
	a.mu.Unlock()
	if href := base.Link("configData"); href != "" {
		if err := a.sendConfigData(ctx, href); err != nil {
			return Idle, err
		}
	}
	if href := base.Link("cancelAction"); href != "" {
		return a.cancel(ctx, href, out)
	}
	dep := base.Link("deploymentBase")
	switch out.State {
	case fleet.Idle:
		if dep == "" {
			return Idle, nil
		}
		return a.start(ctx, dep)
	case fleet.Installing, fleet.Installed:
		if dep == "" || ActionID(dep) != out.Job.ID {
			// The server closed or deleted the action: the spare group may
			// hold a written bundle, which is harmless; forget the job.
			a.logf("action %s is no longer offered by the server; dropping it", out.Job.ID)
			if err := a.Agent.Fail("the server no longer offers the action"); err != nil {
				return Idle, err
			}
			return Working, a.Agent.Done()
		}
		d, err := a.Client.Deployment(ctx, dep)
		if err != nil {
			return Idle, err
		}
		if out.State == fleet.Installing {
			return a.install(ctx, d)
		}
		return a.update(ctx, d, out.Job)
	case fleet.Rebooting:
		a.logf("action %s: the trial of group %s is set; rebooting", out.Job.ID, out.Job.Group)
		return Rebooting, a.Agent.Reboot()
	case fleet.Verifying:
		if a.once(out.Job.ID + "/verifying") {
			a.feedback(ctx, out.Job.ID, Proceeding, None, nil,
				fmt.Sprintf("group %s runs version %s on trial; waiting for the health check to commit it", out.Job.Group, out.Job.Installed))
		}
		return Waiting, nil
	}
	return Idle, fmt.Errorf("unexpected state %s", out.State)
}

// Interval is the polling interval the server asked for, within [lo, hi];
// def when it asked for none.
func (a *Adapter) Interval(lo, hi, def time.Duration) time.Duration {
	a.mu.Lock()
	b := a.lastBase
	a.mu.Unlock()
	d := def
	if b != nil && b.Sleep() > 0 {
		d = b.Sleep()
	}
	return min(max(d, lo), hi)
}

// Run steps until ctx ends, sleeping between steps for the server's polling
// interval bounded by lo and hi (def when the server names none), and
// retrying failures after at most that interval.
func (a *Adapter) Run(ctx context.Context, lo, hi, def time.Duration) error {
	for {
		act, err := a.Step(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := a.Interval(lo, hi, def)
		switch {
		case err != nil:
			a.logf("%v", err)
		case act == Working:
			continue
		case act == Waiting:
			wait = min(wait, 15*time.Second) // the health check or a window decides soon
		case act == Reported:
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// report sends the final outcome of the job and forgets it.
func (a *Adapter) report(ctx context.Context, out fleet.Outcome) (Activity, error) {
	j := out.Job
	var err error
	if out.State == fleet.Success {
		err = a.Client.Feedback(ctx, "deploymentBase", j.ID, newFeedback(Closed, Success, nil,
			fmt.Sprintf("version %s runs in group %s and was committed after its health check", j.Installed, j.Group)))
	} else {
		err = a.Client.Feedback(ctx, "deploymentBase", j.ID, newFeedback(Closed, Failure, nil, out.Reason))
	}
	switch {
	case errors.Is(err, ErrGone):
		a.logf("action %s: %v; forgetting it", j.ID, err)
	case err != nil:
		return Idle, fmt.Errorf("report action %s: %w", j.ID, err)
	default:
		a.logf("action %s: reported %s", j.ID, out.State)
	}
	return Reported, a.Agent.Done()
}

func newFeedback(execution, finished string, p *Progress, details ...string) Feedback {
	now := time.Now().UTC()
	return Feedback{Timestamp: now.UnixMilli(), Time: now.Format("20060102T150405"),
		Status: FeedbackStatus{Execution: execution, Result: FeedbackResult{Finished: finished, Progress: p}, Details: details}}
}

// feedback sends an intermediate feedback; its failure is logged, not
// fatal (the final report is what must arrive).
func (a *Adapter) feedback(ctx context.Context, id, execution, finished string, p *Progress, detail string) {
	if err := a.Client.Feedback(ctx, "deploymentBase", id, newFeedback(execution, finished, p, detail)); err != nil {
		a.logf("action %s: feedback %s: %v", id, execution, err)
	}
}

// DefaultAttributes are the configData attributes tandem sends: the
// device's compatible string, the running and default groups and each
// group's version.
func DefaultAttributes(d *device.Device) (map[string]string, error) {
	st, err := d.Status()
	if err != nil {
		return nil, err
	}
	m := map[string]string{"tandem.compatible": d.Config.Compatible, "tandem.active-group": st.Active, "tandem.default-group": st.Default}
	for _, g := range d.Groups() {
		if v, _ := d.GroupVersion(g); v != "" {
			m["tandem.version."+g] = v
		}
	}
	if v, _ := d.GroupVersion(st.Active); v != "" {
		m["tandem.version"] = v
	}
	return m, nil
}

func (a *Adapter) sendConfigData(ctx context.Context, href string) error {
	d, err := a.Agent.Open()
	if err != nil {
		return err
	}
	attrs := a.DeviceAttributes
	if attrs == nil {
		attrs = DefaultAttributes
	}
	m, err := attrs(d)
	if err != nil {
		return err
	}
	for k, v := range a.Attributes {
		m[k] = v
	}
	if err := a.Client.ConfigData(ctx, href, m); err != nil {
		return fmt.Errorf("configData: %w", err)
	}
	a.logf("sent %d configData attributes", len(m))
	return nil
}

// cancel answers a cancelAction: accepted (closed) while the trial is not
// set, rejected once it is.
func (a *Adapter) cancel(ctx context.Context, href string, out fleet.Outcome) (Activity, error) {
	c, err := a.Client.Cancel(ctx, href)
	if err != nil {
		return Idle, err
	}
	stop := c.CancelAction.StopID
	ours := out.Job != nil && out.Job.ID == stop
	switch {
	case ours && (out.State == fleet.Installing || out.State == fleet.Installed):
		err := a.Client.Feedback(ctx, "cancelAction", c.ID, newFeedback(Closed, Success, nil,
			"canceled before the trial was set; the running group was not touched"))
		if err != nil && !errors.Is(err, ErrGone) {
			return Idle, fmt.Errorf("cancel action %s: %w", stop, err)
		}
		if err := a.Agent.Fail(CancelReason); err != nil {
			return Idle, err
		}
		a.logf("action %s canceled by the server", stop)
		return Reported, a.Agent.Done()
	case ours:
		err := a.Client.Feedback(ctx, "cancelAction", c.ID, newFeedback(Rejected, None, nil,
			fmt.Sprintf("the trial of group %s is set; the update can no longer be canceled, its outcome will be reported", out.Job.Group)))
		if err != nil && !errors.Is(err, ErrGone) {
			return Idle, fmt.Errorf("reject cancel of action %s: %w", stop, err)
		}
		a.logf("action %s: cancel rejected (trial set)", stop)
		if out.State == fleet.Rebooting {
			return Rebooting, a.Agent.Reboot()
		}
		return Waiting, nil
	}
	err = a.Client.Feedback(ctx, "cancelAction", c.ID, newFeedback(Closed, Success, nil, "no update of this action is under way"))
	if err != nil && !errors.Is(err, ErrGone) {
		return Idle, fmt.Errorf("cancel action %s: %w", stop, err)
	}
	return Working, nil
}

// pick chooses the bundle of a deployment: the only artifact, or the only
// one named *.tandem.
func pick(d *Deployment) (*Chunk, *Artifact, error) {
	var all, tandem [][2]int
	for i, c := range d.Deployment.Chunks {
		for j, a := range c.Artifacts {
			all = append(all, [2]int{i, j})
			if strings.HasSuffix(a.Filename, ".tandem") {
				tandem = append(tandem, [2]int{i, j})
			}
		}
	}
	choice := all
	if len(all) > 1 {
		choice = tandem
	}
	if len(choice) != 1 {
		return nil, nil, fmt.Errorf("the deployment has %d artifacts (%d named *.tandem); tandem installs exactly one bundle", len(all), len(tandem))
	}
	c := &d.Deployment.Chunks[choice[0][0]]
	art := &c.Artifacts[choice[0][1]]
	if art.URL() == "" {
		return nil, nil, fmt.Errorf("artifact %q has no download link", art.Filename)
	}
	return c, art, nil
}

// start begins a new deployment action.
func (a *Adapter) start(ctx context.Context, href string) (Activity, error) {
	d, err := a.Client.Deployment(ctx, href)
	if err != nil {
		return Idle, err
	}
	if d.Deployment.Download == Skip {
		return Waiting, nil // the server does not want the download yet
	}
	c, art, err := pick(d)
	if err != nil {
		// Nothing was begun: refuse the action.
		ferr := a.Client.Feedback(ctx, "deploymentBase", d.ID, newFeedback(Closed, Failure, nil, err.Error()))
		if ferr != nil && !errors.Is(ferr, ErrGone) {
			return Idle, ferr
		}
		a.logf("action %s refused: %v", d.ID, err)
		return Reported, nil
	}
	x, _ := json.Marshal(extra{Part: c.Part, Name: c.Name, Filename: art.Filename, Size: art.Size, SHA256: art.Hashes["sha256"]})
	if _, err := a.Agent.Begin(fleet.Job{ID: d.ID, Source: art.URL(), Version: c.Version, Extra: x}); err != nil {
		return Idle, err
	}
	a.logf("action %s: installing %s %s from %s", d.ID, c.Name, c.Version, art.URL())
	return a.install(ctx, d)
}

// onServer reports whether u is on the DDI server's host (then the
// artifact download carries the Authorization header).
func (a *Adapter) onServer(u string) bool {
	p, err1 := url.Parse(u)
	s, err2 := url.Parse(a.Client.Server)
	return err1 == nil && err2 == nil && strings.EqualFold(p.Host, s.Host)
}

// install writes (or resumes writing) the job's bundle, sending progress,
// and watches for a cancel while it runs.
func (a *Adapter) install(ctx context.Context, d *Deployment) (Activity, error) {
	if d.Deployment.Download == Skip {
		return Waiting, nil
	}
	j, err := a.Agent.Job()
	if err != nil || j == nil {
		return Idle, err
	}
	if a.once(d.ID + "/download") {
		a.feedback(ctx, d.ID, Proceeding, None, &Progress{Cnt: 0, Of: 100}, fmt.Sprintf("downloading %s %s", j.Version, j.Source))
	}
	o := a.Install
	o.HTTP.Headers = append([]string(nil), o.HTTP.Headers...)
	if a.onServer(j.Source) && a.Client.Authorization != "" {
		o.HTTP.Headers = append(o.HTTP.Headers, "Authorization: "+a.Client.Authorization)
	}
	progress := make(chan int, 1)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for p := range progress {
			a.feedback(ctx, d.ID, Proceeding, None, &Progress{Cnt: p, Of: 100}, fmt.Sprintf("written %d%%", p))
		}
	}()
	last := -1
	userProgress := o.Progress.Event
	o.Progress.Event = func(e install.Event) {
		if userProgress != nil {
			userProgress(e)
		}
		if e.Event != "progress" || e.Total == 0 {
			return
		}
		p := int(e.Bytes * 100 / e.Total)
		if p/10 == last/10 {
			return
		}
		last = p
		select {
		case progress <- p:
		default: // the previous one is still being sent
		}
	}
	ictx, stop := context.WithCancel(ctx)
	canceled := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.watchCancel(ictx, d.ID, stop, canceled)
	}()
	res, err := a.Agent.Install(ictx, o, install.RebootNo)
	stop()
	wg.Wait()
	close(progress)
	<-sent
	select {
	case <-canceled:
		a.logf("action %s: the server asked to cancel; download stopped", d.ID)
		return Working, nil // the next step answers the cancelAction
	default:
	}
	if err != nil {
		if ctx.Err() != nil {
			return Idle, ctx.Err()
		}
		a.logf("action %s: install failed: %v", d.ID, err)
		return Working, nil // the job failed: the next step reports it
	}
	a.feedback(ctx, d.ID, Proceeding, None, &Progress{Cnt: 100, Of: 100},
		fmt.Sprintf("version %s written to group %s and verified (%d bytes downloaded, %d reused)",
			res.Version, res.Group, res.Transfer.BytesDownloaded, res.Transfer.BytesReused))
	j.Group, j.Installed = res.Group, res.Version
	return a.update(ctx, d, j)
}

// watchCancel polls the base resource every CancelPoll while an install
// runs and calls stop when the server asks to cancel action id.
func (a *Adapter) watchCancel(ctx context.Context, id string, stop func(), canceled chan struct{}) {
	every := a.CancelPoll
	if every <= 0 {
		every = 30 * time.Second
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		b, _, err := a.Client.Poll(ctx)
		if err != nil {
			continue
		}
		if href := b.Link("cancelAction"); href != "" && ActionID(href) == id {
			close(canceled)
			stop()
			return
		}
	}
}

// update sets the trial and reboots, unless the server holds the update
// back (update=skip, maintenance window unavailable).
func (a *Adapter) update(ctx context.Context, d *Deployment, j *fleet.Job) (Activity, error) {
	dp := d.Deployment
	if dp.Update == Skip || dp.MaintenanceWindow == WindowUnavailable {
		if a.once(d.ID + "/downloaded") {
			why := "update=skip"
			if dp.MaintenanceWindow == WindowUnavailable {
				why = "outside the maintenance window"
			}
			a.feedback(ctx, d.ID, Downloaded, None, nil,
				fmt.Sprintf("version %s is written to group %s; the trial waits (%s)", j.Installed, j.Group, why))
		}
		return Waiting, nil
	}
	if err := a.Agent.Try(); err != nil {
		return Idle, err
	}
	a.feedback(ctx, d.ID, Proceeding, None, nil, fmt.Sprintf("rebooting into group %s on trial", j.Group))
	a.logf("action %s: rebooting into group %s on trial", d.ID, j.Group)
	return Rebooting, a.Agent.Reboot()
}
