package fleet_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/sim"
)

// TestInstallPowerCuts cuts the power at every cut point of an adapter's
// install-and-try, boots the device again and checks that the job and the
// boot state agree: the device never runs a trial its job does not know
// of, and the adapter can always go on to a final outcome.
func TestInstallPowerCuts(t *testing.T) {
	dir := t.TempDir()
	key, pubFile := fleettest.NewKey(t, dir, "release")
	b, _ := fleettest.SignedBundle(t, bundle.Header{Version: "2.0.0", Created: time.Now().Unix()},
		bytes.Repeat([]byte("tandem fleet power cut "), 20000), key)
	bundlePath := filepath.Join(dir, "v2.tandem")
	if err := os.WriteFile(bundlePath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	for cut := 1; ; cut++ {
		root := filepath.Join(dir, fmt.Sprintf("dev%d", cut))
		if err := sim.New(root, sim.Options{BootFlow: "grub", FactoryVersion: "1.0.0", Trust: []string{pubFile}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := sim.Reboot(root, false); err != nil {
			t.Fatal(err)
		}
		plain := &fleet.Agent{Adapter: "cut", Open: func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }}
		if _, err := plain.Begin(fleet.Job{ID: "j", Source: bundlePath}); err != nil {
			t.Fatal(err)
		}
		cutting := &fleet.Agent{Adapter: "cut", Open: func() (*device.Device, error) {
			return device.Open(device.Options{Root: root, CutAt: cut, CutMode: rootfs.CutDrop})
		}}
		_, err := cutting.Install(context.Background(), install.Options{}, install.RebootSet)
		if err == nil {
			if cut < 10 {
				t.Fatalf("only %d cut points", cut-1)
			}
			t.Logf("%d cut points", cut-1)
			return
		}
		if !errors.Is(err, rootfs.ErrPowerCut) {
			t.Fatalf("cut %d: %v", cut, err)
		}
		group, notes, err := sim.Reboot(root, false)
		if err != nil {
			t.Fatalf("cut %d: boot: %v %q", cut, err, notes)
		}
		out, err := plain.Outcome()
		if err != nil {
			t.Fatalf("cut %d: outcome: %v", cut, err)
		}
		switch {
		case group == "b" && out.State != fleet.Verifying:
			t.Fatalf("cut %d: the device runs b on trial but the job is %s", cut, out.State)
		case group == "a" && out.State == fleet.Verifying:
			t.Fatalf("cut %d: the job verifies a trial that does not run", cut)
		}
		// The adapter carries on to a final outcome.
		for range 4 {
			switch out.State {
			case fleet.Installing, fleet.Installed:
				if out.State == fleet.Installing {
					_, err = plain.Install(context.Background(), install.Options{}, install.RebootSet)
				} else {
					err = plain.Try()
				}
				if err != nil {
					t.Fatalf("cut %d: resume from %s: %v", cut, out.State, err)
				}
				if _, _, err := sim.Reboot(root, false); err != nil {
					t.Fatal(err)
				}
			case fleet.Verifying:
				d, err := plain.Open()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := d.Commit(); err != nil {
					t.Fatalf("cut %d: commit: %v", cut, err)
				}
			}
			if out, err = plain.Outcome(); err != nil {
				t.Fatal(err)
			}
			if out.Final() {
				break
			}
		}
		if !out.Final() {
			t.Fatalf("cut %d: no final outcome: %s", cut, out.State)
		}
	}
}

// TestTryIncompleteGroup: when another install began overwriting the group
// of an installed job, Try refuses it (ErrIncomplete) and the job goes back
// to installing, so that the adapter installs it again instead of trying a
// torn group. Issue 11, hardening 12.
func TestTryIncompleteGroup(t *testing.T) {
	a, _ := begunJob(t, []byte("tandem fleet incomplete"))
	if _, err := a.Install(context.Background(), install.Options{}, install.RebootNo); err != nil {
		t.Fatal(err)
	}
	d, err := a.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.BeginWrite("b", "3.0.0", "other"); err != nil {
		t.Fatal(err)
	}
	if err := a.Try(); !errors.Is(err, device.ErrIncomplete) {
		t.Fatalf("try of the overwritten group: %v, want ErrIncomplete", err)
	}
	if out, err := a.Outcome(); err != nil || out.State != fleet.Installing {
		t.Fatalf("outcome: %+v %v, want installing", out, err)
	}
	if _, err := a.Install(context.Background(), install.Options{}, install.RebootSet); err != nil {
		t.Fatalf("install again: %v", err)
	}
	if out, err := a.Outcome(); err != nil || out.State != fleet.Rebooting {
		t.Fatalf("outcome after the new install: %+v %v", out, err)
	}
}

// begunJob makes a simulated GRUB device that trusts a new key, and a
// bundle of version 2.0.0 holding image signed by that key; it returns an
// agent on the device with job "j" begun for the bundle, and the device's
// root.
func begunJob(t *testing.T, image []byte) (*fleet.Agent, string) {
	t.Helper()
	dir := t.TempDir()
	key, pubFile := fleettest.NewKey(t, dir, "release")
	b, _ := fleettest.SignedBundle(t, bundle.Header{Version: "2.0.0", Created: time.Now().Unix()}, image, key)
	bundlePath := filepath.Join(dir, "v2.tandem")
	if err := os.WriteFile(bundlePath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "dev")
	if err := sim.New(root, sim.Options{BootFlow: "grub", FactoryVersion: "1.0.0", Trust: []string{pubFile}}); err != nil {
		t.Fatal(err)
	}
	a := &fleet.Agent{Adapter: "t", Open: func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }}
	if _, err := a.Begin(fleet.Job{ID: "j", Source: bundlePath}); err != nil {
		t.Fatal(err)
	}
	return a, root
}
