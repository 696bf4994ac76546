// Package fleettest is the conformance suite every fleet adapter passes. An
// adapter's test implements Harness for its protocol and its real peer (a
// client, a broker, a server) and calls Run; the suite plays the device's
// life around it on a simulated device — reboots, the health check, power
// and network trouble — and checks what the fleet side was told:
//
//   - success: offer → install → trial boot → health check commits → success reported;
//   - failed health check: → rollback → failure reported, with the reason
//     (harnesses that implement Reasonless: without);
//   - trial that never comes up: the boot loader falls back → failure reported;
//   - bad signature: nothing written to the boot state, failure reported, no reboot
//     (harnesses that implement Pinned: nothing reported, tried again);
//   - interrupted download: the adapter is stopped mid-download, started again,
//     resumes without fetching everything again, and succeeds;
//   - cancel before and after the trial (harnesses that implement Canceller):
//     accepted while nothing boots differently, refused once the trial is set;
//   - server errors (harnesses that implement Flaky): transient failures of
//     the fleet side are retried and the update still succeeds.
package fleettest

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/health"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// Offer is one update the fleet side offers.
type Offer struct {
	ID         string // the fleet side's id for it
	URL        string // the bundle on the suite's HTTP server (Range supported)
	Path       string // the same bundle as a host file
	BundleHash string // its hash (lower-case hex)
	Version    string
	Size       int64 // bundle size in bytes
}

// Report is what the fleet side was told at the end of an update.
type Report struct {
	Success bool
	Detail  string // the failure reason (or any detail) sent to the server
}

// Harness drives one adapter and the fleet side of its protocol.
type Harness interface {
	// Offer makes the fleet side offer o to the device.
	Offer(t *testing.T, o Offer)
	// Run runs the adapter for one stretch of the device's life: until it
	// has requested a reboot, reported a final outcome, or ctx ends (then it
	// returns promptly, as if the process was killed; the error is ignored).
	Run(ctx context.Context, t *testing.T) error
	// Report returns the final report the fleet side received for offer
	// id; false while there is none.
	Report(t *testing.T, id string) (Report, bool)
}

// Canceller is implemented by a Harness whose fleet side can cancel an
// update (optional; the cancel scenarios are skipped without it).
type Canceller interface {
	// Cancel makes the fleet side ask the device to cancel offer id. An
	// accepted cancel is a final Report with Success false; a refused one
	// leaves the update running to its own final report.
	Cancel(t *testing.T, id string)
}

// Flaky is implemented by a Harness whose fleet side can fail transiently
// (optional; the server-errors scenario is skipped without it).
type Flaky interface {
	// FailNext makes the fleet side answer its next n requests with
	// transient errors (5xx, 429 with Retry-After, reset connections).
	FailNext(t *testing.T, n int)
}

// Pinned is implemented by a Harness whose fleet side pins the bundle hash
// (update channels). For such an adapter a bundle that matches the pin but
// whose signature does not verify is a transport fault, not the release's:
// the signature section lies outside the hashed header, so a server or CDN
// can damage it. The bad-signature scenario then checks that nothing final
// is reported, nothing boots differently, and the next run tries again.
type Pinned interface {
	PinsBundleHash()
}

// Reasonless is implemented by a Harness whose fleet side learns what
// became of an update after its reboot from the boot state alone (a
// rugix-ctrl script reads `system info`), so it cannot say why a trial was
// rolled back (optional; the failed-health-check scenario then checks only
// that a failure was reported).
type Reasonless interface {
	Reasonless()
}

// Env is the world a harness is made for.
type Env struct {
	Root string // the simulated device (grub flow, groups a and b, a active)
	// Open opens the device (fresh state every call).
	Open func() (*device.Device, error)
	// Server serves the suite's bundles, with Range support.
	Server *httptest.Server
}

// imageSize is the size of the v2 image: incompressible, so that a resumed
// download shows in the byte count.
const imageSize = 3 << 20

