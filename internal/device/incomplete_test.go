package device_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/sim"
)

func newSim(t *testing.T) (root string, open func() *device.Device) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "dev")
	if err := sim.New(root, sim.Options{BootFlow: "grub", FactoryVersion: "1.0.0", Groups: []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	return root, func() *device.Device {
		t.Helper()
		d, err := device.Open(device.Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
}

func boot(t *testing.T, root, want string) {
	t.Helper()
	if g, notes, err := sim.Reboot(root, false); err != nil || g != want {
		t.Fatalf("boot: %s %v %q, want %s", g, err, notes, want)
	}
}

// TestIncompleteGroup: a group marked incomplete by BeginWrite has no
// version, is refused by TrySpare, TryNext and Commit with ErrIncomplete
// (also ErrRefused) unless ForceIncomplete, and RecordInstall clears the
// mark. Issue 11, hardening 12.
func TestIncompleteGroup(t *testing.T) {
	root, open := newSim(t)
	d := open()
	unlock, err := d.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.BeginWrite("b", "2.0.0", "h"); err != nil {
		t.Fatal(err)
	}
	unlock()
	info, err := open().Info()
	if err != nil {
		t.Fatal(err)
	}
	if gi := info.Boot.Groups["b"]; gi.Incomplete == nil || gi.Incomplete.Version != "2.0.0" || gi.Version != "" {
		t.Fatalf("info of b: %+v, want incomplete without a version", gi)
	}
	if v, src := open().GroupVersion("b"); v != "" {
		t.Fatalf("version of the incomplete b: %q (%s)", v, src)
	}
	if _, err := open().TrySpare(); !errors.Is(err, device.ErrIncomplete) || !errors.Is(err, device.ErrRefused) ||
		!strings.Contains(err.Error(), "group b is incomplete") {
		t.Fatalf("try-spare of the incomplete b: %v", err)
	}
	if err := open().TryNext("b"); !errors.Is(err, device.ErrIncomplete) {
		t.Fatalf("try-next of the incomplete b: %v", err)
	}
	// The manual override tries it; the commit of the running trial is
	// refused again without the override.
	forced := open()
	forced.ForceIncomplete = true
	if g, err := forced.TrySpare(); err != nil || g != "b" {
		t.Fatalf("forced try-spare: %s %v", g, err)
	}
	if err := forced.Reboot(); err != nil {
		t.Fatal(err)
	}
	boot(t, root, "b")
	if changed, err := open().Commit(); changed || !errors.Is(err, device.ErrIncomplete) {
		t.Fatalf("commit of the incomplete b: %v %v", changed, err)
	}
	forced = open()
	forced.ForceIncomplete = true
	if changed, err := forced.Commit(); !changed || err != nil {
		t.Fatalf("forced commit: %v %v", changed, err)
	}
	// A complete install clears the mark.
	d = open()
	if err := d.RecordInstall("b", "2.0.0", "h"); err != nil {
		t.Fatal(err)
	}
	if info, err = open().Info(); err != nil || info.Boot.Groups["b"].Incomplete != nil || info.Boot.Groups["b"].Version != "2.0.0" {
		t.Fatalf("after RecordInstall: %+v %v", info.Boot.Groups["b"], err)
	}
}
