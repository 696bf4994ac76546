package tedge_test

import (
	"context"
	"crypto"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/fleet/tedge"
	"github.com/tandem-ota/tandem/internal/health"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/testutil"
)

var topics = tedge.Topics{Root: "te", Device: "device/main//"}

// mapper plays thin-edge.io's cloud mapper: it publishes retained init
// commands, records every status message, and clears a command once it
// reached successful or failed, as the requester must.
type mapper struct {
	t    testing.TB
	c    mqtt.Client
	mu   sync.Mutex
	msgs map[string][]map[string]any // per command id, in arrival order
	twin []map[string]any
	capa []string
	ping chan struct{}
}

func newMapper(t testing.TB, addr string) *mapper {
	m := &mapper{t: t, msgs: map[string][]map[string]any{}, ping: make(chan struct{}, 1)}
	ready := make(chan struct{}, 1)
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("c8y-mapper-test").
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(200 * time.Millisecond).
		SetOnConnectHandler(func(c mqtt.Client) {
			tok := c.SubscribeMultiple(map[string]byte{topics.Commands(): 1, topics.Twin(): 1, topics.Capability(): 1}, m.receive)
			tok.Wait()
			select {
			case ready <- struct{}{}:
			default:
			}
		})
	m.c = mqtt.NewClient(opts)
	m.c.Connect()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the mapper could not connect to the broker")
	}
	t.Cleanup(func() { m.c.Disconnect(100) })
	return m
}

func (m *mapper) receive(_ mqtt.Client, msg mqtt.Message) {
	m.mu.Lock()
	defer func() {
		m.mu.Unlock()
		select {
		case m.ping <- struct{}{}:
		default:
		}
	}()
	switch topic := msg.Topic(); {
	case topic == topics.Twin():
		var doc map[string]any
		if err := json.Unmarshal(msg.Payload(), &doc); err != nil {
			m.t.Errorf("twin is not JSON: %q", msg.Payload())
		}
		m.twin = append(m.twin, doc)
	case topic == topics.Capability():
		m.capa = append(m.capa, string(msg.Payload()))
	default:
		id, _ := topics.CommandID(topic)
		if len(msg.Payload()) == 0 {
			return // the clear
		}
		var doc map[string]any
		if err := json.Unmarshal(msg.Payload(), &doc); err != nil {
			return // a malformed command a test published
		}
		m.msgs[id] = append(m.msgs[id], doc)
		if s := doc["status"]; s == "successful" || s == "failed" {
			go m.c.Publish(topic, 1, true, []byte{}) // the requester clears the command
		}
	}
}

// request publishes a retained init command.
func (m *mapper) request(id string, cmd map[string]any) {
	cmd["status"] = "init"
	b, _ := json.Marshal(cmd)
	if tok := m.c.Publish(topics.Command(id), 1, true, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		m.t.Fatalf("publish the command: %v", tok.Error())
	}
}

// statuses lists the statuses seen for id, consecutive repeats merged.
func (m *mapper) statuses(id string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, d := range m.msgs[id] {
		s, _ := d["status"].(string)
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out
}

func (m *mapper) last(id string) map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.msgs[id]; len(l) > 0 {
		return l[len(l)-1]
	}
	return nil
}

// await waits until id's last status is one of want.
func (m *mapper) await(t *testing.T, id string, timeout time.Duration, want ...string) map[string]any {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if d := m.last(id); d != nil {
			for _, w := range want {
				if d["status"] == w {
					return d
				}
			}
		}
		select {
		case <-m.ping:
		case <-deadline:
			t.Fatalf("command %s: status %v after %v, want one of %v", id, m.statuses(id), timeout, want)
		}
	}
}

// retained reads what the broker holds for topic, as a new subscriber
// (e.g. the mapper after its own restart) would: nil when nothing came
// within wait of the subscription.
func retained(t *testing.T, addr, topic string, wait time.Duration) []byte {
	t.Helper()
	got := make(chan []byte, 1)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("retained-reader"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	tok := c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", topic, tok.Error())
	}
	select {
	case b := <-got:
		return b
	case <-time.After(wait):
		return nil
	}
}

// cleared waits until the broker holds nothing for topic.
func cleared(t *testing.T, addr, topic string) bool {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if retained(t, addr, topic, 200*time.Millisecond) == nil {
			return true
		}
	}
	return false
}

func logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// The shared conformance suite, with a real broker (persistent, as
// thin-edge.io runs it) and the mapper above. thin-edge.io has no way to
// cancel a command, so the cancel scenarios do not apply; the fleet side's
// transient errors are broker restarts.
func TestConformance(t *testing.T) {
	fleettest.Run(t, func(t *testing.T, env *fleettest.Env) fleettest.Harness {
		b := testutil.StartMosquittoPersistent(t)
		return &harness{b: b, m: newMapper(t, b.Addr), cfg: tedge.Config{
			Agent:  &fleet.Agent{Open: env.Open, Adapter: tedge.Adapter},
			Broker: b.Addr, Topics: topics, Retry: 100 * time.Millisecond, Log: logger(t),
		}}
	})
}

type harness struct {
	b        *testutil.Mosquitto
	m        *mapper
	cfg      tedge.Config
	failures int  // broker restarts in the next Run
	reported bool // the last Run ended on a step that sent a final status
}

// FailNext restarts the broker n times, before each of the adapter's next
// steps.
func (h *harness) FailNext(t *testing.T, n int) { h.failures = n }

func (h *harness) Offer(t *testing.T, o fleettest.Offer) {
	h.m.request(o.ID, map[string]any{"name": "tandem-sim", "version": o.Version, "remoteUrl": o.URL})
}

func (h *harness) Run(ctx context.Context, t *testing.T) error {
	n := h.failures
	h.failures = 0
	// The broker restarts between the handler's steps (during a download,
	// too: it runs beside them), never while a step publishes: a broker
	// stopped just as it acknowledged a retained message can come back
	// without it, which no client can help.
	restart := func() {
		if n > 0 {
			n--
			h.b.Stop()
			time.Sleep(100 * time.Millisecond)
			h.b.Start()
		}
	}
	last, err := drive(ctx, t, h.cfg, restart)
	h.reported = last == fleet.ActReported
	return err
}

func (h *harness) Report(t *testing.T, id string) (fleettest.Report, bool) {
	d := h.m.last(id)
	if h.reported {
		// The broker acknowledged the final status: it reaches the mapper,
		// however slowly (after a broker restart, once it resubscribes).
		d = h.m.await(t, id, 30*time.Second, "successful", "failed")
	}
	if d == nil || d["status"] != "successful" && d["status"] != "failed" {
		return fleettest.Report{}, false
	}
	reason, _ := d["reason"].(string)
	return fleettest.Report{Success: d["status"] == "successful", Detail: reason}, true
}

// world is a simulated device, a broker, the mapper and an HTTP server with
// the bundles.
type world struct {
	root   string
	broker *testutil.Mosquitto
	m      *mapper
	srv    *httptest.Server
	gate   chan struct{} // while open (not closed), the server holds every request
	image  []byte
	cfg    tedge.Config
	served atomic.Int64 // response body bytes
	size   int64        // of v2.tandem
}

func newWorld(t *testing.T) *world { return newWorldWith(t, false) }

