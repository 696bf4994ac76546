package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/state"
)

// fixture is a simulated device with a running server, a signed bundle of
// version 2.0.0 and bundles it must refuse.
type fixture struct {
	root     string
	open     func() (*device.Device, error)
	client   *Client
	socket   string
	web      net.Addr
	good     []byte // signed by the trusted key, 2.0.0
	untrust  []byte // signed by another key
	tampered []byte // good with one byte of chunk data flipped
	stop     func()
}

const imageSize = 1 << 20

var (
	keysOnce sync.Once
	keyDir   string
	trusted  crypto.Signer
	other    crypto.Signer
	pubFile  string
)

func newFixture(t *testing.T, o ServeOptions, stateFiles ...string) *fixture {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if keyDir, err = os.MkdirTemp("", "tandem-api-keys"); err != nil {
			t.Fatal(err)
		}
		trusted, pubFile = fleettest.NewKey(t, keyDir, "release")
		other, _ = fleettest.NewKey(t, keyDir, "other")
	})
	fx := &fixture{root: filepath.Join(t.TempDir(), "dev")}
	fx.open = fleettest.NewDevice(t, fx.root, sim.Options{BootFlow: "grub", Trust: []string{pubFile}, SlotSize: 2 << 20, FactoryVersion: "1.0.0", State: stateFiles})
	img := fleettest.Image(imageSize, "api")
	hdr := bundle.Header{Name: "api test", Version: "2.0.0", Created: time.Now().Unix()}
	fx.good, _ = fleettest.SignedBundle(t, hdr, img, trusted)
	fx.untrust, _ = fleettest.SignedBundle(t, hdr, img, other)
	fx.tampered = bytes.Clone(fx.good)
	fx.tampered[len(fx.tampered)-100] ^= 0xff
	o.Root, o.Local, o.Log = fx.root, Local{Open: fx.open}, testLog{t}
	ready := make(chan struct{})
	o.Listening = func(s, w net.Addr) { fx.socket, fx.web = s.String(), w; close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, o) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	fx.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(func() {
		if fx.stop != nil {
			fx.stop()
			fx.stop = nil
		}
	})
	fx.client = NewClient(fx.socket)
	return fx
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// bootConfig is the boot configuration of the simulated grub device (every
// file of its boot directory): what no failed install may change.
func (fx *fixture) bootConfig(t *testing.T) []byte {
	t.Helper()
	d, err := fx.open()
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	err = filepath.WalkDir(filepath.Join(fx.root, d.Config.BootFlow.BootDir), func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		fmt.Fprintf(&all, "%s\n%s\n", p, b)
		return err
	})
	if err != nil || all.Len() == 0 {
		t.Fatalf("boot configuration: %v", err)
	}
	return all.Bytes()
}

