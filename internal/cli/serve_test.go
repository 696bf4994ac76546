package cli

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tandem-ota/tandem/internal/api"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/install"
)

// While `tandem serve` runs, update install, system reboot and system
// commit go through it: a CLI install shows up in the server's event stream
// and last outcome; exit codes stay those of the commands in process.
func TestCommandsThroughServer(t *testing.T) {
	dir, image := bundleFixture(t)
	bundle := filepath.Join(dir, "v2.tandem")
	createBundle(t, nil, bundle, image, "--key", filepath.Join(dir, "release.key"))
	dev := newSim(t, "grub", "--trust", filepath.Join(dir, "release.pub"), "--slot-size", "1M")
	sock := filepath.Join(dev, api.SocketPath)
	serve := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		ready := make(chan struct{})
		local := api.Local{Open: func() (*device.Device, error) { return device.Open(device.Options{Root: dev}) }}
		go func() {
			done <- api.Serve(ctx, api.ServeOptions{Root: dev, Local: local, Log: io.Discard, Listening: func(net.Addr, net.Addr) { close(ready) }})
		}()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("serve: %v", err)
		}
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	}
	stop := serve()
	defer func() { stop() }()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := client.Get("http://tandem/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan install.Event, 1000)
	go func() {
		defer resp.Body.Close()
		_ = api.ReadEvents(resp.Body, func(e install.Event) bool { events <- e; return e.Event == "progress" })
		close(events)
	}()

	r := run(t, nil, "--root", dev, "update", "install", bundle, "--json")
	if r.code != 0 || !strings.Contains(lastLine(r.stdout), `"event":"done"`) || !strings.Contains(r.stdout, `"event":"progress"`) {
		t.Fatalf("install through the server: %+v", r)
	}
	var seen []install.Event
	for e := range events {
		seen = append(seen, e)
	}
	if n := len(seen); n < 2 || seen[n-1].Event != "done" || seen[n-1].Version != "2.0.0" {
		t.Fatalf("the server's stream did not show the CLI's install: %+v", seen)
	}
	if r := run(t, nil, "--root", dev, "update", "install", bundle+".missing"); r.code == 0 {
		t.Fatalf("a missing file: %+v", r)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := run(t, nil, "--root", dev, "update", "install", fifo); r.code == 0 || !strings.Contains(r.stderr, "not a regular file") {
		t.Fatalf("a FIFO: %+v", r)
	}
	if r := run(t, nil, "--root", dev, "system", "commit"); r.code != 0 || !strings.Contains(r.stdout, "nothing to commit: group a") {
		t.Fatalf("commit: %+v", r)
	}
	if r := run(t, nil, "--root", dev, "system", "reboot", "--spare"); r.code != 0 || !strings.Contains(r.stdout, "group b boots on trial") || !strings.Contains(r.stdout, "reboot recorded") {
		t.Fatalf("reboot --spare: %+v", r)
	}
	stop() // a reboot ends the server (and empties /run); it starts again after it
	if r := run(t, nil, "sim", "reboot", dev); lastLine(r.stdout) != "b" {
		t.Fatalf("sim reboot: %+v", r)
	}
	stop = serve()
	if r := run(t, nil, "--root", dev, "system", "reboot", "--spare"); r.code != ExitRefused {
		t.Fatalf("reboot --spare during a trial: %+v, want exit %d", r, ExitRefused)
	}
	if r := run(t, nil, "--root", dev, "system", "commit"); r.code != 0 || !strings.Contains(r.stdout, "group b is now the default") {
		t.Fatalf("commit: %+v", r)
	}
	resp, err = client.Get("http://tandem/v1/last")
	if err != nil {
		t.Fatal(err)
	}
	var last api.Last
	err = json.NewDecoder(resp.Body).Decode(&last)
	resp.Body.Close()
	if err != nil || last.Operation == nil || last.Operation.Name != "commit" || last.LastUpdate.Status != "committed" {
		t.Fatalf("last: %+v %v", last, err)
	}
	if last.Operation.Caller == "" || !strings.HasPrefix(last.Operation.Caller, "uid ") {
		t.Errorf("caller %q", last.Operation.Caller)
	}
	// `tandem serve` refuses a second server; its usage is checked.
	if r := run(t, nil, "--root", dev, "serve"); r.code != ExitFailure || !strings.Contains(r.stderr, "another server answers") {
		t.Fatalf("second server: %+v", r)
	}
	if r := run(t, nil, "--root", dev, "serve", "--listen", "127.0.0.1:0"); r.code != ExitUsage {
		t.Fatalf("--listen without TLS: %+v", r)
	}
	if r := run(t, map[string]string{}, "--root", dev, "serve", "password"); r.code == 0 {
		t.Fatalf("empty password: %+v", r)
	}
}