// newWorldWith makes the world; with factory, the device's group a already
// holds the v2 image (so a delta install has nothing to download but the
// bundle's header and chunk tables).
func newWorldWith(t *testing.T, factory bool) *world {
	w := &world{gate: make(chan struct{})}
	close(w.gate)
	dir := t.TempDir()
	key, pubPath := fleettest.NewKey(t, dir, "release")
	w.image = fleettest.Image(1<<20, "tedge")
	writeBundle(t, filepath.Join(dir, "v2.tandem"), w.image, key)
	if fi, err := os.Stat(filepath.Join(dir, "v2.tandem")); err == nil {
		w.size = fi.Size()
	}
	other, _ := fleettest.NewKey(t, dir, "other")
	writeBundle(t, filepath.Join(dir, "untrusted.tandem"), w.image, other)

	files := http.FileServer(http.Dir(dir))
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		<-w.gate
		files.ServeHTTP(countingWriter{rw, &w.served}, r)
	}))
	t.Cleanup(w.srv.Close)

	w.root = filepath.Join(t.TempDir(), "dev")
	opts := sim.Options{BootFlow: "grub", Trust: []string{pubPath}, SlotSize: 2 << 20, FactoryVersion: "1.0.0"}
	if factory {
		opts.Image = filepath.Join(dir, "factory.img")
		if err := os.WriteFile(opts.Image, w.image, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := sim.New(w.root, opts); err != nil {
		t.Fatal(err)
	}
	w.broker = testutil.StartMosquitto(t)
	w.m = newMapper(t, w.broker.Addr)
	w.cfg = tedge.Config{
		Agent:  &fleet.Agent{Open: w.open, Adapter: tedge.Adapter},
		Broker: w.broker.Addr, Topics: topics, Retry: 100 * time.Millisecond, Log: logger(t),
	}
	return w
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (w *world) open() (*device.Device, error) { return device.Open(device.Options{Root: w.root}) }

func writeBundle(t *testing.T, p string, image []byte, key crypto.Signer) {
	t.Helper()
	b, _ := fleettest.SignedBundle(t, bundle.Header{Name: "tedge test", Version: "2.0.0", Created: 1700000000}, image, key)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// drive runs a handler made from cfg (a start of the process) through
// fleet.Loop until it requested the reboot, reported a final status or
// waits for the health check, calling before (when set) ahead of each
// step. It returns the last step's activity.
func drive(ctx context.Context, t testing.TB, cfg tedge.Config, before func()) (fleet.Activity, error) {
	h, err := tedge.New(cfg)
	if err != nil {
		return "", err
	}
	r := &recorder{Handler: h, before: before}
	err = fleettest.Stretch(ctx, r, fleettest.Loop(t))
	return r.last, err
}

// recorder is a handler that records its steps' activity.
type recorder struct {
	*tedge.Handler
	before func()
	last   fleet.Activity
}

func (r *recorder) Step(ctx context.Context) (fleet.Step, error) {
	if r.before != nil {
		r.before()
	}
	st, err := r.Handler.Step(ctx)
	r.last = st.Activity
	return st, err
}

// serve runs a handler made from cfg as the service does (tandem tedge):
// until ctx ends or it requested the reboot.
func serve(ctx context.Context, t testing.TB, cfg tedge.Config) error {
	h, err := tedge.New(cfg)
	if err != nil {
		return err
	}
	_, err = fleet.Loop{Interval: time.Second, Waiting: 50 * time.Millisecond, Log: logger(t)}.Run(ctx, h)
	return err
}

// start runs the handler (as the service does) until stop is called.
func (w *world) start(t *testing.T) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, t, w.cfg) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("the handler did not stop")
			return nil
		}
	}
}

// runUntilReboot runs the handler until it returns after requesting a reboot.
func (w *world) runUntilReboot(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := serve(ctx, t, w.cfg); err != nil {
		t.Fatalf("run: %v", err)
	}
	st, err := device.ReadSimState(w.root)
	if err != nil || st.Reboot == nil {
		t.Fatalf("the handler returned without rebooting (%v)", err)
	}
}

func (w *world) reboot(t *testing.T, want string) {
	t.Helper()
	if g, notes, err := sim.Reboot(w.root, false); err != nil || g != want {
		t.Fatalf("sim reboot: %s (%v, %q), want %s", g, err, notes, want)
	}
}

func (w *world) healthCheck(t *testing.T, want health.Verdict) {
	t.Helper()
	res, err := health.Check(health.Options{Open: w.open})
	if err != nil || res.Verdict != want {
		t.Fatalf("health check: %+v, %v; want %s", res, err, want)
	}
}

