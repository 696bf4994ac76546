package mender_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/fleet/mender"
	"github.com/tandem-ota/tandem/internal/health"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/sim"
)

// daemon plays the Mender client in daemon mode around the module, in the
// order the client's state machine calls the states (update module protocol
// v3): Download (with real stream-next and stream FIFOs), ArtifactInstall,
// NeedsArtifactReboot, ArtifactReboot; after the reboot ArtifactVerifyReboot,
// ArtifactCommit, Cleanup; on an error SupportsRollback, ArtifactRollback,
// ArtifactRollbackReboot, ArtifactVerifyRollbackReboot, ArtifactFailure,
// Cleanup. Its Report is what a Mender server would show: success, or
// failure with the deployment log (the module's output).
//
// The real client's daemon needs a Mender server, which Debian does not
// package; the standalone commands run the real client (mender_test.go).
// Each offer is a descriptor artifact, since only then can an interrupted
// download resume: after a restart in Download the client gives the attempt
// up (Cleanup) and a retry of the deployment downloads the artifact again.
type daemon struct {
	env    *fleettest.Env
	module *mender.Module

	fleettest.Mailbox
	cur *deployment // the client's store: the deployment in progress
}

type deployment struct {
	offer    fleettest.Offer
	state    string // download, rebooting, rollback-rebooting
	attempts int
	log      bytes.Buffer
}

func newDaemon(env *fleettest.Env) *daemon {
	d := &daemon{env: env}
	d.module = &mender.Module{
		Agent: &fleet.Agent{Open: env.Open, Adapter: mender.Adapter},
		// A failing check rolls back at once (the module's flag --health-deadline 0).
		Health: health.Options{Deadline: 0, Interval: 10 * time.Millisecond},
	}
	return d
}

// call runs one state; its output goes to the deployment log.
func (d *daemon) call(ctx context.Context, state, tree string) (string, error) {
	var out bytes.Buffer
	m := *d.module // one invocation of the module, as `tandem mender-module STATE TREE` runs it
	m.State, m.Tree, m.Stdout, m.Log = state, tree, &out, &d.cur.log
	_, err := fleet.Loop{Once: true, Log: slog.New(slog.DiscardHandler)}.Run(ctx, &m)
	fmt.Fprintf(&d.cur.log, "%s: exit %v\n", state, err)
	if err != nil {
		fmt.Fprintf(&d.cur.log, "tandem: %v\n", err)
	}
	return strings.TrimSpace(out.String()), err
}

func (d *daemon) finish(ctx context.Context, success bool) error {
	if _, err := d.call(ctx, "Cleanup", ""); err != nil {
		return err
	}
	d.Put(d.cur.offer.ID, fleettest.Report{Success: success, Detail: d.cur.log.String()})
	d.cur = nil
	return nil
}

func (d *daemon) Run(ctx context.Context, t *testing.T) error {
	if d.cur == nil {
		o, ok := d.Take()
		if !ok {
			return nil
		}
		d.cur = &deployment{offer: o, state: "download"}
	}
	switch d.cur.state {
	case "download":
		if d.cur.attempts > 0 {
			// Restarted in Download: the attempt is given up, the deployment retried.
			if _, err := d.call(ctx, "Cleanup", ""); err != nil {
				return err
			}
		}
		d.cur.attempts++
		err := d.download(ctx, t)
		if ctx.Err() != nil {
			return ctx.Err() // killed
		}
		if err != nil {
			return d.finish(ctx, false)
		}
		if _, err := d.call(ctx, "ArtifactInstall", ""); err != nil {
			return d.rollback(ctx)
		}
		if ans, err := d.call(ctx, "NeedsArtifactReboot", ""); err != nil || ans != "Yes" {
			return fmt.Errorf("NeedsArtifactReboot: %q, %v", ans, err)
		}
		d.cur.state = "rebooting"
		if _, err := d.call(ctx, "ArtifactReboot", ""); err != nil {
			return d.rollback(ctx)
		}
		return nil
	case "rebooting":
		if _, err := d.call(ctx, "ArtifactVerifyReboot", ""); err != nil {
			return d.rollback(ctx)
		}
		if _, err := d.call(ctx, "ArtifactCommit", ""); err != nil {
			return d.rollback(ctx)
		}
		return d.finish(ctx, true)
	case "rollback-rebooting":
		return d.afterRollback(ctx)
	}
	return fmt.Errorf("unknown state %q", d.cur.state)
}

func (d *daemon) rollback(ctx context.Context) error {
	if ans, err := d.call(ctx, "SupportsRollback", ""); err != nil || ans != "Yes" {
		return fmt.Errorf("SupportsRollback: %q, %v", ans, err)
	}
	if _, err := d.call(ctx, "ArtifactRollback", ""); err != nil {
		return d.fail(ctx)
	}
	d.cur.state = "rollback-rebooting"
	if _, err := d.call(ctx, "ArtifactRollbackReboot", ""); err != nil {
		return d.fail(ctx)
	}
	if st, err := device.ReadSimState(d.env.Root); err != nil || st.Reboot != nil {
		return err // the device reboots: the client goes on after the boot
	}
	return d.afterRollback(ctx)
}

func (d *daemon) afterRollback(ctx context.Context) error {
	if _, err := d.call(ctx, "ArtifactVerifyRollbackReboot", ""); err != nil {
		return err
	}
	return d.fail(ctx)
}

func (d *daemon) fail(ctx context.Context) error {
	if _, err := d.call(ctx, "ArtifactFailure", ""); err != nil {
		return err
	}
	return d.finish(ctx, false)
}

