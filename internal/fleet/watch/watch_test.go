package watch

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
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

	"github.com/tandem-ota/tandem/internal/channel"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/install"
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

func (h *harness) Run(ctx context.Context, t *testing.T) error {
	res, err := h.w.Once(ctx)
	t.Logf("watch: %s %s (%v)", res.Action, res.Message, err)
	return err
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

func newHarness(t *testing.T, env *fleettest.Env) *harness {
	cs := newChannelServer(t)
	h := &harness{env: env, cs: cs, key: channelKey(t, env.Root), jobs: map[string]string{}}
	w, err := New(Options{URL: cs.srv.URL + "/stable.json", Open: env.Open, DeviceID: "sim-1", RetryDelay: 10 * time.Millisecond,
		Log: func(e Event) { t.Logf("event %s: %s", e.Event, e.Message) }})
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	return h
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
	if _, err := New(Options{URL: "https://cdn.example/Stable.json", Open: open}); err == nil || !strings.Contains(err.Error(), "channel name") {
		t.Errorf("an invalid derived channel name: %v", err)
	}
	if _, err := New(Options{URL: "https://cdn.example/Stable.json", Channel: "stable", Open: open}); err != nil {
		t.Errorf("an explicit channel name: %v", err)
	}
}

func TestSchedule(t *testing.T) {
	s := Schedule{Interval: time.Hour, Jitter: 6 * time.Minute, MinBackoff: 30 * time.Second, MaxBackoff: 20 * time.Minute}
	for _, r := range []float64{0, 0.5, 0.999} {
		s.Rand = func() float64 { return r }
		if got := s.Next(0); got < 54*time.Minute || got > 66*time.Minute {
			t.Errorf("Next(0) with rand %v = %s", r, got)
		}
	}
	s.Rand = func() float64 { return 1 }
	for fails, want := range map[int]time.Duration{1: 30 * time.Second, 2: time.Minute, 3: 2 * time.Minute, 10: 20 * time.Minute, 100: 20 * time.Minute} {
		if got := s.Next(fails); got != want {
			t.Errorf("Next(%d) = %s, want %s", fails, got, want)
		}
	}
	s.Rand = func() float64 { return 0 }
	if got := s.Next(3); got != time.Minute {
		t.Errorf("Next(3) with rand 0 = %s, want 1m (half the backoff)", got)
	}
}

// TestRun: the polling loop installs, backs off while the server fails, and
// stops promptly when its context ends.
func TestRun(t *testing.T) {
	fleettest.Run(t, func(t *testing.T, env *fleettest.Env) fleettest.Harness {
		return &loopHarness{harness: newHarness(t, env)}
	})
}

// loopHarness runs the watcher's Run loop for one stretch: until the
// device asks for a reboot or an outcome is recorded.
type loopHarness struct{ *harness }

func (h *loopHarness) Run(ctx context.Context, t *testing.T) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d, err := h.env.Open()
	if err != nil {
		return err
	}
	before, _ := LoadState(d, "stable")
	done := make(chan error, 1)
	go func() {
		done <- h.w.Run(ctx, Schedule{Interval: 20 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
		}
		if st, _ := device.ReadSimState(h.env.Root); st != nil && st.Reboot != nil {
			break
		}
		if o, _ := h.w.Agent().Outcome(); o.State == fleet.Verifying {
			break
		}
		if st, _ := LoadState(d, "stable"); len(st.History) > len(before.History) {
			break
		}
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not stop within 10s of its context's end")
		return nil
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
	w, err := New(Options{URL: cs.srv.URL + "/stable.json", Open: open, Now: func() time.Time { return time.Unix(86400, 0) }})
	if err != nil {
		t.Fatal(err)
	}
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
	w, err := New(Options{URL: "http://127.0.0.1:1/stable.json", Open: open, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := w.lock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Once(context.Background()); !errors.Is(err, device.ErrRefused) || !strings.Contains(err.Error(), "another tandem watch") {
		t.Fatalf("a second watcher: %v", err)
	}
	unlock()
	if _, err := w.Once(context.Background()); err == nil || errors.Is(err, device.ErrRefused) {
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
	if err := d.TryNext("b"); err != nil {
		t.Fatal(err)
	}
	if g, _, err := sim.Reboot(root, false); err != nil || g != "b" {
		t.Fatalf("trial boot: %s %v", g, err)
	}
	key := channelKey(t, root)
	cs := newChannelServer(t)
	now := time.Now().UTC().Truncate(time.Second)
	b, err := channel.Sign(&channel.Channel{Format: channel.Format, Channel: "stable", Compatible: "tandem-sim", Sequence: 1,
		Issued: now, Expires: now.Add(time.Hour), Release: channel.Release{Version: "2.0.0", Bundle: "v2.tandem",
			BundleHash: strings.Repeat("ab", 32)}}, []channel.Signer{{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	cs.set(b)
	w, err := New(Options{URL: cs.srv.URL + "/stable.json", Open: open})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Once(context.Background()); !errors.Is(err, device.ErrRefused) || !errors.Is(err, fleet.ErrBusy) {
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
	key := channelKey(t, root)
	now := time.Now().UTC().Truncate(time.Second)
	b, err := channel.Sign(&channel.Channel{Format: channel.Format, Channel: "stable", Compatible: "tandem-sim", Sequence: 1,
		Issued: now, Expires: now.Add(time.Hour), Release: channel.Release{Version: "2.0.0", Bundle: "v2.tandem",
			BundleHash: strings.Repeat("ab", 32)}}, []channel.Signer{{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(b) }))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := New(Options{URL: srv.URL + "/stable.json", Open: open, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("https without the CA: %v", err)
	}
	w, err = New(Options{URL: srv.URL + "/stable.json", Open: open, HTTP: install.HTTPOptions{CAFile: ca}})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := w.Once(context.Background()); err != nil || res.Action != "idle" {
		t.Fatalf("https with the CA: %+v, %v", res, err)
	}
}
