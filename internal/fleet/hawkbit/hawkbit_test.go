package hawkbit_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
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
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit/ddiserver"
	"github.com/tandem-ota/tandem/internal/health"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/sim"
)

// world is a simulated device and a signed v2 bundle for it.
type world struct {
	root   string
	open   func() (*device.Device, error)
	bundle []byte
}

func newWorld(t *testing.T, size int) *world {
	t.Helper()
	dir := t.TempDir()
	key, pub := fleettest.NewKey(t, dir, "release")
	b, _ := fleettest.SignedBundle(t, bundle.Header{Name: "hawkbit test", Version: "2.0.0", Created: time.Now().Unix()},
		fleettest.Image(size, "hb"), key)
	root := filepath.Join(dir, "dev")
	open := fleettest.NewDevice(t, root, sim.Options{BootFlow: "grub", Trust: []string{pub}, SlotSize: 8 << 20, FactoryVersion: "1.0.0"})
	return &world{root: root, bundle: b, open: open}
}

func (w *world) rebootRequested(t *testing.T) bool {
	st, err := device.ReadSimState(w.root)
	if err != nil {
		t.Fatal(err)
	}
	return st.Reboot != nil
}

// commitReported runs the health check on the trial boot, which must
// commit, then a step, which must report success for action id to srv.
func commitReported(t *testing.T, w *world, ad *hawkbit.Adapter, srv *ddiserver.Server, id string) {
	t.Helper()
	if res, err := health.Check(health.Options{Open: w.open}); err != nil || res.Verdict != health.Committed {
		t.Fatalf("health: %v %v", res, err)
	}
	if act := step(t, ad); act != fleet.ActReported {
		t.Fatalf("step after the commit: %s, want reported", act)
	}
	if r, ok := srv.Result(id); !ok || !r.Success {
		t.Fatalf("result %+v %v, want success", r, ok)
	}
}

func step(t *testing.T, ad *hawkbit.Adapter) fleet.Activity {
	t.Helper()
	st, err := ad.Step(context.Background())
	if err != nil {
		t.Fatalf("step: %v", err)
	}
	return st.Activity
}

func count(reqs []ddiserver.Request, f func(ddiserver.Request) bool) int {
	n := 0
	for _, r := range reqs {
		if f(r) {
			n++
		}
	}
	return n
}

// TestArtifactOnServer installs a bundle the DDI server serves itself: the
// download carries the target token, uses ranges, and the feedback shows
// progress; configData carries the device's attributes.
func TestArtifactOnServer(t *testing.T) {
	w := newWorld(t, 1<<20)
	srv := ddiserver.New(t, ddiserver.Options{TargetToken: "secret-1"})
	ad := newAdapter(t, srv, w.open)
	srv.RequestConfig(controller)
	id := srv.Add(ddiserver.Action{Controller: controller, Version: "2.0.0",
		Artifacts: []ddiserver.Artifact{{Filename: "v2.tandem", Data: w.bundle}}})
	if act := step(t, ad); act != fleet.ActRebooting {
		t.Fatalf("first step: %s, want rebooting", act)
	}
	cfg := srv.Config(controller)
	if cfg["tandem.compatible"] != "tandem-sim" || cfg["tandem.version"] != "1.0.0" || cfg["site"] != "test" {
		t.Errorf("configData: %v", cfg)
	}
	ranged := count(srv.Requests(), func(r ddiserver.Request) bool {
		return strings.Contains(r.Path, "/artifacts/") && r.Header.Get("Range") != "" && r.Status == http.StatusPartialContent
	})
	if ranged == 0 {
		t.Errorf("the artifact was not fetched with range requests")
	}
	var progress []int
	for _, f := range srv.Feedbacks(id) {
		if f.Execution == "proceeding" && f.Progress != nil {
			progress = append(progress, f.Progress.Cnt)
		}
	}
	if len(progress) < 3 || progress[len(progress)-1] != 100 {
		t.Errorf("progress feedback %v: want several steps ending at 100", progress)
	}
	for _, r := range srv.Requests() {
		if strings.HasSuffix(r.Path, "/feedback") && (!bytes.Contains(r.Body, []byte(`"id":1,`)) || !bytes.Contains(r.Body, []byte(`"time":"`))) {
			t.Errorf("feedback %s: want the numeric action id and time (older servers need them)", r.Body)
		}
	}
	if !w.rebootRequested(t) {
		t.Fatal("no reboot requested")
	}
	if _, ok := srv.Result(id); ok {
		t.Fatal("the action was closed before the trial boot")
	}
	if _, _, err := sim.Reboot(w.root, false); err != nil {
		t.Fatal(err)
	}
	if act := step(t, ad); act != fleet.ActWaiting {
		t.Fatalf("step on trial before the health check: %s, want waiting", act)
	}
	if _, ok := srv.Result(id); ok {
		t.Fatal("the action was closed before the health check committed")
	}
	commitReported(t, w, ad, srv, id)
}

