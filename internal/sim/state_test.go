package sim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/state"
)

const stateConfig = `[data-partition]
label = "data"

[persist."/var/lib/app"]

[persist."/etc/machine-id"]
type = "file"

[persist."/var/log"]
shared = true
`

// TestStateCycle runs a whole state cycle on a simulated device: writes
// outside persistent paths are gone after a reboot, persistent ones kept;
// a trial sees a snapshot, migrates it, and a rollback restores the
// committed state exactly (shared paths keep the trial's writes); a
// committed trial keeps its change; a factory reset leaves clean state.
func TestStateCycle(t *testing.T) {
	tmp := t.TempDir()
	cfgFile := filepath.Join(tmp, "10-app.toml")
	if err := os.WriteFile(cfgFile, []byte(stateConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "dev")
	if err := New(dir, Options{BootFlow: "grub", State: []string{cfgFile}}); err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p(name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) string {
		b, err := os.ReadFile(p(name))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	want := func(step, name, content string) {
		t.Helper()
		if got := read(name); got != content {
			t.Fatalf("%s: %s holds %q, want %q", step, name, got, content)
		}
	}
	reboot := func(wantGroup string) {
		t.Helper()
		g, notes, err := Reboot(dir, false)
		if err != nil {
			t.Fatalf("reboot: %v (%v)", err, notes)
		}
		if g != wantGroup {
			t.Fatalf("booted %s, want %s", g, wantGroup)
		}
	}
	open := func() *device.Device {
		t.Helper()
		d, err := device.Open(device.Options{Root: dir})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	write("var/lib/app/db", "schema 1")
	write("etc/machine-id", "m1")
	write("tmp/junk", "gone after reboot")
	write("var/log/app.log", "a1\n")
	reboot("a")
	want("persistent", "var/lib/app/db", "schema 1")
	want("persistent file", "etc/machine-id", "m1")
	if _, err := os.Stat(p("tmp/junk")); !rootfs.IsNotExist(err) {
		t.Fatalf("a write outside persistent paths survived the reboot: %v", err)
	}
	want("system image", "etc/tandem/state.d/10-app.toml", stateConfig)

	// Trial of b: a snapshot; b migrates; no commit: rollback.
	if _, err := open().TrySpare(); err != nil {
		t.Fatal(err)
	}
	reboot("b")
	want("trial snapshot", "var/lib/app/db", "schema 1")
	write("var/lib/app/db", "schema 2")
	write("var/log/app.log", "a1\nb1\n")
	reboot("a")
	want("rollback", "var/lib/app/db", "schema 1")
	want("rollback keeps shared", "var/log/app.log", "a1\nb1\n")
	want("rollback", "etc/machine-id", "m1")

	// Trial of b again, committed: b's change kept.
	if _, err := open().TrySpare(); err != nil {
		t.Fatal(err)
	}
	reboot("b")
	want("fresh snapshot", "var/lib/app/db", "schema 1")
	write("var/lib/app/db", "schema 2")
	if ok, err := open().Commit(); err != nil || !ok {
		t.Fatalf("commit: %v %v", ok, err)
	}
	reboot("b")
	want("commit", "var/lib/app/db", "schema 2")
	rep, err := state.Inspect(rootfs.NewOS(dir), "/var/lib/tandem", "b")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != state.StatusActive || rep.Trial != nil || rep.Committed.Group != "b" {
		t.Fatalf("after commit: %+v", rep)
	}
	// tandem's own state survived every reboot (its data-dir is shared).
	if st := read("var/lib/tandem/state.json"); !strings.Contains(st, `"b"`) {
		t.Fatalf("tandem's state.json: %s", st)
	}

	// Factory reset.
	if err := state.RequestReset(rootfs.NewOS(dir), false); err != nil {
		t.Fatal(err)
	}
	reboot("b")
	want("reset", "etc/machine-id", "")
	if ents, err := os.ReadDir(p("var/lib/app")); err != nil || len(ents) != 0 {
		t.Fatalf("after reset /var/lib/app holds %v (%v)", ents, err)
	}
	want("reset", "var/log/app.log", "<open "+p("var/log/app.log")+": no such file or directory>")
	if st := read("var/lib/tandem/state.json"); !strings.Contains(st, `"b"`) {
		t.Fatalf("a reset lost tandem's slot database: %s", st)
	}

	// A data partition that cannot be mounted: the device boots, state discarded.
	if err := os.Rename(p(DataFolder), p("lost")); err != nil {
		t.Fatal(err)
	}
	_, notes, err := Reboot(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "the state is not mounted") {
		t.Fatalf("no warning: %v", notes)
	}
}

// TestNoStateUnchanged: without state configuration a reboot keeps every
// write, as before.
func TestNoStateUnchanged(t *testing.T) {
	dir := t.TempDir()
	if err := New(dir, Options{BootFlow: "grub"}); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "tmp", "kept")
	os.MkdirAll(filepath.Dir(f), 0o755)
	os.WriteFile(f, []byte("x"), 0o644)
	if _, _, err := Reboot(dir, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{DataFolder, ImageFolder} {
		if _, err := os.Stat(filepath.Join(dir, name)); !rootfs.IsNotExist(err) {
			t.Fatalf("%s exists on a device without state", name)
		}
	}
}
