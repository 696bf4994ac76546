package bootflow_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// A default written by grub-editenv is what tandem and the boot loader read.
func TestGrubReadsGrubEditenv(t *testing.T) {
	tool := testutil.NeedTool(t, "grub-editenv")
	dir := newDevice(t, flowCases[0], nil, 1)
	for _, name := range []string{"primary.grubenv", "secondary.grubenv"} {
		p := filepath.Join(dir, "boot/tandem", name)
		if out, err := exec.Command(tool, p, "set", "tandem_default=b").CombinedOutput(); err != nil {
			t.Fatalf("grub-editenv: %v: %s", err, out)
		}
	}
	def, err := openDev(t, dir, 0, 0).Flow.Default()
	if err != nil || def != "b" {
		t.Fatalf("default = %q, %v; want b", def, err)
	}
	if g := reboot(t, dir, false); g != "b" {
		t.Fatalf("boot loader started %s, want b", g)
	}
}

// A torn primary copy falls back to the secondary, in tandem and in the boot loader.
func TestGrubTornPrimary(t *testing.T) {
	dir := newDevice(t, flowCases[0], nil, 1)
	trySpare(t, dir)
	reboot(t, dir, false)
	_, err := openDev(t, dir, 0, 0).Commit() // both copies now say b
	must(t, err)
	p := filepath.Join(dir, "boot/tandem/primary.grubenv")
	b, _ := os.ReadFile(p)
	copy(b[:512], make([]byte, 512)) // the first sector never reached the disk
	must(t, os.WriteFile(p, b, 0o644))
	def, err := openDev(t, dir, 0, 0).Flow.Default()
	if err != nil || def != "b" {
		t.Fatalf("default = %q, %v; want b from the secondary copy", def, err)
	}
	if g, notes, err := sim.Reboot(dir, false); err != nil || g != "b" {
		t.Fatalf("boot loader: %s %v %q", g, err, notes)
	}
}

// The redundant U-Boot environment survives a torn copy: tearing the copy
// that was written last brings back the state before that write, for tandem
// and for fw_printenv alike. Both back ends.
func TestUBootTornCopy(t *testing.T) {
	for _, fc := range flowCases {
		if fc.opts.BootFlow != config.FlowUBoot {
			continue
		}
		t.Run(fc.name, func(t *testing.T) {
			fwp := testutil.NeedTool(t, "fw_printenv")
			dir := newDevice(t, fc, nil, 1)
			d := openDev(t, dir, 0, 0)
			must(t, d.TryNext("b"))
			if g, _, _ := d.Flow.(interface {
				Trial() (string, int, error)
			}).Trial(); g != "b" {
				t.Fatalf("trial = %q, want b", g)
			}
			// The copy written last is the one with the newer flag: tear it.
			newest := ""
			for _, f := range []string{"boot/uboot.env", "boot/uboot-redund.env"} {
				b, err := os.ReadFile(filepath.Join(dir, f))
				must(t, err)
				if b[4] == 2 {
					newest = f
				}
			}
			if newest == "" {
				t.Fatal("no copy with flag 2 after one write")
			}
			p := filepath.Join(dir, newest)
			b, _ := os.ReadFile(p)
			copy(b[len(b)/2:], make([]byte, len(b)/2))
			b[10] ^= 0xff
			must(t, os.WriteFile(p, b, 0o644))
			if g, _, err := d.Flow.(interface {
				Trial() (string, int, error)
			}).Trial(); err != nil || g != "" {
				t.Fatalf("after tearing the new copy: trial %q, %v; want none", g, err)
			}
			conf := filepath.Join(t.TempDir(), "fw_env.config")
			must(t, os.WriteFile(conf, []byte(filepath.Join(dir, "boot/uboot.env")+" 0x0 0x4000\n"+filepath.Join(dir, "boot/uboot-redund.env")+" 0x0 0x4000\n"), 0o644))
			out, err := exec.Command(fwp, "-c", conf).CombinedOutput()
			if err != nil || strings.Contains(string(out), "tandem_trial=b") || !strings.Contains(string(out), "tandem_default=a") {
				t.Fatalf("fw_printenv after the tear: %v\n%s", err, out)
			}
			if g := reboot(t, dir, false); g != "a" {
				t.Fatalf("boot loader started %s, want a", g)
			}
		})
	}
}
