package bootflow_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/bootenv/grubenv"
	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/testutil"
)

func grubVars(t *testing.T, p string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	env, err := grubenv.Parse(b)
	must(t, err)
	m := map[string]string{}
	for _, n := range env.Names() {
		m[n], _ = env.Get(n)
	}
	return m
}

// Mender's lock files as the image's grub-editenv made them (the layout of
// the block differs between GRUB versions) keep matching lock.sha256sum
// through a whole cycle, and both copies hold the variables Mender's client
// would have written.
func TestMenderGrubFiles(t *testing.T) {
	editenv := testutil.NeedTool(t, "grub-editenv")
	fc := flowCase{name: "mender-grub", opts: sim.Options{BootFlow: config.FlowMenderGrub}}
	dir := newDevice(t, fc, nil, 1)
	envDir := filepath.Join(dir, "boot", "grub-mender-grubenv")
	for _, c := range []string{"1", "2"} {
		d := filepath.Join(envDir, "mender_grubenv"+c)
		lock := filepath.Join(d, "lock")
		must(t, os.Remove(lock))
		for _, args := range [][]string{{lock, "create"}, {lock, "set", "editing=0"}} {
			if out, err := exec.Command(editenv, args...).CombinedOutput(); err != nil {
				t.Fatalf("grub-editenv %v: %v %s", args, err, out)
			}
		}
		cmd := exec.Command("sh", "-c", "sha256sum lock > lock.sha256sum")
		cmd.Dir = d
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sha256sum: %v %s", err, out)
		}
	}
	check := func(want map[string]string) {
		t.Helper()
		for _, c := range []string{"1", "2"} {
			d := filepath.Join(envDir, "mender_grubenv"+c)
			cmd := exec.Command("sha256sum", "-c", "lock.sha256sum")
			cmd.Dir = d
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sha256sum -c in %s: %v %s", d, err, out)
			}
			got := grubVars(t, filepath.Join(d, "env"))
			for k, v := range want {
				if got[k] != v {
					t.Fatalf("copy %s: %s=%q, want %q (%v)", c, k, got[k], v, got)
				}
			}
		}
	}
	trySpare(t, dir)
	check(map[string]string{"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1", "bootcount": "0"})
	if g := reboot(t, dir, false); g != "b" {
		t.Fatalf("trial booted %s", g)
	}
	check(map[string]string{"bootcount": "1", "upgrade_available": "1"})
	_, err := openDev(t, dir, 0, 0).Commit()
	must(t, err)
	check(map[string]string{"mender_boot_part": "3", "upgrade_available": "0", "bootcount": "0"})
}

// Mender's numbering: partitions above 9 go to mender_boot_part_hex in hex.
func TestMenderHexPartition(t *testing.T) {
	fc := flowCase{name: "mender-uboot", opts: sim.Options{BootFlow: config.FlowMenderUBoot}}
	dir := newDevice(t, fc, nil, 1)
	cfgPath := filepath.Join(dir, "etc", "tandem", "system.toml")
	b, err := os.ReadFile(cfgPath)
	must(t, err)
	must(t, os.WriteFile(cfgPath, []byte(strings.Replace(string(b), "[boot-flow]\n", "[boot-flow]\npartitions = { a = 2, b = 11 }\n", 1)), 0o644))
	d := openDev(t, dir, 0, 0)
	must(t, d.TryNext("b"))
	g, _, err := openDev(t, dir, 0, 0).Flow.(bootflow.TrialReader).Trial()
	if err != nil || g != "b" {
		t.Fatalf("trial %q, %v", g, err)
	}
	out, err := exec.Command("strings", filepath.Join(dir, "boot", "uboot.env"), filepath.Join(dir, "boot", "uboot-redund.env")).Output()
	if err != nil {
		t.Skipf("strings: %v", err)
	}
	if !strings.Contains(string(out), "mender_boot_part_hex=b") || !strings.Contains(string(out), "mender_boot_part=11") {
		t.Fatalf("environment after try-next lacks mender_boot_part=11 / _hex=b:\n%s", out)
	}
}