func (fx *fixture) info(t *testing.T) *device.Info {
	t.Helper()
	info, err := fx.client.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// raw sends one request to the socket and returns the status and body.
func (fx *fixture) raw(t *testing.T, method, path, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://tandem"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := fx.client.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitRunning waits until the server runs an operation.
func (fx *fixture) waitRunning(t *testing.T) Operation {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var r struct{ Running *Operation }
		if err := fx.client.do(context.Background(), http.MethodGet, "/operation", nil, "", &r); err != nil {
			t.Fatal(err)
		}
		if r.Running != nil {
			return *r.Running
		}
	}
	t.Fatal("no operation started")
	return Operation{}
}

// waitIdle waits until no operation runs and returns the last outcome.
func (fx *fixture) waitIdle(t *testing.T) *Outcome {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var r struct{ Running *Operation }
		if err := fx.client.do(context.Background(), http.MethodGet, "/operation", nil, "", &r); err != nil {
			t.Fatal(err)
		}
		if r.Running == nil {
			l, err := fx.client.Last(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return l.Operation
		}
	}
	t.Fatal("the operation did not end")
	return nil
}

func wantKind(t *testing.T, err error, kind string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Kind != kind {
		t.Fatalf("error %v (%T), want kind %s", err, err, kind)
	}
	if strings.Contains(e.Message, "\n") || e.Message == "" {
		t.Errorf("message %q is not one line", e.Message)
	}
	return e
}

// The whole cycle through the socket: upload with progress to 100 %, reboot
// into the trial, commit, the new version; the event stream and the last
// outcome tell the same story.
func TestUploadCycle(t *testing.T) {
	fx := newFixture(t, ServeOptions{})
	ctx := context.Background()

	// A second client watches the stream as the page does.
	stream := make(chan install.Event, 1024)
	req, _ := http.NewRequest(http.MethodGet, "http://tandem/v1/events", nil)
	resp, err := fx.client.http.Do(req)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %v %v", resp, err)
	}
	go func() {
		defer resp.Body.Close()
		_ = ReadEvents(resp.Body, func(e install.Event) bool { stream <- e; return e.Event == "progress" })
		close(stream)
	}()

	var seen []install.Event
	res, err := fx.client.Install(ctx, InstallRequest{Options: install.Options{Source: "-", Stdin: bytes.NewReader(fx.good)}},
		func(e install.Event) { seen = append(seen, e) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != "2.0.0" || res.Group != "b" || res.BytesWritten != imageSize {
		t.Errorf("result %+v", res)
	}
	if len(seen) == 0 || seen[len(seen)-1].Bytes != imageSize || seen[len(seen)-1].Total != imageSize {
		t.Fatalf("progress events %+v: want the last at 100 %%", seen)
	}
	var events []install.Event
	for e := range stream {
		events = append(events, e)
	}
	if n := len(events); n < 2 || events[n-1].Event != "done" || events[n-1].Version != "2.0.0" || events[n-2].Bytes != imageSize {
		t.Fatalf("event stream %+v: want progress to 100 %% then done", events)
	}

	if info := fx.info(t); info.Boot.Groups["b"].Version != "2.0.0" || info.Boot.Trial != nil {
		t.Fatalf("after install: %+v", info.Boot)
	}
	rb, err := fx.client.Reboot(ctx, RebootRequest{Spare: true})
	if err != nil || rb.Trial != "b" || !rb.Simulated {
		t.Fatalf("reboot --spare: %+v %v", rb, err)
	}
	if g, _, err := sim.Reboot(fx.root, false); err != nil || g != "b" {
		t.Fatalf("sim reboot: %s %v", g, err)
	}
	if info := fx.info(t); info.Boot.ActiveGroup != "b" || !info.Boot.CommitPending {
		t.Fatalf("on trial: %+v", info.Boot)
	}
	c, err := fx.client.Commit(ctx, CommitRequest{})
	if err != nil || !c.Changed || c.Default != "b" {
		t.Fatalf("commit: %+v %v", c, err)
	}
	if c, err := fx.client.Commit(ctx, CommitRequest{}); err != nil || c.Changed {
		t.Fatalf("second commit: %+v %v", c, err)
	}
	info := fx.info(t)
	if info.Boot.DefaultGroup != "b" || info.Boot.Groups["b"].Version != "2.0.0" {
		t.Fatalf("committed: %+v", info.Boot)
	}
	l, err := fx.client.Last(ctx)
	if err != nil || l.Operation == nil || l.Operation.Name != "commit" || l.Operation.Status != "ok" || l.LastUpdate == nil || l.LastUpdate.Status != "committed" {
		t.Fatalf("last: %+v %v", l, err)
	}
	if !strings.HasPrefix(l.Operation.Caller, "uid 0 ") && !strings.HasPrefix(l.Operation.Caller, fmt.Sprintf("uid %d ", os.Getuid())) {
		t.Errorf("caller %q", l.Operation.Caller)
	}

	// The outcome survives a restart of the server.
	fx.stop()
	fx.stop = nil
	fx2 := NewServer(Local{Open: fx.open}, nil)
	if fx2.last == nil || fx2.last.Name != "commit" {
		t.Errorf("after a restart the last outcome is %+v", fx2.last)
	}
}

// Install from a URL: the server fetches it (the JSON body's url).
func TestInstallURL(t *testing.T) {
	fx := newFixture(t, ServeOptions{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "v2.tandem", time.Time{}, bytes.NewReader(fx.good))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	res, err := fx.client.Install(context.Background(), InstallRequest{Options: install.Options{Source: "http://" + ln.Addr().String() + "/v2.tandem"}, Reboot: install.RebootSet}, nil)
	if err != nil || res.Version != "2.0.0" || res.Transfer.Requests == 0 {
		t.Fatalf("install from a URL: %+v %v", res, err)
	}
	if info := fx.info(t); info.Boot.Trial == nil || info.Boot.Trial.Group != "b" {
		t.Fatalf("reboot=set: %+v", info.Boot)
	}
	if l := fx.waitIdle(t); !strings.HasPrefix(l.Source, "http://127.0.0.1:") {
		t.Errorf("last source %q", l.Source)
	}
}

// Unsigned by a trusted key, tampered or truncated: a clear error, the
// boot configuration untouched, the device free again.
func TestRejectedBundles(t *testing.T) {
	fx := newFixture(t, ServeOptions{})
	before := fx.bootConfig(t)
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"untrusted", fx.untrust, "signature"},
		{"tampered", fx.tampered, "chunk"},
		{"truncated", fx.good[:len(fx.good)/2], "truncated"},
		{"trailing", append(bytes.Clone(fx.good), 0), "after the end"},
		{"empty", nil, "bundle"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := fx.client.Install(context.Background(), InstallRequest{Options: install.Options{Source: "-", Stdin: bytes.NewReader(c.b)}, Reboot: install.RebootYes}, nil)
			e := wantKind(t, err, KindBundle)
			if e.Status != http.StatusUnprocessableEntity || !strings.Contains(e.Message, c.want) {
				t.Errorf("status %d, message %q: want 422 naming %q", e.Status, e.Message, c.want)
			}
			if !errors.Is(err, bundle.ErrVerify) {
				t.Errorf("%v does not unwrap to the bundle class", err)
			}
			if l := fx.waitIdle(t); l.Status != "failed" || l.Kind != KindBundle {
				t.Errorf("last outcome %+v", l)
			}
		})
	}
	if after := fx.bootConfig(t); !bytes.Equal(before, after) {
		t.Errorf("the boot configuration changed:\n%s\n%s", before, after)
	}
	if sim, _ := device.ReadSimState(fx.root); sim.Reboot != nil {
		t.Errorf("a reboot was requested: %+v", sim.Reboot)
	}
	if _, err := fx.client.Install(context.Background(), InstallRequest{Options: install.Options{Source: "-", Stdin: bytes.NewReader(fx.good)}}, nil); err != nil {
		t.Fatalf("the device is not free after the failures: %v", err)
	}
}

