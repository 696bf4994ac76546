package hawkbit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/patch"
)

// AdapterName names the adapter's job file: <data-dir>/fleet/hawkbit.json.
const AdapterName = "hawkbit"

// CancelReason is the failure reason of a job the server canceled.
const CancelReason = "canceled by the server"

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
	// PollMin and PollMax bound the polling interval the server asks for
	// (config.polling.sleep); PollDefault is the interval when it asks for
	// none. Step.Wait carries it to the loop.
	PollMin, PollMax, PollDefault time.Duration
	// Log receives what happens within a step (configData sent, feedback
	// that failed, a field cut to its limit); nil = discard. The loop logs
	// the steps themselves.
	Log *slog.Logger

	mu        sync.Mutex
	announced map[string]bool // feedback already sent in this process (action/kind)
	lastBase  *Base
}

var _ fleet.Adapter = (*Adapter)(nil)

// Name is the adapter's name (its job file and log attribute).
func (a *Adapter) Name() string { return AdapterName }

func (a *Adapter) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
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

// Limits of what a job keeps of the server's strings (issue 11, hardening
// 3): the job file is read back with a limit, and JSON escaping can make a
// string six times longer, so a long name must not reach it.
const (
	maxID   = 128     // action ids (numbers on hawkBit); longer ones are refused
	maxName = 256     // names, versions, file names: cut to this
	maxHref = 8 << 10 // links; longer ones are refused
)