// TestETag: an unchanged base resource is answered 304 and not parsed again.
func TestETag(t *testing.T) {
	w := newWorld(t, 64<<10)
	srv := ddiserver.New(t, ddiserver.Options{TargetToken: "secret-1"})
	ad := newAdapter(t, srv, w.open)
	for range 3 {
		if act := step(t, ad); act != fleet.ActIdle {
			t.Fatalf("step: %s, want idle", act)
		}
	}
	reqs := srv.Requests()
	if n := count(reqs, func(r ddiserver.Request) bool { return r.Status == http.StatusNotModified }); n != 2 {
		t.Fatalf("%d polls answered 304, want 2", n)
	}
	if reqs[1].Header.Get("If-None-Match") == "" {
		t.Fatal("second poll without If-None-Match")
	}
	// A new action changes the resource.
	srv.Add(ddiserver.Action{Controller: controller, Version: "2.0.0", Download: "skip",
		Artifacts: []ddiserver.Artifact{{Filename: "v2.tandem", Data: w.bundle}}})
	if act := step(t, ad); act != fleet.ActWaiting {
		t.Fatalf("step with download=skip: %s, want waiting", act)
	}
	if last := srv.Requests(); last[len(last)-2].Status != http.StatusOK {
		t.Fatalf("poll after a change answered %d", last[len(last)-2].Status)
	}
	if j, _ := ad.Agent.Job(); j != nil {
		t.Fatalf("download=skip began a job: %+v", j)
	}
}

// TestMaintenanceWindow: outside the window the bundle is written but the
// trial waits; when the window opens the device reboots into it.
func TestMaintenanceWindow(t *testing.T) {
	w := newWorld(t, 256<<10)
	srv := ddiserver.New(t, ddiserver.Options{TargetToken: "secret-1"})
	ad := newAdapter(t, srv, w.open)
	id := srv.Add(ddiserver.Action{Controller: controller, Version: "2.0.0", Update: "skip", Window: "unavailable",
		Artifacts: []ddiserver.Artifact{{Filename: "v2.tandem", Data: w.bundle}}})
	for range 2 {
		if act := step(t, ad); act != fleet.ActWaiting {
			t.Fatalf("step outside the window: %s, want waiting", act)
		}
	}
	if w.rebootRequested(t) {
		t.Fatal("rebooted outside the maintenance window")
	}
	if o, _ := ad.Agent.Outcome(); o.State != fleet.Installed {
		t.Fatalf("state %s, want installed", o.State)
	}
	downloaded := 0
	for _, f := range srv.Feedbacks(id) {
		if f.Execution == "downloaded" {
			downloaded++
		}
	}
	if downloaded != 1 {
		t.Fatalf("%d downloaded feedbacks, want 1", downloaded)
	}
	srv.Set(id, func(a *ddiserver.Action) { a.Update, a.Window = "forced", "available" })
	if act := step(t, ad); act != fleet.ActRebooting || !w.rebootRequested(t) {
		t.Fatalf("step in the window: %s, want rebooting", act)
	}
}