func equal(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// A whole update as the service runs it: the statuses in order, every
// unknown field kept, the twin, the capability, the command cleared.
func TestSuccess(t *testing.T) {
	w := newWorld(t)
	w.m.request("c8y-mapper-1", map[string]any{
		"name": "tandem-sim", "version": "2.0.0", "remoteUrl": w.srv.URL + "/v2.tandem",
		"tedgeUrl": w.srv.URL + "/v2.tandem", "c8y": map[string]any{"opId": "17"}, "note": "keep me",
	})
	w.runUntilReboot(t)
	w.reboot(t, "b")
	stop := w.start(t)
	w.m.await(t, "c8y-mapper-1", 10*time.Second, "verifying")
	if got := w.m.statuses("c8y-mapper-1"); !equal(got, []string{"init", "executing", "restarting", "verifying"}) {
		t.Fatalf("statuses %v before the health check", got)
	}
	w.healthCheck(t, health.Committed)
	final := w.m.await(t, "c8y-mapper-1", 10*time.Second, "successful", "failed")
	job := filepath.Join(w.root, "var/lib/tandem/fleet/tedge.json")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(job); os.IsNotExist(err) {
			break // the broker acknowledged the final status: the job is done
		}
		if time.Now().After(deadline) {
			t.Fatal("the job was not forgotten after the final status")
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("the service stopped with %v", err)
	}
	if final["status"] != "successful" {
		t.Fatalf("final status %v", final)
	}
	w.m.mu.Lock()
	for i, d := range w.m.msgs["c8y-mapper-1"] {
		if d["note"] != "keep me" || d["c8y"].(map[string]any)["opId"] != "17" || d["version"] != "2.0.0" {
			t.Errorf("message %d lost a field of the command: %v", i, d)
		}
		if _, ok := d["reason"]; ok {
			t.Errorf("message %d has a reason: %v", i, d)
		}
	}
	twins, capa := w.m.twin, w.m.capa
	w.m.mu.Unlock()
	if len(twins) == 0 || twins[len(twins)-1]["name"] != "tandem-sim" || twins[len(twins)-1]["version"] != "2.0.0" || twins[len(twins)-1]["url"] != w.srv.URL+"/v2.tandem" {
		t.Errorf("firmware twin %v", twins)
	}
	if len(capa) == 0 || capa[0] != "{}" {
		t.Errorf("capability messages %q", capa)
	}
	if !cleared(t, w.broker.Addr, topics.Command("c8y-mapper-1")) {
		t.Errorf("the command was not cleared: %s", retained(t, w.broker.Addr, topics.Command("c8y-mapper-1"), time.Second))
	}
	if b := retained(t, w.broker.Addr, topics.Capability(), 10*time.Second); string(b) != "{}" {
		t.Errorf("retained capability %q", b)
	}
}

// The broker restarts (losing every retained message) while the bundle
// downloads and again while the health check decides: the handler
// reconnects, subscribes again, restores the command's state and finishes.
func TestBrokerRestart(t *testing.T) {
	w := newWorld(t)
	w.gate = make(chan struct{}) // hold the download
	w.m.request("c8y-mapper-2", map[string]any{"name": "tandem-sim", "version": "2.0.0", "remoteUrl": w.srv.URL + "/v2.tandem"})
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done <- serve(ctx, t, w.cfg)
	}()
	w.m.await(t, "c8y-mapper-2", 10*time.Second, "executing")
	w.broker.Stop()
	w.broker.Start()
	// The restarted broker knows nothing; the handler publishes the state again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var doc map[string]any
		if b := retained(t, w.broker.Addr, topics.Command("c8y-mapper-2"), 500*time.Millisecond); json.Unmarshal(b, &doc) == nil && doc["status"] == "executing" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("after the broker restart, the command's executing state was not published again")
		}
	}
	if b := retained(t, w.broker.Addr, topics.Capability(), 10*time.Second); string(b) != "{}" {
		t.Errorf("capability after the restart: %q", b)
	}
	close(w.gate)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	w.m.await(t, "c8y-mapper-2", 10*time.Second, "restarting")
	w.reboot(t, "b")
	stop := w.start(t)
	w.m.await(t, "c8y-mapper-2", 10*time.Second, "verifying")
	w.broker.Stop()
	w.broker.Start()
	w.m.await(t, "c8y-mapper-2", 10*time.Second, "verifying") // published again
	w.healthCheck(t, health.Committed)
	final := w.m.await(t, "c8y-mapper-2", 10*time.Second, "successful", "failed")
	stop()
	if final["status"] != "successful" {
		t.Fatalf("final %v", final)
	}
}

// A bundle from an untrusted key: failed with a reason that says so, no
// reboot, the boot state as it was.
func TestBadSignature(t *testing.T) {
	w := newWorld(t)
	w.m.request("c8y-mapper-3", map[string]any{"name": "tandem-sim", "version": "2.0.1", "remoteUrl": w.srv.URL + "/untrusted.tandem"})
	stop := w.start(t)
	final := w.m.await(t, "c8y-mapper-3", 20*time.Second, "successful", "failed")
	stop()
	reason, _ := final["reason"].(string)
	if final["status"] != "failed" || !strings.Contains(reason, "trust") {
		t.Fatalf("final %v, want failed naming the untrusted signature", final)
	}
	if got := w.m.statuses("c8y-mapper-3"); !equal(got, []string{"init", "executing", "failed"}) {
		t.Errorf("statuses %v", got)
	}
	st, _ := device.ReadSimState(w.root)
	if st.Reboot != nil {
		t.Error("the handler rebooted after a rejected bundle")
	}
}

