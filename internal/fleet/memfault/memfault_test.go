package memfault_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/fleet/memfault"
	"github.com/tandem-ota/tandem/internal/health"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/retry"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// api plays Memfault's releases API: it offers release (when set) to
// devices running another version, answers the first `busy` queries 503
// with Retry-After, and serves the bundle (with Range) as the release's
// CDN URL.
type api struct {
	t       *testing.T
	srv     *httptest.Server
	bundle  []byte
	mu      sync.Mutex
	release string // the version offered ("" = none)
	busy    int
	queries []string
	cdnPath string   // the CDN path the release names (default /cdn)
	cut     func()   // called once by the next CDN request, after half the bundle
	cdn     []string // CDN paths requested
	// patch, when set, is a second artifact of the release, named
	// patchName; with cutPatch, cut waits for a request of the patch.
	patch     []byte
	patchName string
	cutPatch  bool
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/cdn/v2.tandem", "/cdn2/v2.tandem", "/cdn/" + a.patchName, "/cdn2/" + a.patchName:
		file := a.bundle
		if strings.HasSuffix(r.URL.Path, ".tpatch") {
			file = a.patch
		}
		a.mu.Lock()
		a.cdn = append(a.cdn, r.URL.Path)
		cut := a.cut
		if cut != nil && a.cutPatch && file != nil && !strings.HasSuffix(r.URL.Path, ".tpatch") {
			cut = nil // the cut is for the patch
		}
		if cut != nil {
			a.cut = nil
		}
		a.mu.Unlock()
		if cut != nil {
			// Send half of the file, then stop the poller as if it was killed.
			w.Header().Set("Content-Length", fmt.Sprint(len(file)))
			_, _ = w.Write(file[:len(file)/2])
			w.(http.Flusher).Flush()
			cut()
			return
		}
		http.ServeContent(w, r, "", time.Unix(1700000000, 0), bytes.NewReader(file))
		return
	case "/api/v0/releases/latest":
	default:
		http.NotFound(w, r)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	q := r.URL.Query()
	a.queries = append(a.queries, q.Get("current_version"))
	if r.Header.Get("Memfault-Project-Key") != "pk-1" {
		http.Error(w, `{"error":"invalid project key"}`, http.StatusForbidden)
		return
	}
	if q.Get("hardware_version") != "evt" || q.Get("software_type") != "linux" || q.Get("device_serial") == "" {
		http.Error(w, `{"error":"unknown hardware_version"}`, http.StatusBadRequest)
		return
	}
	if a.busy > 0 {
		a.busy--
		w.Header().Set("Retry-After", "7")
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	if a.release == "" || q.Get("current_version") == a.release {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	cdn := a.cdnPath
	if cdn == "" {
		cdn = "/cdn"
	}
	var extra string
	if a.patch != nil {
		extra = fmt.Sprintf(`,{"id":4,"type":"firmware","hardware_version":"evt","filename":%q,"file_size":%d,"md5":"","url":"%s%s/%s"}`,
			a.patchName, len(a.patch), a.srv.URL, cdn, a.patchName)
	}
	fmt.Fprintf(w, `{"id":12,"version":%q,"revision":"abc","notes":"","extra_info":{},"artifacts":[{"id":3,"type":"firmware","hardware_version":"evt","filename":"v2.tandem","file_size":%d,"md5":"","url":"%s%s/v2.tandem"}%s]}`,
		a.release, len(a.bundle), a.srv.URL, cdn, extra)
}

type world struct {
	root string
	open func() (*device.Device, error)
	api  *api
	p    *memfault.Poller
	key  crypto.Signer
	img  []byte // the bundle's image
}

func newWorld(t *testing.T) *world {
	dir := t.TempDir()
	key, pub := fleettest.NewKey(t, dir, "release")
	img := fleettest.Image(512<<10, "mf")
	b, _ := fleettest.SignedBundle(t, bundle.Header{Name: "memfault test", Version: "2.0.0", Created: time.Now().Unix()},
		img, key)
	root := filepath.Join(dir, "dev")
	open := fleettest.NewDevice(t, root, sim.Options{BootFlow: "grub", Trust: []string{pub}, SlotSize: 8 << 20, FactoryVersion: "1.0.0"})
	a := &api{t: t, bundle: b}
	a.srv = httptest.NewServer(a)
	t.Cleanup(a.srv.Close)
	return &world{root: root, open: open, api: a, p: &memfault.Poller{API: a.srv.URL, ProjectKey: "pk-1", Serial: "SN42",
		HardwareVersion: "evt", SoftwareType: "linux", Agent: &fleet.Agent{Open: open, Adapter: memfault.AdapterName},
		Log: fleettest.Logger(t)}, key: key, img: img}
}

func (w *world) step(t *testing.T, want fleet.Activity) {
	t.Helper()
	st, err := w.p.Step(context.Background())
	if err != nil || st.Activity != want {
		t.Fatalf("step: %s %v, want %s", st.Activity, err, want)
	}
}

func TestPollInstallCommit(t *testing.T) {
	w := newWorld(t)
	w.step(t, fleet.ActIdle) // 204: nothing offered
	w.api.mu.Lock()
	w.api.release, w.api.busy = "2.0.0", 1
	w.api.mu.Unlock()
	_, err := w.p.Step(context.Background())
	if after, ok := retry.IsTransient(err); !ok || after != 7*time.Second {
		t.Fatalf("503 with Retry-After: %v (transient %v, after %s)", err, ok, after)
	}
	w.step(t, fleet.ActRebooting)
	if g, _, err := sim.Reboot(w.root, false); err != nil || g != "b" {
		t.Fatalf("trial boot: %s %v", g, err)
	}
	w.step(t, fleet.ActWaiting)
	if res, err := health.Check(health.Options{Open: w.open}); err != nil || res.Verdict != health.Committed {
		t.Fatalf("health: %v %v", res, err)
	}
	w.step(t, fleet.ActReported) // the commit, and at once a query: the server sees current_version 2.0.0: 204
	w.step(t, fleet.ActIdle)
	w.api.mu.Lock()
	defer w.api.mu.Unlock()
	if got := strings.Join(w.api.queries, ","); got != "1.0.0,1.0.0,1.0.0,2.0.0,2.0.0" {
		t.Errorf("current_version sent: %s", got)
	}
}

// TestResumeWithFreshURL: an install interrupted mid-download resumes with
// the URL of a new query (Memfault's CDN URLs expire).
func TestResumeWithFreshURL(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	w.api.mu.Lock()
	w.api.release, w.api.cut = "2.0.0", cancel
	w.api.mu.Unlock()
	if _, err := w.p.Step(ctx); ctx.Err() == nil {
		t.Fatalf("the poller finished despite the interruption: %v", err)
	}
	if o, _ := w.p.Agent.Outcome(); o.State != fleet.Installing {
		t.Fatalf("after the interruption: %s, want installing", o.State)
	}
	w.api.mu.Lock()
	w.api.cdnPath = "/cdn2" // the old URL "expired"
	w.api.mu.Unlock()
	w.step(t, fleet.ActRebooting)
	w.api.mu.Lock()
	defer w.api.mu.Unlock()
	if last := w.api.cdn[len(w.api.cdn)-1]; last != "/cdn2/v2.tandem" {
		t.Fatalf("resumed from %s, want the fresh URL", last)
	}
}

// TestPatchArtifact: a release whose artifacts are the bundle and a patch
// for the device's source installs by the patch; an install cut in the
// middle of the patch download resumes with the patch's fresh URL.
func TestPatchArtifact(t *testing.T) {
	w := newWorld(t)
	fleettest.SetSource(t, w.root, fleettest.Changed(w.img))
	w.api.patchName, w.api.patch = fleettest.Patch(t, fleettest.Changed(w.img), w.api.bundle, w.key, "1.0.0")
	var methods []string
	w.p.Install.Progress.Event = func(e install.Event) {
		if e.Event == "method" {
			methods = append(methods, e.Method)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.api.mu.Lock()
	w.api.release, w.api.cut, w.api.cutPatch = "2.0.0", cancel, true
	w.api.mu.Unlock()
	if _, err := w.p.Step(ctx); ctx.Err() == nil {
		t.Fatalf("the poller finished despite the interruption: %v", err)
	}
	w.api.mu.Lock()
	w.api.cdnPath = "/cdn2" // the old URLs "expired"
	w.api.mu.Unlock()
	w.step(t, fleet.ActRebooting)
	if len(methods) == 0 || methods[len(methods)-1] != install.MethodPatch {
		t.Fatalf("methods %v, want patch", methods)
	}
	w.api.mu.Lock()
	defer w.api.mu.Unlock()
	if last := w.api.cdn[len(w.api.cdn)-1]; last != "/cdn2/"+w.api.patchName {
		t.Fatalf("resumed from %s (requests %v), want the patch's fresh URL", last, w.api.cdn)
	}
	b, err := os.ReadFile(filepath.Join(w.root, "slots/system-b.img"))
	if err != nil || !bytes.Equal(b[:len(w.img)], w.img) {
		t.Fatalf("slot b does not hold the image (%v)", err)
	}
}

func TestFailedReleaseNotRetried(t *testing.T) {
	w := newWorld(t)
	testutil.WriteScript(t, filepath.Join(w.root, "etc/tandem/hooks/health/check/50-app"), "echo app down\nexit 1\n")
	w.api.release = "2.0.0"
	w.step(t, fleet.ActRebooting)
	if _, _, err := sim.Reboot(w.root, false); err != nil {
		t.Fatal(err)
	}
	if res, _ := health.Check(health.Options{Open: w.open}); res.Verdict != health.RolledBack {
		t.Fatalf("health: %v", res)
	}
	if g, _, err := sim.Reboot(w.root, false); err != nil || g != "a" {
		t.Fatalf("after rollback: %s %v", g, err)
	}
	w.step(t, fleet.ActReported) // the failure, logged once
	for range 2 {
		w.step(t, fleet.ActIdle) // 2.0.0 is still offered, but it failed here
	}
	o, _ := w.p.Agent.Outcome()
	if o.State != fleet.Failure || !strings.Contains(o.Reason, "app down") {
		t.Fatalf("outcome %+v", o)
	}
	if st, _ := device.ReadSimState(w.root); st.Reboot != nil {
		t.Fatal("rebooted into a release that failed before")
	}
}

func TestAPIErrors(t *testing.T) {
	w := newWorld(t)
	w.p.ProjectKey = "wrong"
	if _, err := w.p.Step(context.Background()); err == nil || !strings.Contains(err.Error(), "project key was refused") {
		t.Errorf("403: %v", err)
	}
	w.p.ProjectKey, w.p.HardwareVersion = "pk-1", "dvt"
	if _, err := w.p.Step(context.Background()); err == nil || !strings.Contains(err.Error(), "400 Bad Request") {
		t.Errorf("400: %v", err)
	}
}

func TestParseRelease(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"version":"1","artifacts":[{"url":"https://cdn/x.tandem","filename":"x.tandem"}]}`, ""},
		{`{"version":"1","artifacts":[{"url":"https://cdn/a"},{"url":"https://cdn/b.tandem","filename":"b.tandem"}]}`, ""},
		{`{"version":"1","artifacts":[{"url":"https://cdn/a"},{"url":"https://cdn/b"}]}`, "2 artifacts"},
		{`{"version":"1","artifacts":[]}`, "0 artifacts"},
		{`{"version":"1","artifacts":[{"url":"https://cdn/a"},{"url":"https://cdn/p","filename":"version-0.9.tpatch"}]}`, ""},
		{`{"artifacts":[{"url":"https://cdn/a"}]}`, "no version"},
		{`{"version":1}`, "field version: want string"},
		{`{"version":"1","artifacts":[{"url":"file:///etc/shadow"}]}`, "want an http or https URL"},
		{`{"version":"1","artifacts":[{"url":"https://a"}]} {}`, "data after"},
		{strings.Repeat(" ", memfault.MaxRelease+1), "larger than"},
	} {
		_, _, err := memfault.ParseRelease(strings.NewReader(tc.doc))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%.50q: %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func FuzzParseRelease(f *testing.F) {
	f.Add([]byte(`{"id":12,"version":"2.0.0","artifacts":[{"id":3,"filename":"v2.tandem","file_size":5,"url":"https://cdn/v2.tandem"}]}`))
	f.Add([]byte(`{"version":"1","artifacts":[{"url":"https://cdn/a"},{"url":"https://cdn/b"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rel, art, err := memfault.ParseRelease(bytes.NewReader(b))
		if err != nil {
			return
		}
		if rel.Version == "" || art == nil || !strings.HasPrefix(art.URL, "http") {
			t.Fatalf("accepted %+v %+v", rel, art)
		}
		if _, err := json.Marshal(rel); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConfig(t *testing.T) {
	c, err := memfault.ParseConfig([]byte("project-key = \"pk\"\ndevice-serial = \"SN1\"\nhardware-version = \"evt\"\nsoftware-type = \"linux\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.DDIConfig()
	if err != nil || h.Server != "https://device.memfault.com/api/v0/hawkbit" || h.Tenant != "default" || h.ControllerID != "SN1" ||
		h.Authorization() != "GatewayToken pk" {
		t.Fatalf("DDI config %+v %v", h, err)
	}
	for _, tc := range []struct{ in, want string }{
		{"device-serial = \"SN1\"\nhardware-version = \"evt\"\nsoftware-type = \"linux\"\n", "project-key is required"},
		{"project-key = \"pk\"\ndevice-serial = \"SN1\"\nhardware-version = \"evt\"\nsoftware-type = \"linux\"\nkey = 1\n", "line 5: unknown key key"},
		{"project-key = \"pk\"\ndevice-serial = \"SN1\"\nhardware-version = \"evt\"\nsoftware-type = \"linux\"\n[poll]\ninterval = \"5s\"\n", "at least 1m"},
		{"project-key = \"pk\"\ndevice-serial = \"SN1\"\nhardware-version = \"evt\"\nsoftware-type = \"linux\"\napi-url = \"api.memfault.com\"\n", "want an http or https URL"},
		// Issue 11, hardening 10: an unusable URL is a configuration error.
		{"project-key = \"pk\"\ndevice-serial = \"SN1\"\nhardware-version = \"evt\"\nsoftware-type = \"linux\"\nddi-url = \"http://127.0.0.1:\"\n", "empty port"},
	} {
		if _, err := memfault.ParseConfig([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestLongVersion: a release whose 190 KB version would grow six times by
// JSON escaping in the job is refused before anything is written, and the
// poller goes on when the server offers a sane release. Issue 11,
// hardening 3.
func TestLongVersion(t *testing.T) {
	w := newWorld(t)
	w.api.mu.Lock()
	w.api.release = strings.Repeat("<", 190<<10)
	w.api.mu.Unlock()
	for range 2 {
		_, err := w.p.Step(context.Background())
		if err == nil || !strings.Contains(err.Error(), "version of 194560 bytes, longer than 128: refused") || len(err.Error()) > 1024 {
			t.Fatalf("a 190 KB version: %.200v", err)
		}
		if o, err := w.p.Agent.Outcome(); err != nil || o.State != fleet.Idle {
			t.Fatalf("after a refused release: %s, %v", o.State, err)
		}
	}
	w.api.mu.Lock()
	w.api.release = "2.0.0"
	w.api.mu.Unlock()
	w.step(t, fleet.ActRebooting)
}

// TestBadJobFile: a job file the poller cannot read is dropped, and the
// poller goes on. Issue 11, hardening 3.
func TestBadJobFile(t *testing.T) {
	w := newWorld(t)
	d, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	p := d.FS.Path(filepath.Join(d.Config.DataDir, "fleet", memfault.AdapterName+".json"))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(`{"id":"2.0.0","phase":"installing","version":"`+strings.Repeat(`\u003c`, 190<<10)+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	w.step(t, fleet.ActReported)
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("the bad job file is still there: %v", err)
	}
	w.api.mu.Lock()
	w.api.release = "2.0.0"
	w.api.mu.Unlock()
	w.step(t, fleet.ActRebooting)
}