type fixture struct {
	image []byte
	good  Offer
	bad   Offer // signed by a key the device does not trust
	pub   string
	dir   string
}

// Run runs every scenario, each on a fresh device, with a harness from
// newHarness.
func Run(t *testing.T, newHarness func(t *testing.T, env *Env) Harness) {
	fx := newFixture(t)
	for _, sc := range []struct {
		name string
		run  func(t *testing.T, s *scene)
	}{
		{"success", success},
		{"failed-health-check", failedHealth},
		{"trial-does-not-boot", trialHangs},
		{"bad-signature", badSignature},
		{"interrupted-download", interrupted},
		{"cancel-before-trial", cancelBeforeTrial},
		{"cancel-after-trial", cancelAfterTrial},
		{"server-errors", serverErrors},
	} {
		t.Run(sc.name, func(t *testing.T) {
			s := newScene(t, fx)
			s.h = newHarness(t, &s.env)
			sc.run(t, s)
		})
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{dir: t.TempDir()}
	key, pub := NewKey(t, fx.dir, "release")
	fx.pub = pub
	other, _ := NewKey(t, fx.dir, "other")
	fx.image = Image(imageSize, "fleet")
	fx.good = fx.bundle(t, "v2.tandem", "2.0.0", key)
	fx.bad = fx.bundle(t, "untrusted.tandem", "2.0.1", other)
	return fx
}

func (fx *fixture) bundle(t *testing.T, name, version string, key crypto.Signer) Offer {
	t.Helper()
	b, h := SignedBundle(t, bundle.Header{Name: "fleet conformance", Version: version, Created: time.Now().Unix()}, fx.image, key)
	p := filepath.Join(fx.dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return Offer{Path: p, BundleHash: h.String(), Version: version, Size: int64(len(b))}
}

// scene is one scenario's device, server and harness.
type scene struct {
	fx  *fixture
	env Env
	h   Harness
	// served counts body bytes the server sent. Once served passes cutAt
	// with reached set, reached is closed and the server holds: it sends
	// nothing more until holding is cleared (when startCut returns).
	served  atomic.Int64
	holding atomic.Bool
	mu      sync.Mutex
	cutAt   int64
	reached chan struct{}
}

func newScene(t *testing.T, fx *fixture) *scene {
	s := &scene{fx: fx}
	root := filepath.Join(t.TempDir(), "dev")
	s.env.Root = root
	s.env.Open = NewDevice(t, root, sim.Options{BootFlow: "grub", Trust: []string{fx.pub}, SlotSize: 8 << 20, FactoryVersion: "1.0.0"})
	s.env.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.env.Server.Close)
	return s
}

func (s *scene) serve(w http.ResponseWriter, r *http.Request) {
	var o Offer
	switch r.URL.Path {
	case "/v2.tandem":
		o = s.fx.good
	case "/untrusted.tandem":
		o = s.fx.bad
	default:
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(o.Path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	http.ServeContent(&countingWriter{ResponseWriter: w, s: s, ctx: r.Context()}, r, "", time.Unix(1700000000, 0), f)
}

type countingWriter struct {
	http.ResponseWriter
	s   *scene
	ctx context.Context // the request's
}

func (c *countingWriter) Write(b []byte) (int, error) {
	// Write slowly enough that a cut lands mid-download.
	const piece = 64 << 10
	n := 0
	for len(b) > 0 {
		for c.s.holding.Load() {
			select {
			case <-c.ctx.Done(): // the adapter is killed while it waits
				return n, c.ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
		k := min(len(b), piece)
		m, err := c.ResponseWriter.Write(b[:k])
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		time.Sleep(2 * time.Millisecond)
		n += m
		total := c.s.served.Add(int64(m))
		c.s.mu.Lock()
		if c.s.reached != nil && total >= c.s.cutAt {
			c.s.holding.Store(true)
			close(c.s.reached)
			c.s.reached = nil
		}
		c.s.mu.Unlock()
		if err != nil {
			return n, err
		}
		b = b[k:]
	}
	return n, nil
}

func (s *scene) offer(t *testing.T, base Offer, id string) Offer {
	o := base
	o.ID = id
	o.URL = s.env.Server.URL + "/" + filepath.Base(base.Path)
	s.h.Offer(t, o)
	return o
}

// run runs the adapter with a deadline that fails the test, not hangs it.
func (s *scene) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := s.h.Run(ctx, t)
	if ctx.Err() != nil {
		t.Fatalf("the adapter did not finish its stretch within 2 minutes (last error: %v)", err)
	}
	if err != nil {
		// Failures the fleet side hears of are judged by Report; the error
		// is kept for the reader of a failed scenario.
		t.Logf("the adapter's run ended with: %v", err)
	}
}

func (s *scene) simState(t *testing.T) *device.SimState {
	t.Helper()
	st, err := device.ReadSimState(s.env.Root)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// reboot performs the reboot the adapter requested.
func (s *scene) reboot(t *testing.T, hang bool) string {
	t.Helper()
	if s.simState(t).Reboot == nil {
		t.Fatalf("the adapter did not reboot the device")
	}
	g, notes, err := sim.Reboot(s.env.Root, hang)
	if err != nil {
		t.Fatalf("sim reboot: %v (%q)", err, notes)
	}
	return g
}

func (s *scene) status(t *testing.T) device.Status {
	t.Helper()
	d, err := s.env.Open()
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (s *scene) health(t *testing.T, want health.Verdict) health.Result {
	t.Helper()
	res, err := health.Check(health.Options{Open: s.env.Open, Deadline: 0})
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	if res.Verdict != want {
		t.Fatalf("health check: %s (%s), want %s", res.Verdict, res.Message, want)
	}
	return res
}

func (s *scene) report(t *testing.T, id string) Report {
	t.Helper()
	r, ok := s.h.Report(t, id)
	if !ok {
		t.Fatalf("the fleet side got no final report for %s", id)
	}
	return r
}

func (s *scene) noReport(t *testing.T, id string, when string) {
	t.Helper()
	if r, ok := s.h.Report(t, id); ok {
		t.Fatalf("the fleet side got a final report %+v %s", r, when)
	}
}

func (s *scene) slotIs(t *testing.T, group string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.env.Root, "slots", "system-"+group+".img"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < len(s.fx.image) || sha256.Sum256(b[:len(s.fx.image)]) != sha256.Sum256(s.fx.image) {
		t.Fatalf("slot system-%s does not hold the v2 image", group)
	}
}

func (s *scene) wantBoot(t *testing.T, active, def string) {
	t.Helper()
	if st := s.status(t); st.Active != active || st.Default != def || st.Trial != "" {
		t.Fatalf("boot state: active %s default %s trial %q, want active %s default %s no trial", st.Active, st.Default, st.Trial, active, def)
	}
}

func success(t *testing.T, s *scene) {
	o := s.offer(t, s.fx.good, "deploy-1")
	s.run(t)
	s.noReport(t, o.ID, "before the trial boot")
	if g := s.reboot(t, false); g != "b" {
		t.Fatalf("the trial boot started %s, want b", g)
	}
	s.noReport(t, o.ID, "before the health check committed")
	s.health(t, health.Committed)
	s.run(t)
	if r := s.report(t, o.ID); !r.Success {
		t.Fatalf("reported failure after a committed trial: %s", r.Detail)
	}
	s.wantBoot(t, "b", "b")
	s.slotIs(t, "b")
}

func failedHealth(t *testing.T, s *scene) {
	testutil.WriteScript(t, filepath.Join(s.env.Root, "etc/tandem/hooks/health/check/50-app"), "echo 'app does not answer on :8080'\nexit 1\n")
	o := s.offer(t, s.fx.good, "deploy-2")
	s.run(t)
	s.reboot(t, false)
	s.run(t) // the adapter may look before the health check decided
	s.noReport(t, o.ID, "while the health check had not decided")
	s.health(t, health.RolledBack)
	if g := s.reboot(t, false); g != "a" {
		t.Fatalf("after the rollback the device booted %s, want a", g)
	}
	s.run(t)
	r := s.report(t, o.ID)
	if r.Success {
		t.Fatalf("reported success after a rollback")
	}
	if _, ok := s.h.(Reasonless); ok {
		t.Logf("failure report (no reason available to this fleet side): %s", r.Detail)
	} else if !strings.Contains(r.Detail, "app does not answer") && !strings.Contains(r.Detail, "50-app") {
		t.Errorf("failure report %q does not say which health check failed", r.Detail)
	}
	s.wantBoot(t, "a", "a")
}

func trialHangs(t *testing.T, s *scene) {
	o := s.offer(t, s.fx.good, "deploy-3")
	s.run(t)
	s.reboot(t, true) // b starts and hangs: nothing of the adapter runs
	if g, notes, err := sim.Reboot(s.env.Root, false); err != nil || g != "a" {
		t.Fatalf("the watchdog reset booted %s (%v, %q), want a", g, err, notes)
	}
	s.run(t)
	if r := s.report(t, o.ID); r.Success {
		t.Fatalf("reported success for a trial that never came up")
	}
	s.wantBoot(t, "a", "a")
}

func badSignature(t *testing.T, s *scene) {
	o := s.offer(t, s.fx.bad, "deploy-4")
	s.run(t)
	if _, ok := s.h.(Pinned); ok {
		s.noReport(t, o.ID, "for a pinned bundle whose signature failed (the transport's fault: it is tried again)")
		served := s.served.Load()
		s.run(t)
		if s.served.Load() == served {
			t.Fatalf("the adapter did not try the pinned bundle again")
		}
		s.noReport(t, o.ID, "for a pinned bundle whose signature failed again")
	} else {
		r := s.report(t, o.ID)
		if r.Success {
			t.Fatalf("reported success for a bundle signed by an untrusted key")
		}
		t.Logf("failure report: %s", r.Detail)
	}
	if s.simState(t).Reboot != nil {
		t.Fatalf("the adapter rebooted after a rejected bundle")
	}
	s.wantBoot(t, "a", "a")
}

func interrupted(t *testing.T, s *scene) {
	o := s.offer(t, s.fx.good, "deploy-5")
	s.startCut(t, o)
	first := s.served.Load()
	if s.simState(t).Reboot != nil {
		t.Fatalf("the adapter rebooted after an interrupted download")
	}
	s.run(t)
	again := s.served.Load() - first
	if again > o.Size*3/4 {
		t.Errorf("after the interruption at %d bytes the adapter fetched %d more bytes of %d: it did not resume", first, again, o.Size)
	}
	t.Logf("interrupted after %d bytes, resumed with %d more (bundle %d)", first, again, o.Size)
	s.reboot(t, false)
	s.health(t, health.Committed)
	s.run(t)
	if r := s.report(t, o.ID); !r.Success {
		t.Fatalf("reported failure after a resumed download: %s", r.Detail)
	}
	s.slotIs(t, "b")
}

// startCut runs the adapter until half of the bundle was served, waits
// until the slot holds over a quarter of the image (the server sends nothing
// more meanwhile), then stops the adapter as if it was killed. The amount
// written at the kill is thus known, however slow the machine.
func (s *scene) startCut(t *testing.T, o Offer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reached := make(chan struct{})
	s.mu.Lock()
	s.cutAt, s.reached = s.served.Load()+o.Size/2, reached
	s.mu.Unlock()
	defer s.holding.Store(false)
	done := make(chan error, 1)
	go func() { done <- s.h.Run(ctx, t) }()
	deadline := time.After(2 * time.Minute)
	select {
	case <-reached:
	case err := <-done:
		t.Fatalf("the adapter finished before the download was interrupted: %v", err)
	case <-deadline:
		t.Fatalf("half of the bundle was not served within 2 minutes")
	}
	// A quarter of the image and a little more keeps the resume under 3/4
	// of the bundle. The slot shows the install's writes in 1 MiB blocks
	// until the kill flushes the rest.
	for want := len(s.fx.image)/4 + 64<<10; s.written(t, "b") < want; {
		select {
		case err := <-done:
			t.Fatalf("the adapter stopped before it wrote %d bytes of the image: %v", want, err)
		case <-deadline:
			t.Fatalf("the slot did not hold %d bytes of the image within 2 minutes", want)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	select {
	case <-done:
	case <-deadline:
		t.Fatalf("the adapter did not stop within 2 minutes of the interruption")
	}
}

// written is how many leading bytes of group's system slot are the image's.
func (s *scene) written(t *testing.T, group string) int {
	t.Helper()
	f, err := os.Open(filepath.Join(s.env.Root, "slots", "system-"+group+".img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, len(s.fx.image))
	n, _ := io.ReadFull(f, b)
	for i := range n {
		if b[i] != s.fx.image[i] {
			return i
		}
	}
	return n
}

func cancelBeforeTrial(t *testing.T, s *scene) {
	c, ok := s.h.(Canceller)
	if !ok {
		t.Skip("the harness does not implement fleettest.Canceller")
	}
	o := s.offer(t, s.fx.good, "deploy-6")
	s.startCut(t, o)
	c.Cancel(t, o.ID)
	s.run(t)
	if r := s.report(t, o.ID); r.Success {
		t.Fatalf("reported success for a canceled update")
	}
	if s.simState(t).Reboot != nil {
		t.Fatalf("the adapter rebooted after a cancel")
	}
	s.wantBoot(t, "a", "a")
	// The device takes the next offer.
	o2 := s.offer(t, s.fx.good, "deploy-6b")
	s.run(t)
	s.reboot(t, false)
	s.health(t, health.Committed)
	s.run(t)
	if r := s.report(t, o2.ID); !r.Success {
		t.Fatalf("the update after a cancel: %s", r)
	}
}

func cancelAfterTrial(t *testing.T, s *scene) {
	c, ok := s.h.(Canceller)
	if !ok {
		t.Skip("the harness does not implement fleettest.Canceller")
	}
	o := s.offer(t, s.fx.good, "deploy-7")
	s.run(t)
	c.Cancel(t, o.ID)
	s.run(t) // the trial is set: the cancel is refused
	s.noReport(t, o.ID, "after a cancel the adapter had to refuse (the trial was set)")
	if g := s.reboot(t, false); g != "b" {
		t.Fatalf("the trial boot started %s, want b", g)
	}
	s.health(t, health.Committed)
	s.run(t)
	if r := s.report(t, o.ID); !r.Success {
		t.Fatalf("reported %s for a committed trial whose cancel was refused", r)
	}
	s.wantBoot(t, "b", "b")
}

func serverErrors(t *testing.T, s *scene) {
	f, ok := s.h.(Flaky)
	if !ok {
		t.Skip("the harness does not implement fleettest.Flaky")
	}
	f.FailNext(t, 3)
	o := s.offer(t, s.fx.good, "deploy-8")
	s.run(t)
	s.reboot(t, false)
	s.health(t, health.Committed)
	f.FailNext(t, 3)
	s.run(t)
	if r := s.report(t, o.ID); !r.Success {
		t.Fatalf("reported %s after transient server errors", r)
	}
	s.slotIs(t, "b")
}

// String makes a Report readable in messages.
func (r Report) String() string {
	if r.Success {
		return "success"
	}
	return fmt.Sprintf("failure: %s", r.Detail)
}