// slowUpload starts an upload that sends half the bundle and then waits;
// it returns a function that sends the rest (or, with cut, breaks the
// connection) and the install's error.
func (fx *fixture) slowUpload(t *testing.T) (finish func(cut bool), result <-chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := fx.client.Install(context.Background(), InstallRequest{Options: install.Options{Source: "-", Stdin: pr}}, nil)
		errc <- err
	}()
	half := len(fx.good) / 2
	if _, err := pw.Write(fx.good[:half]); err != nil {
		t.Fatal(err)
	}
	return func(cut bool) {
		if cut {
			pw.CloseWithError(errors.New("cut"))
			return
		}
		_, _ = pw.Write(fx.good[half:])
		pw.Close()
	}, errc
}

// One operation at a time: a second install, a commit and a reboot get a
// "busy" answer naming the install that runs; afterwards the device is free.
func TestBusy(t *testing.T) {
	fx := newFixture(t, ServeOptions{})
	finish, result := fx.slowUpload(t)
	op := fx.waitRunning(t)
	if op.Name != "install" || op.Source != "upload" {
		t.Fatalf("running %+v", op)
	}
	_, err := fx.client.Install(context.Background(), InstallRequest{Options: install.Options{Source: "-", Stdin: bytes.NewReader(fx.good)}}, nil)
	e := wantKind(t, err, KindBusy)
	if e.Status != http.StatusConflict || e.Busy == nil || e.Busy.Name != "install" || !strings.Contains(e.Message, "install from upload") {
		t.Errorf("busy answer %+v", e)
	}
	if !errors.Is(err, device.ErrRefused) {
		t.Errorf("busy is not ErrRefused (the CLI's exit 4): %v", err)
	}
	_, err = fx.client.Commit(context.Background(), CommitRequest{})
	wantKind(t, err, KindBusy)
	_, err = fx.client.Reboot(context.Background(), RebootRequest{Spare: true})
	wantKind(t, err, KindBusy)
	// A CLI in process meets the device lock.
	if _, err := (Local{Open: fx.open}).Commit(context.Background(), CommitRequest{}); !errors.Is(err, device.ErrRefused) {
		t.Errorf("a local commit during the install: %v, want refused by the lock", err)
	}
	finish(false)
	if err := <-result; err != nil {
		t.Fatalf("the first install: %v", err)
	}
	if _, err := fx.client.Reboot(context.Background(), RebootRequest{Spare: true}); err != nil {
		t.Fatalf("reboot after the install: %v", err)
	}
}

