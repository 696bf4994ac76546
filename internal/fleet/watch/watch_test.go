package watch

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/pem"
	"errors"
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
	"github.com/tandem-ota/tandem/internal/channel"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/retry"
	"github.com/tandem-ota/tandem/internal/signature"
	"github.com/tandem-ota/tandem/internal/sim"
)

// channelKey makes a channel signing key and installs its public key in
// the device's keys directory.
func channelKey(t *testing.T, root string) crypto.Signer {
	t.Helper()
	key, _ := fleettest.NewKey(t, filepath.Join(root, "etc/tandem/keys"), "channel")
	return key
}

// channelServer serves one channel file at /stable.json, with an ETag;
// fail makes it fail its next requests transiently.
type channelServer struct {
	mu   sync.Mutex
	file []byte
	gets int
	fail int
	srv  *httptest.Server
}

func newChannelServer(t *testing.T) *channelServer {
	cs := &channelServer{}
	cs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.mu.Lock()
		b := cs.file
		cs.gets++
		fail := cs.fail
		if fail > 0 {
			cs.fail--
		}
		cs.mu.Unlock()
		switch fail % 3 {
		case 1:
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		case 2:
			w.Header().Set("Retry-After", "0")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		if fail > 0 {
			// A reset connection.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		if r.URL.Path != "/stable.json" || b == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", fmt.Sprintf(`"%x"`, sha256.Sum256(b)))
		w.Header().Set("Content-Type", "application/json")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	}))
	t.Cleanup(cs.srv.Close)
	return cs
}

func (cs *channelServer) set(b []byte) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.file = b
}

// harness is the watcher's fleettest harness: an offer is a channel file
// naming the offered bundle; the report is the outcome the watcher
// recorded in its state file.
type harness struct {
	env  *fleettest.Env
	w    *Watcher
	key  crypto.Signer
	cs   *channelServer
	seq  uint64
	jobs map[string]string // offer id → job id
}

func (h *harness) Offer(t *testing.T, o fleettest.Offer) {
	h.seq++
	c := &channel.Channel{Format: channel.Format, Channel: "stable", Compatible: "tandem-sim", Sequence: h.seq,
		Issued: time.Now().UTC().Truncate(time.Second), Expires: time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second),
		Release: channel.Release{Version: o.Version, Bundle: o.URL, BundleHash: o.BundleHash}}
	b, err := channel.Sign(c, []channel.Signer{{Key: h.key}})
	if err != nil {
		t.Fatal(err)
	}
	h.cs.set(b)
	h.jobs[o.ID] = fmt.Sprintf("stable-%d", h.seq)
}

// FailNext makes the channel server fail its next n requests (503, 429,
// reset connection).
func (h *harness) FailNext(_ *testing.T, n int) {
	h.cs.mu.Lock()
	defer h.cs.mu.Unlock()
	h.cs.fail = n
}

var _ fleettest.Flaky = (*harness)(nil)

// PinsBundleHash: a channel file pins the bundle hash.
func (h *harness) PinsBundleHash() {}

var _ fleettest.Pinned = (*harness)(nil)

func (h *harness) Run(ctx context.Context, t *testing.T) error {
	return fleettest.Stretch(ctx, h.w, fleettest.Loop(t))
}

func (h *harness) Report(t *testing.T, id string) (fleettest.Report, bool) {
	d, err := h.env.Open()
	if err != nil {
		t.Fatal(err)
	}
	st, err := LoadState(d, "stable")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range st.History {
		if o.Job == h.jobs[id] {
			return fleettest.Report{Success: o.Success, Detail: o.Reason}, true
		}
	}
	return fleettest.Report{}, false
}

func TestConformance(t *testing.T) {
	fleettest.Run(t, func(t *testing.T, env *fleettest.Env) fleettest.Harness { return newHarness(t, env) })
}

// fastRetry retries a channel fetch within milliseconds.
var fastRetry = retry.Policy{Attempts: 4, Min: 5 * time.Millisecond, Max: 20 * time.Millisecond, MaxRetryAfter: 20 * time.Millisecond}

