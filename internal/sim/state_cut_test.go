package sim

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/state"
)

// stateDevice makes a simulated device with stateConfig (plus extra
// top-level configuration) whose committed state (group a) holds a
// database, a machine id and a shared log.
func stateDevice(t *testing.T, extra string) (dir string, write func(name, content string), read func(name string) string) {
	t.Helper()
	tmp := t.TempDir()
	cfgFile := filepath.Join(tmp, "10-app.toml")
	if err := os.WriteFile(cfgFile, []byte(extra+stateConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(tmp, "dev")
	if err := New(dir, Options{BootFlow: "grub", SlotSize: 64 << 10, State: []string{cfgFile}}); err != nil {
		t.Fatal(err)
	}
	write = func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read = func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "<absent>"
		}
		return string(b)
	}
	write("var/lib/app/db", "schema 1")
	write("etc/machine-id", "m1")
	write("var/log/app.log", "a1\n")
	return dir, write, read
}

func openDevice(t *testing.T, dir string) *device.Device {
	t.Helper()
	d, err := device.Open(device.Options{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRebootPowerCut cuts the power at every cut point of the state work
// of a `sim reboot` — the snapshot of a trial's first boot, the commit and
// the rollback that a boot performs after the boot loader decided, a
// factory reset — in the three cut modes, then reboots without a cut and
// checks that the device runs a consistent state: the group the boot
// loader chose sees the committed state or its trial's snapshot, exactly,
// the shared log is intact, and no unnamed generation is left.
func TestRebootPowerCut(t *testing.T) {
	type scenario struct {
		name string
		// prepare brings the device to the reboot under test.
		prepare func(t *testing.T, dir string, write func(string, string))
		// want is what var/lib/app/db holds after the recovery boot of group g.
		want func(g string) string
	}
	trial := func(t *testing.T, dir string, write func(string, string)) {
		if _, err := openDevice(t, dir).TrySpare(); err != nil {
			t.Fatal(err)
		}
	}
	migrated := func(t *testing.T, dir string, write func(string, string)) {
		trial(t, dir, write)
		if g, notes, err := Reboot(dir, false); err != nil || g != "b" {
			t.Fatalf("trial boot: %s %v %v", g, err, notes)
		}
		write("var/lib/app/db", "schema 2")
	}
	scenarios := []scenario{
		{"snapshot", trial, func(string) string { return "schema 1" }},
		{"commit", func(t *testing.T, dir string, write func(string, string)) {
			migrated(t, dir, write)
			if ok, err := openDevice(t, dir).Commit(); err != nil || !ok {
				t.Fatalf("commit: %v %v", ok, err)
			}
		}, func(string) string { return "schema 2" }},
		{"rollback", migrated, func(string) string { return "schema 1" }},
		{"reset", func(t *testing.T, dir string, write func(string, string)) {
			if err := state.RequestReset(rootfs.NewOS(dir), false); err != nil {
				t.Fatal(err)
			}
		}, func(string) string { return "<absent>" }},
	}
	var mu sync.Mutex
	total := 0
	t.Cleanup(func() { t.Logf("%d cut points in all, each followed by a consistent boot", total) })
	for _, sc := range scenarios {
		for _, mode := range []rootfs.CutMode{rootfs.CutDrop, rootfs.CutTear, rootfs.CutKeep} {
			t.Run(sc.name+"/"+mode.String(), func(t *testing.T) {
				t.Parallel() // each waits mostly on the boot loader's fsyncs
				points := 0
				tmpl, write, _ := stateDevice(t, "")
				if g, _, err := Reboot(tmpl, false); err != nil || g != "a" {
					t.Fatalf("boot: %s %v", g, err)
				}
				sc.prepare(t, tmpl, write)
				for n := 1; ; n++ {
					dir := filepath.Join(t.TempDir(), "dev")
					if out, err := exec.Command("cp", "-a", tmpl, dir).CombinedOutput(); err != nil {
						t.Fatalf("cp -a: %v: %s", err, out)
					}
					read := func(name string) string {
						b, err := os.ReadFile(filepath.Join(dir, name))
						if err != nil {
							return "<absent>"
						}
						return string(b)
					}
					_, _, err := RebootWith(dir, RebootOptions{CutAt: n, Mode: mode})
					if err == nil {
						points = n - 1
						break
					}
					if !errors.Is(err, rootfs.ErrPowerCut) {
						t.Fatalf("cut %d: %v", n, err)
					}
					g, notes, err := RebootWith(dir, RebootOptions{CutAt: -1})
					if err != nil {
						t.Fatalf("cut %d: the next boot: %v %v", n, err, notes)
					}
					if got, want := read("var/lib/app/db"), sc.want(g); got != want {
						t.Fatalf("cut %d (%s): group %s sees db %q, want %q", n, mode, g, got, want)
					}
					if sc.name != "reset" && (read("etc/machine-id") != "m1" || read("var/log/app.log") != "a1\n") {
						t.Fatalf("cut %d: machine id %q, log %q", n, read("etc/machine-id"), read("var/log/app.log"))
					}
					rep, err := state.ReadBootReport(rootfs.NewOS(dir))
					if err != nil || rep == nil || rep.Status != state.BootOK {
						t.Fatalf("cut %d: boot report %+v %v", n, rep, err)
					}
					checkGenerations(t, dir)
				}
				if points == 0 {
					t.Fatalf("%s: no cut point", sc.name)
				}
				mu.Lock()
				total += points
				mu.Unlock()
				t.Logf("%s, mode %s: %d cut points", sc.name, mode, points)
			})
		}
	}
}

// checkGenerations: the data folder holds exactly the generations its journal names.
func checkGenerations(t *testing.T, dir string) {
	t.Helper()
	s := &state.Store{FS: rootfs.NewOS(filepath.Join(dir, DataFolder)), Mount: "/"}
	l, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(dir, DataFolder, state.LayoutDir, state.GenDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != len(l.Referenced()) {
		t.Fatalf("generations %v, the journal names %v", names, l.Referenced())
	}
}

// TestBootReport: a simulated boot writes the boot report tandem init
// writes (so `tandem state info` and `system info --json` show the same
// fields), degraded when the data partition is lost.
func TestBootReport(t *testing.T) {
	dir, _, _ := stateDevice(t, "")
	if _, _, err := Reboot(dir, false); err != nil {
		t.Fatal(err)
	}
	rep, err := state.ReadBootReport(rootfs.NewOS(dir))
	if err != nil || rep == nil {
		t.Fatalf("no boot report: %v", err)
	}
	acts := strings.Join(rep.Actions, "\n")
	if rep.Status != state.BootOK || rep.Overlay != state.OverlayDiscard || rep.Device != "/dev/disk/by-label/data" ||
		!strings.Contains(acts, "bind /run/tandem/data/tandem-state/gen/1/var/lib/app on /var/lib/app") {
		t.Fatalf("report %+v", rep)
	}
	if err := os.Rename(filepath.Join(dir, DataFolder), filepath.Join(dir, "lost")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Reboot(dir, false); err != nil {
		t.Fatal(err)
	}
	rep, err = state.ReadBootReport(rootfs.NewOS(dir))
	if err != nil || rep == nil || rep.Status != state.BootDegraded || !strings.Contains(rep.Error, "cannot be mounted") {
		t.Fatalf("lost data partition: report %+v %v", rep, err)
	}
	if err := state.CheckCommit(rootfs.NewOS(dir)); !errors.Is(err, state.ErrDegradedBoot) {
		t.Fatalf("a degraded simulated boot: CheckCommit %v", err)
	}
}

// TestPersistOverlay: with overlay = "persist" a write outside persistent
// paths — a new file, a changed one, a removed one of the image — survives
// a reboot of the same group; another group has its own upper (it sees the
// image), and the first group finds its writes again when it boots next.
func TestPersistOverlay(t *testing.T) {
	dir, write, read := stateDevice(t, "overlay = \"persist\"\n")
	// The image gains two files (as the root it was taken from).
	for _, p := range []string{ImageFolder + "/opt/image.txt", ImageFolder + "/opt/gone.txt", "opt/image.txt", "opt/gone.txt"} {
		write(p, "image")
	}
	if g, _, err := Reboot(dir, false); err != nil || g != "a" {
		t.Fatal(g, err)
	}
	if read("opt/image.txt") != "image" {
		t.Fatal("the image is not the lower layer")
	}
	write("etc/new.conf", "a's")
	write("opt/image.txt", "changed by a")
	if err := os.Remove(filepath.Join(dir, "opt/gone.txt")); err != nil {
		t.Fatal(err)
	}
	write("var/lib/app/db", "schema 1a") // a persistent path: not in the upper
	check := func(step string, want map[string]string) {
		t.Helper()
		for name, content := range want {
			if got := read(name); got != content {
				t.Fatalf("%s: %s holds %q, want %q", step, name, got, content)
			}
		}
	}
	aWrites := map[string]string{"etc/new.conf": "a's", "opt/image.txt": "changed by a", "opt/gone.txt": "<absent>", "var/lib/app/db": "schema 1a"}
	if g, _, err := Reboot(dir, false); err != nil || g != "a" {
		t.Fatal(g, err)
	}
	check("a after a reboot", aWrites)
	upper := filepath.Join(dir, DataFolder, state.LayoutDir, "overlay", "a", "upper")
	if _, err := os.Stat(filepath.Join(upper, "var/lib/app")); err == nil {
		t.Fatal("a persistent path was captured in the upper")
	}
	if _, err := os.Stat(filepath.Join(upper, "opt", ".wh.gone.txt")); err != nil {
		t.Fatalf("no whiteout for the removed file: %v", err)
	}

	if _, err := openDevice(t, dir).TrySpare(); err != nil {
		t.Fatal(err)
	}
	if g, _, err := Reboot(dir, false); err != nil || g != "b" {
		t.Fatal(g, err)
	}
	check("b on trial", map[string]string{"etc/new.conf": "<absent>", "opt/image.txt": "image", "opt/gone.txt": "image", "var/lib/app/db": "schema 1a"})
	write("etc/new.conf", "b's")
	if g, _, err := Reboot(dir, false); err != nil || g != "a" {
		t.Fatal(g, err)
	}
	check("a after b's rollback", aWrites)
	if got := read(filepath.Join(DataFolder, state.LayoutDir, "overlay", "b", "upper", "etc", "new.conf")); got != "b's" {
		t.Fatalf("b's upper: %q", got)
	}
	rep, _ := state.ReadBootReport(rootfs.NewOS(dir))
	if rep == nil || rep.Overlay != state.OverlayPersist {
		t.Fatalf("report %+v", rep)
	}
}