// A failing health check: failed, with the check's words in the reason.
func TestFailedHealthCheck(t *testing.T) {
	w := newWorld(t)
	testutil.WriteScript(t, filepath.Join(w.root, "etc/tandem/hooks/health/check/50-app"), "echo 'app does not answer'\nexit 1\n")
	w.m.request("c8y-mapper-4", map[string]any{"name": "tandem-sim", "version": "2.0.0", "remoteUrl": w.srv.URL + "/v2.tandem"})
	w.runUntilReboot(t)
	w.reboot(t, "b")
	stop := w.start(t)
	w.m.await(t, "c8y-mapper-4", 10*time.Second, "verifying")
	w.healthCheck(t, health.RolledBack)
	stop() // the rollback reboots the device: the service goes down
	w.reboot(t, "a")
	stop = w.start(t)
	final := w.m.await(t, "c8y-mapper-4", 10*time.Second, "successful", "failed")
	stop()
	if reason, _ := final["reason"].(string); final["status"] != "failed" || !strings.Contains(reason, "app does not answer") {
		t.Fatalf("final %v", final)
	}
	w.m.mu.Lock()
	n := len(w.m.twin)
	w.m.mu.Unlock()
	if n != 0 {
		t.Error("a firmware twin was published for a failed update")
	}
}