// TestCancelDuringDownload: a cancel that arrives while the bundle
// downloads stops the download and is accepted.
func TestCancelDuringDownload(t *testing.T) {
	w := newWorld(t, 3<<20)
	slow := &slowServer{data: w.bundle, started: make(chan struct{})}
	files := httptestServer(t, slow)
	srv := ddiserver.New(t, ddiserver.Options{TargetToken: "secret-1"})
	ad := newAdapter(t, srv, w.open)
	id := srv.Add(ddiserver.Action{Controller: controller, Version: "2.0.0",
		Artifacts: []ddiserver.Artifact{{Filename: "v2.tandem", URL: files + "/v2.tandem", Size: int64(len(w.bundle))}}})
	go func() {
		<-slow.started
		srv.Cancel(id)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := ad.Step(ctx)
	if err != nil || st.Activity != fleet.ActWorking {
		t.Fatalf("step with a cancel during the download: %s %v, want working", st.Activity, err)
	}
	if act := step(t, ad); act != fleet.ActReported {
		t.Fatalf("step answering the cancel: %s", act)
	}
	r, ok := srv.Result(id)
	if !ok || !r.Canceled {
		t.Fatalf("result %+v %v, want canceled", r, ok)
	}
	if w.rebootRequested(t) {
		t.Fatal("rebooted after a cancel")
	}
	if j, _ := ad.Agent.Job(); j != nil {
		t.Fatalf("job kept after a cancel: %+v", j)
	}
	if slow.served.Load() >= int64(len(w.bundle)) {
		t.Errorf("the whole bundle was downloaded despite the cancel")
	}
}

// TestGoneOnFeedback: a 410 on the final report ends the action cleanly.
func TestGoneOnFeedback(t *testing.T) {
	w := newWorld(t, 128<<10)
	srv := ddiserver.New(t, ddiserver.Options{TargetToken: "secret-1"})
	ad := newAdapter(t, srv, w.open)
	id := srv.Add(ddiserver.Action{Controller: controller, Version: "2.0.0",
		Artifacts: []ddiserver.Artifact{{Filename: "v2.tandem", Data: w.bundle}}})
	step(t, ad)
	if _, _, err := sim.Reboot(w.root, false); err != nil {
		t.Fatal(err)
	}
	if res, err := health.Check(health.Options{Open: w.open}); err != nil || res.Verdict != health.Committed {
		t.Fatalf("health: %v %v", res, err)
	}
	srv.CloseAction(id)
	if act := step(t, ad); act != fleet.ActReported {
		t.Fatalf("step: %s, want reported", act)
	}
	if o, _ := ad.Agent.Outcome(); o.State != fleet.Idle {
		t.Fatalf("state after 410: %s, want idle", o.State)
	}
	last := srv.Requests()[len(srv.Requests())-1]
	if last.Status != http.StatusGone {
		t.Fatalf("last request answered %d, want 410", last.Status)
	}
}

// TestActionWithdrawn: an action the server no longer offers while its
// bundle waits for the window is dropped, not reported.
func TestActionWithdrawn(t *testing.T) {
	w := newWorld(t, 128<<10)
	srv := ddiserver.New(t, ddiserver.Options{TargetToken: "secret-1"})
	ad := newAdapter(t, srv, w.open)
	id := srv.Add(ddiserver.Action{Controller: controller, Version: "2.0.0", Window: "unavailable", Update: "skip",
		Artifacts: []ddiserver.Artifact{{Filename: "v2.tandem", Data: w.bundle}}})
	step(t, ad)
	srv.CloseAction(id)
	if act := step(t, ad); act != fleet.ActWorking {
		t.Fatalf("step: %s, want working", act)
	}
	if j, _ := ad.Agent.Job(); j != nil {
		t.Fatalf("job kept: %+v", j)
	}
}

// TestTokens: target and gateway tokens are sent as the server expects; a
// wrong one is an authentication error, not retried.
func TestTokens(t *testing.T) {
	w := newWorld(t, 64<<10)
	srv := ddiserver.New(t, ddiserver.Options{TargetToken: "t-1", GatewayToken: "g-1"})
	for _, tc := range []struct {
		auth string
		ok   bool
	}{{"TargetToken t-1", true}, {"GatewayToken g-1", true}, {"TargetToken g-1", false}, {"", false}} {
		ad := newAdapter(t, srv, w.open)
		ad.Client.Authorization = tc.auth
		before := len(srv.Requests())
		_, err := ad.Step(context.Background())
		if tc.ok != (err == nil) {
			t.Errorf("%q: %v", tc.auth, err)
		}
		if !tc.ok && !errors.Is(err, hawkbit.ErrAuth) {
			t.Errorf("%q: %v, want ErrAuth", tc.auth, err)
		}
		if n := len(srv.Requests()) - before; n != 1 {
			t.Errorf("%q: %d requests, want 1 (no retry)", tc.auth, n)
		}
	}
}

// TestRetryAfter: 429 with Retry-After is waited out; 5xx retried.
func TestRetryAfter(t *testing.T) {
	w := newWorld(t, 64<<10)
	srv := ddiserver.New(t, ddiserver.Options{})
	ad := newAdapter(t, srv, w.open)
	srv.Fail(1, 429, "1")
	srv.Fail(2, 502, "")
	start := time.Now()
	if act := step(t, ad); act != fleet.ActIdle {
		t.Fatalf("step: %s", act)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("the 429 with Retry-After: 1 was retried after %s", d)
	}
	if n := len(srv.Requests()); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
	srv.Fail(10, 503, "")
	if _, err := ad.Step(context.Background()); err == nil || !strings.Contains(err.Error(), "gave up after 6 tries") {
		t.Errorf("a lasting outage: %v", err)
	}
}

// TestTLSClientCertificate: the server requires a client certificate and
// the device trusts only the configured CA.
func TestTLSClientCertificate(t *testing.T) {
	w := newWorld(t, 128<<10)
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test device CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	devKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	devDER, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: controller},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)},
		caCert, &devKey.PublicKey, caKey)
	devKeyDER, _ := x509.MarshalECPrivateKey(devKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile := write("dev.pem", "CERTIFICATE", devDER), write("dev.key", "EC PRIVATE KEY", devKeyDER)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	srv := ddiserver.New(t, ddiserver.Options{TLS: &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}})
	serverCA := write("server-ca.pem", "CERTIFICATE", srv.Certificate().Raw)
	id := srv.Add(ddiserver.Action{Controller: controller, Version: "2.0.0",
		Artifacts: []ddiserver.Artifact{{Filename: "v2.tandem", Data: w.bundle}}})
	conf := func(extra string) *hawkbit.Config {
		c, err := hawkbit.ParseConfig([]byte("server = \"" + srv.URL + "\"\ncontroller-id = \"" + controller + "\"\n" + extra))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	newAd := func(c *hawkbit.Config) *hawkbit.Adapter {
		ad, err := hawkbit.New(c, w.open, install.Options{}, fleettest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		ad.Client.Retry = testRetry()
		ad.Client.Retry = testRetry()
		return ad
	}
	// Without the CA the server is not trusted; without the certificate
	// the server refuses.
	if _, err := newAd(conf("")).Step(context.Background()); err == nil {
		t.Fatal("a server signed by an unknown CA was trusted")
	}
	if _, err := newAd(conf("ca-file = \"" + serverCA + "\"\n")).Step(context.Background()); err == nil {
		t.Fatal("the server accepted a device without a client certificate")
	}
	ad := newAd(conf("ca-file = \"" + serverCA + "\"\nclient-cert = \"" + certFile + "\"\nclient-key = \"" + keyFile + "\"\n"))
	if st, err := ad.Step(context.Background()); err != nil || st.Activity != fleet.ActRebooting {
		t.Fatalf("step over TLS with a client certificate: %s %v", st.Activity, err)
	}
	if len(srv.Feedbacks(id)) == 0 {
		t.Fatal("no feedback arrived")
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"server = \"https://h\"\ncontroller-id = \"d\"\n", ""},
		{"server = \"https://h\"\ncontroller-id = \"d\"\nbogus = 1\n", "line 3: unknown key bogus"},
		{"server = \"https://h\"\ncontroller-id = 5\n", "line 2"},
		{"server = \"ftp://h\"\ncontroller-id = \"d\"\n", "want an http or https URL"},
		{"server = \"https://h\"\n", "controller-id is required"},
		{"server = \"https://h\"\ncontroller-id = \"d\"\ntarget-token = \"a\"\ngateway-token = \"b\"\n", "not both"},
		{"server = \"https://h\"\ncontroller-id = \"d\"\nclient-cert = \"c\"\n", "go together"},
		{"server = \"https://h\"\ncontroller-id = \"d\"\n[poll]\nmin = \"1h\"\nmax = \"1m\"\n", "poll.min 1h0m0s is above"},
		{"server = \"https://h\"\ncontroller-id = \"d\"\n[poll]\nmin = \"soon\"\n", "want a duration"},
		{"preset = \"memfault\"\ncontroller-id = \"SN1\"\ngateway-token = \"pk\"\nhardware-version = \"evt\"\nsoftware-type = \"main\"\n", ""},
		{"preset = \"memfault\"\ncontroller-id = \"SN1\"\nhardware-version = \"evt\"\nsoftware-type = \"main\"\n", "project key"},
		{"preset = \"other\"\n", "want memfault or none"},
	} {
		c, err := hawkbit.ParseConfig([]byte(tc.in))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.err)
		case err == nil && c.Preset == "memfault" && (c.Server != hawkbit.MemfaultServer || c.Tenant != "default" || c.Authorization() != "GatewayToken pk"):
			t.Errorf("memfault preset: %+v", c)
		}
	}
}