// A client that sends its whole upload before it reads (curl, simple
// scripts) gets the server's reason for a refused bundle, not a broken
// pipe: the server reads the rest before it answers and closes.
func TestRefusedUploadAnswered(t *testing.T) {
	fx := newFixture(t, ServeOptions{})
	body := append(bytes.Clone(fx.untrust), make([]byte, 16<<20)...) // far more than a socket buffers
	c, err := net.Dial("unix", fx.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "POST /v1/install HTTP/1.1\r\nHost: tandem\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", len(body)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(body); err != nil {
		t.Fatalf("sending the upload: %v (the server closed before it answered)", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(b), "signature") {
		t.Errorf("answer %d %s, want 422 naming the signature", resp.StatusCode, b)
	}
}

// A client that goes away mid-upload, or a cancel: the install fails with
// a clear error, nothing reaches the boot configuration, the group is
// marked incomplete, and the device is free for the next install.
func TestInterruptedUploads(t *testing.T) {
	for _, how := range []string{"disconnect", "cancel", "short-body"} {
		t.Run(how, func(t *testing.T) {
			fx := newFixture(t, ServeOptions{})
			before := fx.bootConfig(t)
			switch how {
			case "disconnect", "cancel":
				finish, result := fx.slowUpload(t)
				fx.waitRunning(t)
				if how == "cancel" {
					if code, body := fx.raw(t, http.MethodPost, "/v1/cancel", "", nil); code != http.StatusAccepted {
						t.Fatalf("cancel: %d %s", code, body)
					}
					e := wantKind(t, <-result, KindCancelled)
					if !strings.Contains(e.Message, "cancelled") {
						t.Errorf("message %q", e.Message)
					}
					finish(true)
				} else {
					finish(true)
					<-result
				}
			case "short-body":
				// Content-Length promises the whole bundle; half arrives, then the connection closes.
				c, err := net.Dial("unix", fx.socket)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(c, "POST /v1/install HTTP/1.1\r\nHost: tandem\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", len(fx.good))
				c.Write(fx.good[:len(fx.good)/2])
				fx.waitRunning(t)
				c.Close()
			}
			l := fx.waitIdle(t)
			if l.Status == "ok" || l.Error == "" || strings.Contains(l.Error, "\n") {
				t.Fatalf("last outcome %+v: want a failure in one line", l)
			}
			if how == "cancel" && l.Status != "cancelled" {
				t.Errorf("status %q, want cancelled", l.Status)
			}
			if after := fx.bootConfig(t); !bytes.Equal(before, after) {
				t.Errorf("the boot configuration changed")
			}
			info := fx.info(t)
			if info.Boot.Groups["b"].Incomplete == nil || info.Boot.Trial != nil || info.Boot.DefaultGroup != "a" {
				t.Errorf("after the interrupted install: %+v", info.Boot)
			}
			if _, err := fx.client.Reboot(context.Background(), RebootRequest{Spare: true}); !errors.Is(err, device.ErrIncomplete) && !errors.Is(err, device.ErrRefused) {
				t.Errorf("trying the incomplete group: %v, want refused", err)
			}
			if _, err := fx.client.Install(context.Background(), InstallRequest{Options: install.Options{Source: "-", Stdin: bytes.NewReader(fx.good)}}, nil); err != nil {
				t.Fatalf("the lock was not released: %v", err)
			}
		})
	}
}

// Bad requests to every endpoint: a clear error of the right kind, and the
// server unharmed.
func TestBadRequests(t *testing.T) {
	fx := newFixture(t, ServeOptions{})
	missing := httptest.NewServer(http.NotFoundHandler())
	defer missing.Close()
	big := strings.Repeat("x", MaxJSON+1)
	for _, c := range []struct {
		method, path, ctype, body string
		status                    int
		kind                      string
	}{
		{"GET", "/v1/nothing", "", "", 404, KindNotFound},
		{"GET", "/v2/info", "", "", 404, KindNotFound},
		{"POST", "/v1/info", "", "", 405, KindMethod},
		{"GET", "/v1/install", "", "", 405, KindMethod},
		{"DELETE", "/v1/commit", "", "", 405, KindMethod},
		{"POST", "/v1/commit", "application/json", "{", 400, KindUsage},
		{"POST", "/v1/commit", "application/json", `{"bogus":1}`, 400, KindUsage},
		{"POST", "/v1/commit", "application/json", `{} {}`, 400, KindUsage},
		{"POST", "/v1/commit", "text/plain", `{}`, 400, KindUsage},
		{"POST", "/v1/commit", "application/json", `{"forceIncomplete":"` + big + `"}`, 413, KindTooLarge},
		{"POST", "/v1/reboot", "application/json", `{"spare":"yes"}`, 400, KindUsage},
		{"POST", "/v1/mark-bad", "application/json", `{"reason":` + `"` + big + `"}`, 413, KindTooLarge},
		{"POST", "/v1/mark-bad", "application/json", `{}`, 409, KindRefused}, // no trial
		{"POST", "/v1/state-reset", "application/json", `{"backup":1}`, 400, KindUsage},
		{"POST", "/v1/state-reset", "application/json", `{}`, 500, KindConfig}, // no data partition configured
		{"POST", "/v1/cancel", "", "", 409, KindRefused},                       // nothing runs
		{"POST", "/v1/install", "application/json", `{"url":"file:///etc/passwd"}`, 400, KindUsage},
		{"POST", "/v1/install", "application/json", `{"url":"http://x/` + strings.Repeat("a", 5000) + `"}`, 400, KindUsage},
		{"POST", "/v1/install", "application/json", `{"url":"http://127.0.0.1:1/b","reboot":"maybe"}`, 400, KindUsage},
		{"POST", "/v1/install", "application/json", `{"url":"` + missing.URL + `/b","insecureSkipVerification":true,"trust":["/x"]}`, 500, KindFailure}, // root may; the fetch fails
		{"POST", "/v1/install?bogus=1", "application/octet-stream", "", 400, KindUsage},
		{"POST", "/v1/install?reboot=yes&reboot=no", "application/octet-stream", "", 400, KindUsage},
		{"POST", "/v1/install?allowDowngrade=perhaps", "application/octet-stream", "", 400, KindUsage},
		{"POST", "/v1/install?" + strings.Repeat("trust=a&", 17), "application/octet-stream", "", 400, KindUsage},
	} {
		code, body := fx.raw(t, c.method, c.path, c.ctype, strings.NewReader(c.body))
		var e Error
		if err := json.Unmarshal(body, &e); err != nil || code != c.status || e.Kind != c.kind || e.Message == "" {
			t.Errorf("%s %s %.40q: %d %s, want %d kind %s", c.method, c.path, c.body, code, body, c.status, c.kind)
		}
	}
	// Headers beyond the limit are refused before any handler runs.
	req, _ := http.NewRequest("GET", "http://tandem/v1/info", nil)
	req.Header.Set("X-Big", strings.Repeat("y", 64<<10))
	if resp, err := fx.client.http.Do(req); err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized headers: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if info := fx.info(t); info.Boot.ActiveGroup != "a" {
		t.Errorf("after bad requests: %+v", info.Boot)
	}
}

// A second server refuses to take over a socket a server answers on; a
// stale socket file (no server) is replaced.
func TestSocketTakeover(t *testing.T) {
	fx := newFixture(t, ServeOptions{})
	err := Serve(context.Background(), ServeOptions{Root: fx.root, Local: Local{Open: fx.open}, Log: testLog{t}})
	if err == nil || !strings.Contains(err.Error(), "another server answers") {
		t.Fatalf("second server: %v", err)
	}
	fx.stop()
	fx.stop = nil
	if _, err := os.Stat(fx.socket); !os.IsNotExist(err) {
		t.Fatalf("the socket outlived its server: %v", err)
	}
	// A stale socket: bound, never served.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: fx.socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ServeOptions{Root: fx.root, Local: Local{Open: fx.open}, Log: testLog{t},
			Listening: func(net.Addr, net.Addr) { cancel() }})
	}()
	if err := <-done; err != nil {
		t.Fatalf("serve over a stale socket: %v", err)
	}
}