// Commands tandem refuses get failed with a reason, and change nothing.
func TestRefused(t *testing.T) {
	w := newWorld(t)
	w.gate = make(chan struct{}) // keep the first command installing
	stop := w.start(t)
	w.m.request("busy-1", map[string]any{"name": "tandem-sim", "version": "2.0.0", "remoteUrl": w.srv.URL + "/v2.tandem"})
	w.m.await(t, "busy-1", 10*time.Second, "executing")
	w.m.request("busy-2", map[string]any{"name": "tandem-sim", "version": "2.0.0", "remoteUrl": w.srv.URL + "/v2.tandem"})
	if d := w.m.await(t, "busy-2", 10*time.Second, "failed"); !strings.Contains(d["reason"].(string), "busy-1") {
		t.Errorf("second command while one runs: %v", d)
	}
	w.m.request("no-url", map[string]any{"name": "x", "version": "1", "extra": []any{1, 2}})
	if d := w.m.await(t, "no-url", 10*time.Second, "failed"); !strings.Contains(d["reason"].(string), "remoteUrl") || d["extra"] == nil {
		t.Errorf("command without a URL: %v", d)
	}
	w.m.request("ftp", map[string]any{"remoteUrl": "ftp://example.com/x"})
	w.m.await(t, "ftp", 10*time.Second, "failed")
	tok := w.m.c.Publish(topics.Command("garbage"), 1, true, []byte("{not json"))
	tok.Wait()
	if d := w.m.await(t, "garbage", 10*time.Second, "failed"); !strings.Contains(d["reason"].(string), "bad firmware_update command") {
		t.Errorf("malformed command: %v", d)
	}
	close(w.gate)
	w.m.await(t, "busy-1", 30*time.Second, "restarting")
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// A group on trial, not committed: a new command is refused.
	w.reboot(t, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := drive(ctx, t, w.cfg, nil); err != nil { // busy-1 verifying: returns
		t.Fatal(err)
	}
	stop = w.start(t)
	w.m.request("during-trial", map[string]any{"remoteUrl": w.srv.URL + "/v2.tandem"})
	d := w.m.await(t, "during-trial", 10*time.Second, "failed")
	stop()
	if !strings.Contains(d["reason"].(string), "busy-1") {
		t.Errorf("command during the trial: %v", d)
	}
}

// From a URL whose server answers range requests, the handler installs by
// delta: what the device already holds is not downloaded.
func TestDelta(t *testing.T) {
	w := newWorldWith(t, true)
	w.m.request("c8y-mapper-5", map[string]any{"name": "tandem-sim", "version": "2.0.0", "remoteUrl": w.srv.URL + "/v2.tandem"})
	w.runUntilReboot(t)
	served := w.served.Load()
	t.Logf("bundle %d bytes, downloaded %d", w.size, served)
	if served <= 0 || served > w.size/10 {
		t.Fatalf("downloaded %d bytes of a %d-byte bundle whose every chunk the device holds", served, w.size)
	}
	w.reboot(t, "b")
	w.healthCheck(t, health.Committed)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := drive(ctx, t, w.cfg, nil); err != nil {
		t.Fatal(err)
	}
	if d := w.m.await(t, "c8y-mapper-5", 10*time.Second, "successful", "failed"); d["status"] != "successful" {
		t.Fatalf("final %v", d)
	}
}

// The handler died after arranging the trial and before rebooting: the next
// start publishes restarting and reboots.
func TestResumeBeforeReboot(t *testing.T) {
	w := newWorld(t)
	cmd := []byte(`{"status":"init","name":"tandem-sim","version":"2.0.0","remoteUrl":"` + w.srv.URL + `/v2.tandem","c8y":{"opId":"6"}}`)
	if _, err := w.cfg.Agent.Begin(fleet.Job{ID: "c8y-mapper-6", Source: w.srv.URL + "/v2.tandem", Extra: cmd}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.cfg.Agent.Install(context.Background(), install.Options{}, install.RebootSet); err != nil {
		t.Fatal(err)
	}
	w.runUntilReboot(t)
	d := w.m.await(t, "c8y-mapper-6", 10*time.Second, "restarting")
	if d["c8y"].(map[string]any)["opId"] != "6" || d["name"] != "tandem-sim" {
		t.Fatalf("restarting message lost the command's fields: %v", d)
	}
	w.reboot(t, "b")
}

// issue 11, hardening 3: a 20 KB retained command with 5,000-deep JSON in
// an unknown field became a 50 MB job file that the handler refused to read
// on every restart. It is refused (failed, with the reason) before a job is
// written, and the handler goes on with the next command, also after a
// restart.
func TestDeepCommand(t *testing.T) {
	w := newWorld(t)
	var x any = []any{}
	for range 5000 {
		x = []any{x}
	}
	w.m.request("deep-1", map[string]any{"name": "tandem-sim", "version": "2.0.0", "remoteUrl": w.srv.URL + "/v2.tandem", "x": x})
	stop := w.start(t)
	d := w.m.await(t, "deep-1", 10*time.Second, "successful", "failed")
	if reason, _ := d["reason"].(string); d["status"] != "failed" || !strings.Contains(reason, "32 deep") {
		t.Fatalf("a 5,000-deep command: %v", d["status"])
	}
	if _, err := os.Stat(filepath.Join(w.root, "var/lib/tandem/fleet/tedge.json")); !os.IsNotExist(err) {
		t.Errorf("a job file was kept for the refused command (%v)", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	stop = w.start(t) // a restart finds nothing it cannot read
	w.m.request("after-deep", map[string]any{"name": "tandem-sim", "version": "2.0.0", "remoteUrl": w.srv.URL + "/v2.tandem"})
	w.m.await(t, "after-deep", 20*time.Second, "restarting")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// issue 11, hardening 5: a command whose tedgeUrl is a local path (here a
// device node) is refused; nothing is opened.
func TestLocalPathRefused(t *testing.T) {
	w := newWorld(t)
	stop := w.start(t)
	defer stop()
	for id, u := range map[string]string{"shadow": "/etc/shadow", "zero": "/dev/zero", "file": "file:///etc/shadow"} {
		w.m.request(id, map[string]any{"tedgeUrl": u, "remoteUrl": w.srv.URL + "/v2.tandem"})
		d := w.m.await(t, id, 10*time.Second, "successful", "failed")
		if reason, _ := d["reason"].(string); d["status"] != "failed" || !strings.Contains(reason, "not an http(s) URL") || strings.Contains(reason, "root:") {
			t.Errorf("tedgeUrl %s: %v", u, d)
		}
	}
}

// issue 11, hardening 3: a job file the handler cannot read back (here cut
// short) stopped it at every start. The command it names is reported
// failed, the file is moved aside and the next command goes through.
func TestBadJobFile(t *testing.T) {
	w := newWorld(t)
	job := filepath.Join(w.root, "var/lib/tandem/fleet/tedge.json")
	if err := os.MkdirAll(filepath.Dir(job), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(job, []byte(`{"id":"c8y-cut","source":"https://example.com/v2.tandem","phase":"inst`), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := w.start(t)
	d := w.m.await(t, "c8y-cut", 10*time.Second, "successful", "failed")
	if reason, _ := d["reason"].(string); d["status"] != "failed" || !strings.Contains(reason, "lost its record") {
		t.Fatalf("the command of the unusable job: %v", d)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(job + ".bad"); err == nil {
			break // moved aside once the broker had the failed status
		}
		if time.Now().After(deadline) {
			t.Fatal("the unusable job file was not moved aside")
		}
	}
	w.m.request("after-bad", map[string]any{"name": "tandem-sim", "version": "2.0.0", "remoteUrl": w.srv.URL + "/v2.tandem"})
	w.m.await(t, "after-bad", 20*time.Second, "restarting")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
