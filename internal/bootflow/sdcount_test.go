package bootflow_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/bootenv/efivar"
	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/sim"
)

// TestMigrateFromOneShot plays the move of a device from systemd-boot's
// one-shot mode to boot counting (docs/boot-flows.md): the one-shot flow
// tries a system whose configuration has boot-counting; that system's
// commit writes its group's entry and switches LoaderEntryDefault to
// tandem-*. A power cut at every point of that commit leaves a device that
// boots the old default or the new group, and the commit then completes;
// afterwards the device runs trials with boot counting.
func TestMigrateFromOneShot(t *testing.T) {
	tmpl := filepath.Join(t.TempDir(), "dev")
	must(t, sim.New(tmpl, sim.Options{BootFlow: config.FlowSystemdBoot, SlotSize: 64 << 10}))
	trySpare(t, tmpl)
	if g := reboot(t, tmpl, false); g != "b" {
		t.Fatalf("one-shot trial started %s", g)
	}
	// The new system's configuration: boot counting, with the kernels the
	// one-shot entries use and an initramfs and command line shipped on the ESP.
	counting := filepath.Join(t.TempDir(), "counting")
	must(t, sim.New(counting, sim.Options{BootFlow: config.FlowSystemdBoot, BootCounting: true, SlotSize: 64 << 10}))
	toml, err := os.ReadFile(filepath.Join(counting, "etc/tandem/system.toml"))
	must(t, err)
	text := strings.NewReplacer("/boot/tandem/a/vmlinuz", "/boot/a/vmlinuz", "/boot/tandem/b/vmlinuz", "/boot/b/vmlinuz").Replace(string(toml))
	must(t, os.WriteFile(filepath.Join(tmpl, "etc/tandem/system.toml"), []byte(text), 0o644))
	for _, g := range []string{"a", "b"} {
		for _, f := range []string{"initrd.img", "cmdline"} {
			must(t, os.MkdirAll(filepath.Join(tmpl, "boot/tandem", g), 0o755))
			must(t, os.WriteFile(filepath.Join(tmpl, "boot/tandem", g, f), []byte(f+" of "+g+"\n"), 0o644))
		}
	}
	if st := status(t, tmpl); st.Active != "b" || st.Default != "a" || st.Trial != "" {
		t.Fatalf("the new system reads the one-shot state as %+v, want b active, a default", st)
	}
	points, booted := 0, map[string]int{}
	for cut := 1; ; cut++ {
		dir := filepath.Join(t.TempDir(), "dev")
		if out, err := exec.Command("cp", "-a", tmpl, dir).CombinedOutput(); err != nil {
			t.Fatalf("copy: %v %s", err, out)
		}
		d := openDev(t, dir, cut, rootfs.CutDrop)
		_, err := d.Commit()
		if err == nil {
			must(t, d.FS.(*rootfs.Sim).PowerOff())
			checkMigrated(t, dir)
			points = cut - 1
			break
		}
		if !errors.Is(err, rootfs.ErrPowerCut) {
			t.Fatalf("cut %d: %v", cut, err)
		}
		g := reboot(t, dir, false)
		booted[g]++
		switch g {
		case "b": // committed as far as the boot loader goes: commit again
			_, err := openDev(t, dir, 0, 0).Commit()
			must(t, err)
			checkMigrated(t, dir)
		case "a":
			if st := status(t, dir); st.Default != "a" {
				t.Fatalf("cut %d: a booted, but tandem reads default %s", cut, st.Default)
			}
		default:
			t.Fatalf("cut %d: booted %s", cut, g)
		}
	}
	if points < 5 || booted["a"] == 0 || booted["b"] == 0 {
		t.Fatalf("the migrating commit had %d cut points, after which a booted %d times and b %d times; want both", points, booted["a"], booted["b"])
	}
	t.Logf("%d cut points: a booted after %d, b after %d", points, booted["a"], booted["b"])
}

// checkMigrated: b is the committed default by a boot-counting entry,
// LoaderEntryDefault is tandem-*, and a trial of a counts.
func checkMigrated(t *testing.T, dir string) {
	t.Helper()
	for range 2 {
		if g := reboot(t, dir, false); g != "b" {
			t.Fatalf("after the migrating commit: booted %s, want b", g)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "sys/firmware/efi/efivars", efivar.FileName(bootflow.EFIVarDefault, efivar.VendorLoader)))
	must(t, err)
	_, v, err := efivar.Decode(b)
	must(t, err)
	if s, _ := efivar.DecodeString(v); s != bootflow.SDBootPattern {
		t.Fatalf("LoaderEntryDefault = %q, want %s", s, bootflow.SDBootPattern)
	}
	trySpare(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "boot/loader/entries/tandem-a.conf")); !os.IsNotExist(err) {
		t.Fatalf("the one-shot entry of a is still there after its trial was set: %v", err)
	}
	if g := reboot(t, dir, true); g != "a" {
		t.Fatalf("boot-counting trial of a: %s", g)
	}
	if g := reboot(t, dir, false); g != "b" {
		t.Fatalf("after a's one attempt: %s, want b", g)
	}
}