// Connect picks the server while one answers, else the device in process.
func TestConnect(t *testing.T) {
	fx := newFixture(t, ServeOptions{})
	l := Local{Open: fx.open}
	if _, ok := Connect(fx.root, l).(*Client); !ok {
		t.Fatal("Connect did not find the running server")
	}
	fx.stop()
	fx.stop = nil
	if _, ok := Connect(fx.root, l).(Local); !ok {
		t.Fatal("Connect did not fall back to the device in process")
	}
}

// Mark-bad gives up a trial (the next boot returns to the default, a commit
// is refused meanwhile); state-reset asks for the factory reset.
func TestMarkBadAndReset(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "10-app.toml")
	if err := os.WriteFile(cfg, []byte("[data-partition]\nlabel = \"data\"\n\n[persist.\"/var/lib/app\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fx := newFixture(t, ServeOptions{}, cfg)
	ctx := context.Background()
	if _, err := fx.client.Install(ctx, InstallRequest{Options: install.Options{Source: "-", Stdin: bytes.NewReader(fx.good)}, Reboot: install.RebootSet}, nil); err != nil {
		t.Fatal(err)
	}
	if g, _, err := sim.Reboot(fx.root, false); err != nil || g != "b" {
		t.Fatalf("sim reboot: %s %v", g, err)
	}
	// The meaning of `tandem boot mark-bad`: the default group is refused.
	wantKind(t, fx.client.MarkBad(ctx, MarkBadRequest{Group: "a"}), KindRefused)
	if err := fx.client.MarkBad(ctx, MarkBadRequest{Reason: "the app failed its self-test"}); err != nil {
		t.Fatal(err)
	}
	info := fx.info(t)
	if lu := info.LastUpdate; lu == nil || lu.Status != "rolled-back" || lu.Message != "the app failed its self-test" {
		t.Fatalf("last update after mark-bad: %+v", lu)
	}
	_, err := fx.client.Commit(ctx, CommitRequest{})
	wantKind(t, err, KindRefused)
	if g, _, err := sim.Reboot(fx.root, false); err != nil || g != "a" {
		t.Fatalf("after mark-bad the device booted %s (%v), want a", g, err)
	}
	if err := fx.client.ResetState(ctx, ResetRequest{Reboot: true, Backup: true}); err != nil {
		t.Fatal(err)
	}
	if st, _ := device.ReadSimState(fx.root); st.Reboot == nil {
		t.Error("state-reset with reboot did not reboot")
	}
	if rep, err := state.Inspect(rootfs.NewOS(fx.root), "/var/lib/tandem", "a"); err != nil || rep.ResetPending == nil || !rep.ResetPending.KeepBackup {
		t.Errorf("reset not pending with a backup: %+v %v", rep, err)
	}
	if l := fx.waitIdle(t); l.Name != "state-reset" {
		t.Errorf("last operation %+v", l)
	}
}