func newHarness(t *testing.T, env *fleettest.Env) *harness {
	cs := newChannelServer(t)
	h := &harness{env: env, cs: cs, key: channelKey(t, env.Root), jobs: map[string]string{}}
	w, err := New(&Config{URL: cs.srv.URL + "/stable.json", DeviceID: "sim-1"}, env.Open, fleettest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	w.Retry = fastRetry
	h.w = w
	return h
}

// attr is the value of a step's log attribute ("" if it has none).
func attr(st fleet.Step, key string) string {
	for _, a := range st.Attrs {
		if a.Key == key {
			return a.Value.String()
		}
	}
	return ""
}

func TestChannelName(t *testing.T) {
	for in, want := range map[string]string{
		"https://cdn.example/fleet/stable.json": "stable",
		"http://127.0.0.1:8080/beta":            "beta",
		"https://cdn.example/a/edge.v1.json":    "edge",
	} {
		if got, err := ChannelName(in); err != nil || got != want {
			t.Errorf("ChannelName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ChannelName("/etc/stable.json"); err == nil {
		t.Errorf("a path was accepted as channel url")
	}
	open := func() (*device.Device, error) { return nil, nil }
	if _, err := New(&Config{URL: "https://cdn.example/Stable.json"}, open, nil); err == nil || !strings.Contains(err.Error(), "channel name") {
		t.Errorf("an invalid derived channel name: %v", err)
	}
	if _, err := New(&Config{URL: "https://cdn.example/Stable.json", Channel: "stable"}, open, nil); err != nil {
		t.Errorf("an explicit channel name: %v", err)
	}
}

// TestConfig: the file is decoded strictly and checked; the loop it asks
// for spaces polls by interval and jitter.
func TestConfig(t *testing.T) {
	c, err := ParseConfig([]byte("url = \"https://cdn.example/fleet/stable.json\"\ninterval = \"10m\"\njitter = \"0s\"\n[labels]\nring = \"beta\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Loop(); l.Interval != 10*time.Minute || l.Jitter >= 0 || !l.Stagger || l.Retry.Min != 30*time.Second || l.Retry.Max != 10*time.Minute {
		t.Errorf("loop %+v", l)
	}
	if l := (&Config{}).Loop(); l.Interval != time.Hour || l.Jitter != 0 {
		t.Errorf("default loop %+v", l)
	}
	for _, tc := range []struct{ in, want string }{
		{"bogus = 1\n", "line 1: unknown key bogus"},
		{"interval = \"soon\"\n", "want a duration"},
		{"interval = \"10ms\"\n", "at least 1s"},
		{"jitter = \"-1m\"\n", "negative"},
		{"url = \"stable.json\"\n", "want an http or https URL"},
		{"url = \"http://127.0.0.1:/stable.json\"\n", "empty port"},
	} {
		if _, err := ParseConfig([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
	p := filepath.Join(t.TempDir(), "watch.toml")
	if c, err := LoadConfig(p, false); err != nil || c.URL != "" {
		t.Errorf("a missing optional file: %+v, %v", c, err)
	}
	if _, err := LoadConfig(p, true); err == nil {
		t.Errorf("a missing required file was accepted")
	}
	if err := os.WriteFile(p, []byte("bogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p, false); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), p) {
		t.Errorf("a bad file: %v, want a configuration error naming it", err)
	}
}

// TestNoClock: a device whose clock is not set (1970) checks expiry at the
// later of the build floor and the newest issued time it accepted.
func TestNoClock(t *testing.T) {
	root := filepath.Join(t.TempDir(), "dev")
	if err := sim.New(root, sim.Options{BootFlow: "grub", SlotSize: 1 << 20, FactoryVersion: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	open := func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }
	key := channelKey(t, root)
	cs := newChannelServer(t)
	w, err := New(&Config{URL: cs.srv.URL + "/stable.json"}, open, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Now = func() time.Time { return time.Unix(86400, 0) }
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	publish := func(seq uint64, issued, expires time.Time) {
		c := &channel.Channel{Format: channel.Format, Channel: "stable", Compatible: "tandem-sim", Sequence: seq,
			Issued: issued, Expires: expires, Release: channel.Release{Version: "1.0.0", Bundle: "x.tandem",
				BundleHash: strings.Repeat("ab", 32)}}
		b, err := channel.Sign(c, []channel.Signer{{Key: key}})
		if err != nil {
			t.Fatal(err)
		}
		cs.set(b)
	}
	ctx := context.Background()
	// Expired long ago by any real clock, but after the floor: accepted.
	publish(1, t0, t0.Add(24*time.Hour))
	a, err := w.Check(ctx)
	if err != nil || a.Clock {
		t.Fatalf("first file without a clock: %+v, %v", a, err)
	}
	// Newer, issued later: accepted, and its issued time is now the floor.
	publish(2, t0.Add(48*time.Hour), t0.Add(30*24*time.Hour))
	if _, err := w.Check(ctx); err != nil {
		t.Fatalf("newer file: %v", err)
	}
	// A file that expired before the newest issued time seen: refused.
	publish(3, t0, t0.Add(24*time.Hour))
	if _, err := w.Check(ctx); err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "no trustworthy clock") {
		t.Fatalf("a file expired before a seen issued time: %v", err)
	}
	// Before the floor: refused even as the first file.
	floor := signature.DefaultFloor()
	publish(4, floor.Add(-48*time.Hour), floor.Add(-24*time.Hour))
	d, _ := open()
	if err := os.RemoveAll(filepath.Join(d.FS.Path(d.Config.DataDir), "watch")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Check(ctx); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("a file expired before the floor: %v", err)
	}
}

func TestLock(t *testing.T) {
	root := filepath.Join(t.TempDir(), "dev")
	if err := sim.New(root, sim.Options{BootFlow: "grub", SlotSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	open := func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }
	w, err := New(&Config{URL: "http://127.0.0.1:1/stable.json"}, open, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Retry = retry.Policy{Attempts: 1}
	unlock, err := w.lock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Step(context.Background()); !errors.Is(err, device.ErrRefused) || !strings.Contains(err.Error(), "another tandem watch") {
		t.Fatalf("a second watcher: %v", err)
	}
	unlock()
	if _, err := w.Step(context.Background()); err == nil || errors.Is(err, device.ErrRefused) {
		t.Fatalf("after the unlock the watcher should poll (and fail to connect): %v", err)
	}
}

// TestBusy: while a trial the watcher did not start runs, it refuses to
// begin (exit 4 on the command line), writing no job.
func TestBusy(t *testing.T) {
	root := filepath.Join(t.TempDir(), "dev")
	if err := sim.New(root, sim.Options{BootFlow: "grub", SlotSize: 1 << 20, FactoryVersion: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sim.Reboot(root, false); err != nil {
		t.Fatal(err)
	}
	open := func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }
	d, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.RecordInstall("b", "1.5.0", strings.Repeat("cd", 32)); err != nil {
		t.Fatal(err)
	}
	if err := d.TryNext("b"); err != nil {
		t.Fatal(err)
	}
	if g, _, err := sim.Reboot(root, false); err != nil || g != "b" {
		t.Fatalf("trial boot: %s %v", g, err)
	}
	w := watchStable(t, root, open)
	if _, err := w.Step(context.Background()); !errors.Is(err, device.ErrRefused) || !errors.Is(err, fleet.ErrBusy) {
		t.Fatalf("during another trial: %v", err)
	}
	if j, err := w.Agent().Job(); err != nil || j != nil {
		t.Fatalf("a job was written: %+v, %v", j, err)
	}
}

// TestTLS: the channel is fetched over https with the configured CA (and
// refused without it).
func TestTLS(t *testing.T) {
	root := filepath.Join(t.TempDir(), "dev")
	if err := sim.New(root, sim.Options{BootFlow: "grub", SlotSize: 1 << 20, FactoryVersion: "2.0.0"}); err != nil {
		t.Fatal(err)
	}
	open := func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }
	b := signedStable(t, root)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(b) }))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := New(&Config{URL: srv.URL + "/stable.json"}, open, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Retry = retry.Policy{Attempts: 1}
	if _, err := w.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("https without the CA: %v", err)
	}
	w, err = New(&Config{URL: srv.URL + "/stable.json", CAFile: ca}, open, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := w.Step(context.Background()); err != nil || st.Activity != fleet.ActIdle || attr(st, "event") != "checked" {
		t.Fatalf("https with the CA: %+v, %v", st, err)
	}
}

// TestDamagedSignature: a CDN serves the pinned bundle with a byte of its
// signature section flipped (outside the hashed header, so the hash still
// matches the pin). That is the transport's fault: the watcher reports a
// transient failure, records nothing against the release, and installs it
// once the genuine file is back. Issue 11, hardening 4.
func TestDamagedSignature(t *testing.T) {
	dir := t.TempDir()
	key, pub := fleettest.NewKey(t, dir, "release")
	good, h := fleettest.SignedBundle(t, bundle.Header{Name: "watch test", Version: "2.0.0", Created: time.Now().Unix()},
		fleettest.Image(256<<10, "sig"), key)
	// The last byte of the signature section is the last byte of the
	// signature (docs/bundle-format.md).
	hdr := binary.LittleEndian.Uint32(good[12:])
	sec := binary.LittleEndian.Uint32(good[hdr+4:])
	bad := bytes.Clone(good)
	bad[hdr+8+sec-1] ^= 0x01
	var mu sync.Mutex
	serve := bad
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b := serve
		mu.Unlock()
		http.ServeContent(w, r, "", time.Unix(1700000000, 0), bytes.NewReader(b))
	}))
	t.Cleanup(files.Close)

	root := filepath.Join(dir, "dev")
	open := fleettest.NewDevice(t, root, sim.Options{BootFlow: "grub", Trust: []string{pub}, SlotSize: 8 << 20, FactoryVersion: "1.0.0"})
	h2 := &harness{env: &fleettest.Env{Root: root, Open: open}, cs: newChannelServer(t), key: channelKey(t, root), jobs: map[string]string{}}
	w, err := New(&Config{URL: h2.cs.srv.URL + "/stable.json", DeviceID: "sim-1"}, open, fleettest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	w.Retry = fastRetry
	h2.Offer(t, fleettest.Offer{ID: "r", URL: files.URL + "/v2.tandem", BundleHash: h.String(), Version: "2.0.0"})

	for range 2 {
		_, err := w.Step(context.Background())
		if _, transient := retry.IsTransient(err); !transient || !errors.Is(err, signature.ErrBadSignature) {
			t.Fatalf("the damaged signature: %v, want a transient signature error", err)
		}
		d, _ := open()
		if st, err := LoadState(d, "stable"); err != nil || len(st.Failed) != 0 || len(st.History) != 0 {
			t.Fatalf("the damaged copy was held against the release: %+v, %v", st, err)
		}
		if j, _ := w.Agent().Job(); j != nil {
			t.Fatalf("a job was kept: %+v", j)
		}
	}
	if st, _ := device.ReadSimState(root); st.Reboot != nil {
		t.Fatal("rebooted after a damaged bundle")
	}
	mu.Lock()
	serve = good
	mu.Unlock()
	if st, err := w.Step(context.Background()); err != nil || st.Activity != fleet.ActRebooting {
		t.Fatalf("the genuine file back: %+v, %v; want the install", st, err)
	}
}

// TestDowngradeUnknownRunning: a running version that is unknown, or not
// semver (Debian's VERSION_ID "12", "2024.06.1": newer than 2.0.0 by the
// documented order), does not switch the downgrade check off: the release
// is skipped and no job starts. Issue 11, hardening 1.
func TestDowngradeUnknownRunning(t *testing.T) {
	for _, running := range []string{"", "2024.06.1", "12"} {
		t.Run("running="+running, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "dev")
			if err := sim.New(root, sim.Options{BootFlow: "grub", SlotSize: 1 << 20, FactoryVersion: running}); err != nil {
				t.Fatal(err)
			}
			open := func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }
			w := watchStable(t, root, open)
			res, err := w.Step(context.Background())
			if err != nil || res.Activity != fleet.ActIdle || !strings.Contains(res.Message, "downgrade refused") {
				t.Fatalf("release 2.0.0 on a device running %q: %+v %v, want skipped as a possible downgrade", running, res, err)
			}
			if j, err := w.Agent().Job(); err != nil || j != nil {
				t.Fatalf("a job was written: %+v, %v", j, err)
			}
		})
	}
}

// signedStable is channel "stable", sequence 1, offering release 2.0.0 (a
// v2.tandem that is never fetched), signed by the channel key the device
// at root trusts.
func signedStable(t *testing.T, root string) []byte {
	t.Helper()
	key := channelKey(t, root)
	now := time.Now().UTC().Truncate(time.Second)
	b, err := channel.Sign(&channel.Channel{Format: channel.Format, Channel: "stable", Compatible: "tandem-sim", Sequence: 1,
		Issued: now, Expires: now.Add(time.Hour), Release: channel.Release{Version: "2.0.0", Bundle: "v2.tandem",
			BundleHash: strings.Repeat("ab", 32)}}, []channel.Signer{{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// watchStable serves signedStable and returns a watcher of it for the
// device open opens.
func watchStable(t *testing.T, root string, open func() (*device.Device, error)) *Watcher {
	t.Helper()
	cs := newChannelServer(t)
	cs.set(signedStable(t, root))
	w, err := New(&Config{URL: cs.srv.URL + "/stable.json"}, open, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}