// download makes the module tree of a descriptor artifact for the offer
// and runs Download, feeding stream-next and the stream FIFO as the client
// does.
func (d *daemon) download(ctx context.Context, t *testing.T) error {
	o := d.cur.offer
	tree := t.TempDir()
	for _, dir := range []string{"header", "streams", "tmp"} {
		if err := os.Mkdir(filepath.Join(tree, dir), 0o700); err != nil {
			return err
		}
	}
	files := map[string]string{
		"version": "3", "current_artifact_name": "factory", "current_artifact_group": "", "current_device_type": "tandem-sim",
		"header/artifact_name": o.ID, "header/artifact_group": "", "header/payload_type": mender.PayloadType,
		"header/meta-data": "null",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(tree, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	const stream = "streams/v2.json"
	for _, f := range []string{"stream-next", stream} {
		if err := syscall.Mkfifo(filepath.Join(tree, f), 0o600); err != nil {
			return err
		}
	}
	desc := fmt.Sprintf(`{"url": %q, "bundleHash": %q, "version": %q}`, o.URL, o.BundleHash, o.Version)
	fed := make(chan error, 1)
	go func() {
		fed <- feed(tree, []string{stream + "\n", desc, ""})
	}()
	_, err := d.call(ctx, "Download", tree)
	// Unblock the feeder when the module stopped reading early.
	for {
		select {
		case ferr := <-fed:
			if err == nil && ferr != nil {
				err = fmt.Errorf("feeding the streams: %w", ferr)
			}
			return err
		case <-time.After(10 * time.Millisecond):
			for _, f := range []string{"stream-next", stream} {
				if fd, oerr := syscall.Open(filepath.Join(tree, f), syscall.O_RDONLY|syscall.O_NONBLOCK, 0); oerr == nil {
					syscall.Close(fd)
				}
			}
		}
	}
}

// feed writes the stream name, the stream, then the empty name.
func feed(tree string, parts []string) error {
	for i, p := range parts {
		name := "stream-next"
		if i == 1 {
			name = strings.TrimSpace(parts[0])
		}
		f, err := os.OpenFile(filepath.Join(tree, name), os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(p)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil && !errors.Is(err, syscall.EPIPE) {
			return err
		}
	}
	return nil
}

func TestConformance(t *testing.T) {
	fleettest.Run(t, func(t *testing.T, env *fleettest.Env) fleettest.Harness { return newDaemon(env) })
}

// TestPowerCutInArtifactInstall cuts the power at every write, fsync and
// rename of ArtifactInstall (the step that arranges the trial), boots the
// device again and plays what the client does after a spontaneous reboot
// in that state: ArtifactRollback, ArtifactRollbackReboot,
// ArtifactVerifyRollbackReboot, ArtifactFailure, Cleanup. Whatever booted,
// the device must end in its committed group with no trial and no job.
func TestPowerCutInArtifactInstall(t *testing.T) {
	tmp := t.TempDir()
	key, _ := keys(t, tmp)
	imgPath, _ := image(t, tmp, "v2.img", 300<<10)
	www := t.TempDir()
	_, hash := makeBundle(t, www, "v2.tandem", "2.0.0", imgPath, key)
	srv := httptest.NewServer(http.FileServer(http.Dir(www)))
	defer srv.Close()
	offer := fleettest.Offer{ID: "release-2", URL: srv.URL + "/v2.tandem", BundleHash: hash, Version: "2.0.0"}

	cuts := 0
	for n := 1; ; n++ {
		root := newDevice(t, key)
		env := &fleettest.Env{Root: root, Open: func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }}
		d := newDaemon(env)
		d.cur = &deployment{offer: offer, state: "download"}
		ctx := context.Background()
		if err := d.download(ctx, t); err != nil {
			t.Fatalf("download: %v\n%s", err, d.cur.log.String())
		}
		d.module.Agent.Open = func() (*device.Device, error) { return device.Open(device.Options{Root: root, CutAt: n}) }
		_, err := d.call(ctx, "ArtifactInstall", "")
		d.module.Agent.Open = env.Open
		if !errors.Is(err, rootfs.ErrPowerCut) {
			if err != nil {
				t.Fatalf("cut %d: ArtifactInstall: %v", n, err)
			}
			break // every cut point was tried
		}
		cuts++
		booted, _, err := sim.Reboot(root, false)
		if err != nil {
			t.Fatalf("cut %d: boot: %v", n, err)
		}
		if err := d.rollback(ctx); err != nil {
			t.Fatalf("cut %d (booted %s): rollback: %v\n%s", n, booted, err, d.cur.log.String())
		}
		if d.cur != nil && d.cur.state == "rollback-rebooting" {
			if _, _, err := sim.Reboot(root, false); err != nil {
				t.Fatal(err)
			}
			if err := d.Run(ctx, t); err != nil {
				t.Fatalf("cut %d: after the rollback reboot: %v\n%s", n, err, d.cur.log.String())
			}
		}
		if r, ok := d.Report(t, offer.ID); !ok || r.Success {
			t.Fatalf("cut %d (booted %s): report %+v %v, want a failure", n, booted, r, ok)
		}
		checkBoot(t, root, boot{Active: "a", Default: "a"})
		checkNoJob(t, root)
	}
	if cuts == 0 {
		t.Fatal("ArtifactInstall reached no cut point")
	}
	t.Logf("%d cut points in ArtifactInstall", cuts)
}