// slowServer serves data (with Range) slowly, and nothing past its first
// MiB until the client goes away: a cancel lands during the download,
// however slow the machine.
type slowServer struct {
	data    []byte
	started chan struct{}
	once    sync.Once
	served  atomic.Int64
}

type slowWriter struct {
	http.ResponseWriter
	s   *slowServer
	ctx context.Context // the request's
}

func (w *slowWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		if w.s.served.Load() >= 1<<20 {
			<-w.ctx.Done()
			return n, w.ctx.Err()
		}
		k := min(len(b), 32<<10)
		m, err := w.ResponseWriter.Write(b[:k])
		n += m
		w.s.served.Add(int64(m))
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		w.s.once.Do(func() { close(w.s.started) })
		if err != nil {
			return n, err
		}
		time.Sleep(5 * time.Millisecond)
		b = b[k:]
	}
	return n, nil
}

func (s *slowServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.ServeContent(&slowWriter{ResponseWriter: w, s: s, ctx: r.Context()}, r, "", time.Unix(1700000000, 0), bytes.NewReader(s.data))
}

func httptestServer(t *testing.T, h http.Handler) string {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

// TestLoopInterval: under its loop the adapter polls at the server's
// config.polling.sleep, bounded by poll.min and poll.max.
func TestLoopInterval(t *testing.T) {
	w := newWorld(t, 64<<10)
	for _, tc := range []struct {
		conf string
		want time.Duration
	}{
		{"[poll]\nmin = \"10ms\"\nmax = \"200ms\"\n", 200 * time.Millisecond}, // the server's 1 s, capped
		{"[poll]\nmin = \"2s\"\n", 2 * time.Second},                           // the server's 1 s, raised
		{"", 10 * time.Second},                                                // the default poll.min
	} {
		srv := ddiserver.New(t, ddiserver.Options{Sleep: "00:00:01"})
		c, err := hawkbit.ParseConfig([]byte("server = \"" + srv.URL + "\"\ncontroller-id = \"" + controller + "\"\n" + tc.conf))
		if err != nil {
			t.Fatal(err)
		}
		ad, err := hawkbit.New(c, w.open, install.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ad.Client.HTTP = srv.Client()
		var waits []time.Duration
		l := c.Loop()
		l.Jitter, l.Log = -1, fleettest.Logger(t)
		l.Sleep = func(_ context.Context, d time.Duration) error {
			if waits = append(waits, d); len(waits) == 3 {
				return context.Canceled
			}
			return nil
		}
		if _, err := l.Run(context.Background(), ad); err != nil {
			t.Fatal(err)
		}
		if n := len(srv.Requests()); n != 3 {
			t.Errorf("%d polls, want 3", n)
		}
		for _, d := range waits {
			if d != tc.want {
				t.Errorf("%q: waits %v, want %s each", tc.conf, waits, tc.want)
				break
			}
		}
	}
}

// TestPatchArtifact: a deployment whose chunk carries the bundle and
// patches as extra artifacts. The device installs by the patch for its
// source (fetched from the DDI server with the target token) and does not
// look for patches next to the bundle; the patch for another source is
// never asked for.
func TestPatchArtifact(t *testing.T) {
	dir := t.TempDir()
	key, pub := fleettest.NewKey(t, dir, "release")
	img := fleettest.Image(1<<20, "hb")
	b, _ := fleettest.SignedBundle(t, bundle.Header{Name: "hawkbit test", Version: "2.0.0", Created: time.Now().Unix()}, img, key)
	root := filepath.Join(dir, "dev")
	open := fleettest.NewDevice(t, root, sim.Options{BootFlow: "grub", Trust: []string{pub}, SlotSize: 8 << 20, FactoryVersion: "1.0.0"})
	fleettest.SetSource(t, root, fleettest.Changed(img))
	name, p := fleettest.Patch(t, fleettest.Changed(img), b, key, "1.0.0")
	_, other := fleettest.Patch(t, img[:len(img)/2], b, key, "0.9.0")
	srv := ddiserver.New(t, ddiserver.Options{TargetToken: "secret-1"})
	ad := newAdapter(t, srv, open)
	var methods []string
	ad.Install.Progress.Event = func(e install.Event) {
		if e.Event == "method" {
			methods = append(methods, e.Method)
		}
	}
	id := srv.Add(ddiserver.Action{Controller: controller, Version: "2.0.0", Artifacts: []ddiserver.Artifact{
		{Filename: "v2.tandem", Data: b}, {Filename: "version-0.9.0.tpatch", Data: other}, {Filename: name, Data: p}}})
	if act := step(t, ad); act != fleet.ActRebooting {
		t.Fatalf("first step: %s, want rebooting", act)
	}
	if len(methods) != 1 || methods[0] != install.MethodPatch {
		t.Fatalf("methods %v, want patch", methods)
	}
	reqs := srv.Requests()
	if n := count(reqs, func(r ddiserver.Request) bool {
		return strings.HasSuffix(r.Path, "/"+name) && r.Status == http.StatusPartialContent
	}); n == 0 {
		t.Errorf("the patch artifact was not fetched by ranges")
	}
	if n := count(reqs, func(r ddiserver.Request) bool {
		return strings.Contains(r.Path, ".patches/") || strings.HasSuffix(r.Path, "version-0.9.0.tpatch")
	}); n != 0 {
		t.Errorf("%d requests for patches next to the bundle or for another source", n)
	}
	for _, r := range reqs {
		if strings.HasSuffix(r.Path, ".tpatch") && r.Header.Get("Authorization") != "TargetToken secret-1" {
			t.Errorf("patch request without the target token: %+v", r.Header)
		}
	}
	got, err := os.ReadFile(filepath.Join(root, "slots/system-b.img"))
	if err != nil || !bytes.Equal(got[:len(img)], img) {
		t.Fatalf("slot b does not hold the image (%v)", err)
	}
	if _, _, err := sim.Reboot(root, false); err != nil {
		t.Fatal(err)
	}
	w := &world{root: root, open: open}
	commitReported(t, w, ad, srv, id)
}