// clip cuts s to at most n bytes (at a character boundary, marked with
// "…"), and says whether it did.
func clip(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…", true
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
// set the trial and reboot. Its Wait is the polling interval the server
// asked for, within PollMin and PollMax.
func (a *Adapter) Step(ctx context.Context) (fleet.Step, error) {
	st, err := a.step(ctx)
	if st.Wait == 0 {
		st.Wait = a.interval()
	}
	return st, err
}

func step(act fleet.Activity, format string, args ...any) fleet.Step {
	if format == "" {
		return fleet.Step{Activity: act}
	}
	return fleet.Step{Activity: act, Message: fmt.Sprintf(format, args...)}
}

func (a *Adapter) step(ctx context.Context) (fleet.Step, error) {
	out, err := a.Agent.Outcome()
	if errors.Is(err, fleet.ErrBadJob) {
		return a.dropBadJob(ctx, err)
	}
	if err != nil {
		return fleet.Step{}, err
	}
	if out.Final() {
		return a.report(ctx, out)
	}
	base, _, err := a.Client.Poll(ctx)
	if err != nil {
		return fleet.Step{}, err
	}
	a.mu.Lock()
	a.lastBase = base
	a.mu.Unlock()
	if a.once("polling") {
		a.log().Info(fmt.Sprintf("polling %s", a.Client.BaseURL()))
	}
	if href := base.Link("configData"); href != "" {
		if err := a.sendConfigData(ctx, href); err != nil {
			return fleet.Step{}, err
		}
	}
	if href := base.Link("cancelAction"); href != "" {
		return a.cancel(ctx, href, out)
	}
	dep := base.Link("deploymentBase")
	switch out.State {
	case fleet.Idle:
		if dep == "" {
			return step(fleet.ActIdle, ""), nil
		}
		return a.start(ctx, dep)
	case fleet.Installing, fleet.Installed:
		if dep == "" || ActionID(dep) != out.Job.ID {
			// The server closed or deleted the action: the spare group may
			// hold a written bundle, which is harmless; forget the job.
			if err := a.Agent.Fail("the server no longer offers the action"); err != nil {
				return fleet.Step{}, err
			}
			return step(fleet.ActWorking, "action %s is no longer offered by the server; dropped it", out.Job.ID), a.Agent.Done()
		}
		d, err := a.Client.Deployment(ctx, dep)
		if err != nil {
			return fleet.Step{}, err
		}
		if out.State == fleet.Installing {
			return a.install(ctx, d)
		}
		return a.update(ctx, d, out.Job)
	case fleet.Rebooting:
		return step(fleet.ActRebooting, "action %s: the trial of group %s is set; rebooting", out.Job.ID, out.Job.Group), a.Agent.Reboot()
	case fleet.Verifying:
		if a.once(out.Job.ID + "/verifying") {
			msg := fmt.Sprintf("group %s runs version %s on trial; waiting for the health check to commit it", out.Job.Group, out.Job.Installed)
			a.feedback(ctx, out.Job.ID, Proceeding, None, nil, msg)
			return step(fleet.ActWaiting, "action %s: %s", out.Job.ID, msg), nil
		}
		return step(fleet.ActWaiting, ""), nil
	}
	return fleet.Step{}, fmt.Errorf("unexpected state %s", out.State)
}

// interval is the polling interval the server asked for, within
// [PollMin, PollMax]; PollDefault when it asked for none.
func (a *Adapter) interval() time.Duration {
	a.mu.Lock()
	b := a.lastBase
	a.mu.Unlock()
	d := a.PollDefault
	if b != nil && b.Sleep() > 0 {
		d = b.Sleep()
	}
	if a.PollMin > 0 {
		d = max(d, a.PollMin)
	}
	if a.PollMax > 0 {
		d = min(d, a.PollMax)
	}
	return d
}

// dropBadJob ends a job whose file cannot be used (issue 11, hardening 3):
// the action the server offers, which is the one the job was for, is
// reported failed, and the file is removed, so that the adapter goes on.
func (a *Adapter) dropBadJob(ctx context.Context, bad error) (fleet.Step, error) {
	base, _, err := a.Client.Poll(ctx)
	if err != nil {
		return fleet.Step{}, fmt.Errorf("%w (reporting it: %w)", bad, err)
	}
	reason, _ := clip(fmt.Sprintf("the device lost its record of this update (%v); dropped it", bad), 1024)
	if id := ActionID(base.Link("deploymentBase")); id != "" {
		err := a.Client.Feedback(ctx, "deploymentBase", id, newFeedback(Closed, Failure, nil, reason))
		if err != nil && !errors.Is(err, ErrGone) {
			return fleet.Step{}, fmt.Errorf("%w (reporting it: %w)", bad, err)
		}
		return step(fleet.ActReported, "action %s: reported failed: %s", id, reason), a.Agent.Done()
	}
	return step(fleet.ActWorking, "%s", reason), a.Agent.Done()
}

// report sends the final outcome of the job and forgets it.
func (a *Adapter) report(ctx context.Context, out fleet.Outcome) (fleet.Step, error) {
	j := out.Job
	var err error
	if out.State == fleet.Success {
		err = a.Client.Feedback(ctx, "deploymentBase", j.ID, newFeedback(Closed, Success, nil,
			fmt.Sprintf("version %s runs in group %s and was committed after its health check", j.Installed, j.Group)))
	} else {
		err = a.Client.Feedback(ctx, "deploymentBase", j.ID, newFeedback(Closed, Failure, nil, out.Reason))
	}
	msg := fmt.Sprintf("action %s: reported %s", j.ID, out.State)
	switch {
	case errors.Is(err, ErrGone):
		msg = fmt.Sprintf("action %s: %v; forgot it", j.ID, err)
	case err != nil:
		return fleet.Step{}, fmt.Errorf("report action %s: %w", j.ID, err)
	}
	return step(fleet.ActReported, "%s", msg), a.Agent.Done()
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
		a.log().Warn(fmt.Sprintf("action %s: feedback %s: %v", id, execution, err))
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
	a.log().Info(fmt.Sprintf("sent %d configData attributes", len(m)))
	return nil
}

// cancel answers a cancelAction: accepted (closed) while the trial is not
// set, rejected once it is.
func (a *Adapter) cancel(ctx context.Context, href string, out fleet.Outcome) (fleet.Step, error) {
	c, err := a.Client.Cancel(ctx, href)
	if err != nil {
		return fleet.Step{}, err
	}
	stop := c.CancelAction.StopID
	ours := out.Job != nil && out.Job.ID == stop
	switch {
	case ours && (out.State == fleet.Installing || out.State == fleet.Installed):
		err := a.Client.Feedback(ctx, "cancelAction", c.ID, newFeedback(Closed, Success, nil,
			"canceled before the trial was set; the running group was not touched"))
		if err != nil && !errors.Is(err, ErrGone) {
			return fleet.Step{}, fmt.Errorf("cancel action %s: %w", stop, err)
		}
		if err := a.Agent.Fail(CancelReason); err != nil {
			return fleet.Step{}, err
		}
		return step(fleet.ActReported, "action %s canceled by the server", stop), a.Agent.Done()
	case ours:
		err := a.Client.Feedback(ctx, "cancelAction", c.ID, newFeedback(Rejected, None, nil,
			fmt.Sprintf("the trial of group %s is set; the update can no longer be canceled, its outcome will be reported", out.Job.Group)))
		if err != nil && !errors.Is(err, ErrGone) {
			return fleet.Step{}, fmt.Errorf("reject cancel of action %s: %w", stop, err)
		}
		if out.State == fleet.Rebooting {
			return step(fleet.ActRebooting, "action %s: cancel rejected (the trial is set); rebooting", stop), a.Agent.Reboot()
		}
		return step(fleet.ActWaiting, "action %s: cancel rejected (the trial is set)", stop), nil
	}
	err = a.Client.Feedback(ctx, "cancelAction", c.ID, newFeedback(Closed, Success, nil, "no update of this action is under way"))
	if err != nil && !errors.Is(err, ErrGone) {
		return fleet.Step{}, fmt.Errorf("cancel action %s: %w", stop, err)
	}
	return step(fleet.ActWorking, ""), nil
}

// pick chooses the bundle of a deployment: the only artifact, or the only
// one named *.tandem (patches, *.tpatch, aside).
func pick(d *Deployment) (*Chunk, *Artifact, error) {
	var all, tandem [][2]int
	for i, c := range d.Deployment.Chunks {
		for j, a := range c.Artifacts {
			if strings.HasSuffix(a.Filename, patch.Ext) {
				continue
			}
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
		return nil, nil, fmt.Errorf("artifact %.64q has no download link", art.Filename)
	}
	return c, art, nil
}

// jobOf is the job of a deployment's bundle, with the server's names cut
// to maxName (each cut logged): the job file stays small whatever the
// server sends. The link was bounded when the deployment was parsed.
func (a *Adapter) jobOf(d *Deployment, c *Chunk, art *Artifact) fleet.Job {
	keep := func(what, s string) string {
		v, cut := clip(s, maxName)
		if cut {
			a.log().Warn(fmt.Sprintf("action %s: the %s is %d bytes; kept its first %d", d.ID, what, len(s), maxName))
		}
		return v
	}
	x := extra{Part: keep("chunk part", c.Part), Name: keep("chunk name", c.Name), Filename: keep("artifact file name", art.Filename), Size: art.Size}
	if h := art.Hashes["sha256"]; len(h) == 64 {
		x.SHA256 = h
	}
	b, _ := json.Marshal(x)
	return fleet.Job{ID: d.ID, Source: art.URL(), Version: keep("chunk version", c.Version), Patches: a.patches(d, c), Extra: b}
}

// patches returns the patches the bundle's chunk carries: its artifacts
// named as `tandem bundle delta` names patches (install.NamedPatches).
func (a *Adapter) patches(d *Deployment, c *Chunk) []install.PatchRef {
	var arts [][2]string
	for _, art := range c.Artifacts {
		if art.URL() != "" {
			arts = append(arts, [2]string{art.Filename, art.URL()})
		}
	}
	return install.NamedPatches(arts, func(s string) { a.log().Warn(fmt.Sprintf("action %s: %s", d.ID, s)) })
}

// start begins a new deployment action.
func (a *Adapter) start(ctx context.Context, href string) (fleet.Step, error) {
	d, err := a.Client.Deployment(ctx, href)
	if err != nil {
		return fleet.Step{}, err
	}
	if d.Deployment.Download == Skip {
		return step(fleet.ActWaiting, ""), nil // the server does not want the download yet
	}
	c, art, err := pick(d)
	if err != nil {
		// Nothing was begun: refuse the action.
		ferr := a.Client.Feedback(ctx, "deploymentBase", d.ID, newFeedback(Closed, Failure, nil, err.Error()))
		if ferr != nil && !errors.Is(ferr, ErrGone) {
			return fleet.Step{}, ferr
		}
		return step(fleet.ActReported, "action %s refused: %v", d.ID, err), nil
	}
	j, err := a.Agent.Begin(a.jobOf(d, c, art))
	if err != nil {
		return fleet.Step{}, err
	}
	a.log().Info(fmt.Sprintf("action %s: installing %s from %s", d.ID, j.Version, j.Source))
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
func (a *Adapter) install(ctx context.Context, d *Deployment) (fleet.Step, error) {
	if d.Deployment.Download == Skip {
		return step(fleet.ActWaiting, ""), nil
	}
	j, err := a.Agent.Job()
	if err != nil || j == nil {
		return fleet.Step{}, err
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
		return step(fleet.ActWorking, "action %s: the server asked to cancel; download stopped", d.ID), nil // the next step answers the cancelAction
	default:
	}
	if err != nil {
		if ctx.Err() != nil {
			return fleet.Step{}, ctx.Err()
		}
		return step(fleet.ActWorking, "action %s: install failed: %v", d.ID, err), nil // the job failed: the next step reports it
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
func (a *Adapter) update(ctx context.Context, d *Deployment, j *fleet.Job) (fleet.Step, error) {
	dp := d.Deployment
	if dp.Update == Skip || dp.MaintenanceWindow == WindowUnavailable {
		if a.once(d.ID + "/downloaded") {
			why := "update=skip"
			if dp.MaintenanceWindow == WindowUnavailable {
				why = "outside the maintenance window"
			}
			msg := fmt.Sprintf("version %s is written to group %s; the trial waits (%s)", j.Installed, j.Group, why)
			a.feedback(ctx, d.ID, Downloaded, None, nil, msg)
			return step(fleet.ActWaiting, "action %s: %s", d.ID, msg), nil
		}
		return step(fleet.ActWaiting, ""), nil
	}
	if err := a.Agent.Try(); err != nil {
		return fleet.Step{}, err
	}
	a.feedback(ctx, d.ID, Proceeding, None, nil, fmt.Sprintf("rebooting into group %s on trial", j.Group))
	return step(fleet.ActRebooting, "action %s: rebooting into group %s on trial", d.ID, j.Group), a.Agent.Reboot()
}
