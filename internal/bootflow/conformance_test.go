package bootflow_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/bootenv/grubenv"
	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// flowCase is one boot flow (and back end) under the conformance test.
type flowCase struct {
	name   string
	opts   sim.Options
	counts bool   // the boot loader counts attempts
	tool   string // external program the flow needs
	two    bool   // the boot loader knows exactly two groups
}

var flowCases = []flowCase{
	{name: "grub", opts: sim.Options{BootFlow: config.FlowGrub}, counts: true},
	{name: "uboot", opts: sim.Options{BootFlow: config.FlowUBoot}, counts: true},
	{name: "uboot-fw-setenv", opts: sim.Options{BootFlow: config.FlowUBoot, UBootBackend: config.UBootBackendFwSetenv}, counts: true, tool: "fw_setenv"},
	{name: "rpi-tryboot", opts: sim.Options{BootFlow: config.FlowRPiTryboot}},
	{name: "systemd-boot", opts: sim.Options{BootFlow: config.FlowSystemdBoot}},
	{name: "systemd-boot-counting", opts: sim.Options{BootFlow: config.FlowSystemdBoot, BootCounting: true}, counts: true},
	{name: "custom", opts: sim.Options{BootFlow: config.FlowCustom}, counts: true},
	// Other update systems' integrations, driven as they are (adopt_test.go).
	{name: "mender-grub", opts: sim.Options{BootFlow: config.FlowMenderGrub}, two: true},
	{name: "mender-uboot", opts: sim.Options{BootFlow: config.FlowMenderUBoot}, two: true},
	{name: "mender-uboot-fw-setenv", opts: sim.Options{BootFlow: config.FlowMenderUBoot, UBootBackend: config.UBootBackendFwSetenv}, two: true, tool: "fw_setenv"},
	{name: "rauc-grub", opts: sim.Options{BootFlow: config.FlowRAUCGrub}},
	{name: "rauc-uboot", opts: sim.Options{BootFlow: config.FlowRAUCUBoot}, counts: true},
	{name: "rauc-uboot-fw-setenv", opts: sim.Options{BootFlow: config.FlowRAUCUBoot, UBootBackend: config.UBootBackendFwSetenv}, counts: true, tool: "fw_setenv"},
	{name: "rugix-grub", opts: sim.Options{BootFlow: config.FlowRugixGrub}, two: true},
}

func forEachFlow(t *testing.T, f func(t *testing.T, fc flowCase)) {
	for _, fc := range flowCases {
		t.Run(fc.name, func(t *testing.T) {
			if fc.tool != "" {
				testutil.NeedTool(t, fc.tool)
			}
			f(t, fc)
		})
	}
}

// newDevice makes a simulated device with the given groups and attempts.
func newDevice(t *testing.T, fc flowCase, groups []string, attempts int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dev")
	o := fc.opts
	o.Groups, o.Attempts, o.SlotSize = groups, attempts, 64<<10
	if err := sim.New(dir, o); err != nil {
		t.Fatalf("sim new: %v", err)
	}
	checkEnvFiles(t, dir)
	return dir
}

func openDev(t *testing.T, dir string, cut int, mode rootfs.CutMode) *device.Device {
	t.Helper()
	d, err := device.Open(device.Options{Root: dir, CutAt: cut, CutMode: mode})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return d
}

// reboot plays the boot loader and fails on any fallback: after tandem's
// writes the boot loader must always find a usable state.
func reboot(t *testing.T, dir string, hang bool) string {
	t.Helper()
	g, notes, err := sim.Reboot(dir, hang)
	if err != nil {
		t.Fatalf("sim reboot: %v (notes %q)", err, notes)
	}
	for _, n := range notes {
		if strings.Contains(n, "fallback") || strings.Contains(n, "unusable") || strings.Contains(n, "failed") {
			t.Fatalf("sim reboot: boot loader fell back: %q", notes)
		}
	}
	return g
}

func status(t *testing.T, dir string) device.Status {
	t.Helper()
	st, err := openDev(t, dir, 0, 0).Status()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// trySpare does what `tandem system reboot --spare` does.
func trySpare(t *testing.T, dir string) string {
	t.Helper()
	d := openDev(t, dir, 0, 0)
	g, err := d.TrySpare()
	must(t, err)
	must(t, d.Reboot())
	return g
}

func TestTryCommitStays(t *testing.T) {
	forEachFlow(t, func(t *testing.T, fc flowCase) {
		dir := newDevice(t, fc, nil, 1)
		if st := status(t, dir); st.Active != "a" || st.Default != "a" || !slices.Equal(st.Spare, []string{"b"}) {
			t.Fatalf("new device: %+v, want a active and default, b spare", st)
		}
		if g := trySpare(t, dir); g != "b" {
			t.Fatalf("try-next went to %s, want b", g)
		}
		if g := reboot(t, dir, false); g != "b" {
			t.Fatalf("trial boot started %s, want b", g)
		}
		st := status(t, dir)
		if st.Active != "b" || st.Default != "a" || !st.CommitPending() || len(st.Spare) != 0 {
			t.Fatalf("on trial: %+v", st)
		}
		changed, err := openDev(t, dir, 0, 0).Commit()
		if err != nil || !changed {
			t.Fatalf("commit: %v, %v", changed, err)
		}
		changed, err = openDev(t, dir, 0, 0).Commit()
		if err != nil || changed {
			t.Fatalf("second commit: changed %v, %v; want a no-op", changed, err)
		}
		for i := range 2 {
			if g := reboot(t, dir, false); g != "b" {
				t.Fatalf("reboot %d after commit started %s, want b", i, g)
			}
		}
		if st := status(t, dir); st.Default != "b" || st.CommitPending() {
			t.Fatalf("after commit: %+v", st)
		}
		checkEnvFiles(t, dir)
	})
}

func TestNoCommitRollsBack(t *testing.T) {
	forEachFlow(t, func(t *testing.T, fc flowCase) {
		dir := newDevice(t, fc, nil, 1)
		trySpare(t, dir)
		if g := reboot(t, dir, false); g != "b" {
			t.Fatalf("trial boot started %s, want b", g)
		}
		if g := reboot(t, dir, false); g != "a" {
			t.Fatalf("reboot without commit started %s, want a", g)
		}
		info, err := openDev(t, dir, 0, 0).Info()
		must(t, err)
		if info.Boot.ActiveGroup != "a" || info.Boot.DefaultGroup != "a" {
			t.Fatalf("after rollback: %+v", info.Boot)
		}
		if fc.name != "custom" && (info.LastUpdate == nil || info.LastUpdate.Status != "rolled-back") {
			t.Fatalf("last update = %+v, want rolled-back", info.LastUpdate)
		}
		// A hung trial is one failed attempt, too.
		trySpare(t, dir)
		if g := reboot(t, dir, true); g != "b" {
			t.Fatalf("trial boot started %s, want b", g)
		}
		if _, err := openDev(t, dir, 0, 0).Commit(); !errors.Is(err, device.ErrRefused) {
			t.Fatalf("commit on a hung device: %v, want refused", err)
		}
		if g := reboot(t, dir, false); g != "a" {
			t.Fatalf("reboot after hang started %s, want a", g)
		}
		checkEnvFiles(t, dir)
	})
}

func TestAttemptsUsedUp(t *testing.T) {
	forEachFlow(t, func(t *testing.T, fc flowCase) {
		if !fc.counts {
			t.Skipf("the %s boot loader cannot count attempts", fc.name)
		}
		dir := newDevice(t, fc, nil, 3)
		trySpare(t, dir)
		for i := range 3 {
			if g := reboot(t, dir, true); g != "b" {
				t.Fatalf("hung attempt %d started %s, want b", i+1, g)
			}
		}
		if g := reboot(t, dir, false); g != "a" {
			t.Fatalf("after 3 failed attempts the boot loader started %s, want a", g)
		}
		if g := reboot(t, dir, false); g != "a" {
			t.Fatalf("the trial must not come back: %s", g)
		}
		// A trial that commits on its second attempt stays.
		trySpare(t, dir)
		if g := reboot(t, dir, true); g != "b" {
			t.Fatal(g)
		}
		if g := reboot(t, dir, false); g != "b" {
			t.Fatalf("second attempt started %s, want b", g)
		}
		_, err := openDev(t, dir, 0, 0).Commit()
		must(t, err)
		if g := reboot(t, dir, false); g != "b" {
			t.Fatalf("after commit started %s, want b", g)
		}
	})
}

func TestCancelTry(t *testing.T) {
	forEachFlow(t, func(t *testing.T, fc flowCase) {
		dir := newDevice(t, fc, nil, 1)
		d := openDev(t, dir, 0, 0)
		must(t, d.TryNext("b"))
		must(t, d.CancelTry())
		must(t, d.CancelTry()) // nothing pending: no error
		must(t, d.Reboot())
		if g := reboot(t, dir, false); g != "a" {
			t.Fatalf("after cancel the boot loader started %s, want a", g)
		}
	})
}

func TestRefusals(t *testing.T) {
	forEachFlow(t, func(t *testing.T, fc flowCase) {
		dir := newDevice(t, fc, nil, 1)
		trySpare(t, dir)
		reboot(t, dir, false)
		d := openDev(t, dir, 0, 0)
		if _, err := d.TrySpare(); !errors.Is(err, device.ErrRefused) {
			t.Fatalf("try-next during a trial: %v, want refused", err)
		}
		st, err := d.Status()
		must(t, err)
		for _, g := range []string{"a", "b"} {
			if err := st.CheckWritable(g); !errors.Is(err, device.ErrRefused) {
				t.Fatalf("group %s writable during a trial: %v", g, err)
			}
		}
		if err := d.Flow.TryNext("nope"); err == nil {
			t.Fatal("try-next of an unknown group succeeded")
		}
	})
}

// cutOp is an operation under power-cut test: setup brings a fresh device to
// the state before the operation; run performs it; after is the group the
// next boot must start once the operation completed.
type cutOp struct {
	name  string
	setup func(t *testing.T, dir string)
	run   func(d *device.Device) error
	after string
}

var cutOps = []cutOp{
	{
		name:  "try-next",
		setup: func(*testing.T, string) {},
		run: func(d *device.Device) error {
			if err := d.TryNext("b"); err != nil {
				return err
			}
			return d.Reboot()
		},
		after: "b",
	},
	{
		name: "cancel",
		setup: func(t *testing.T, dir string) {
			d := openDev(t, dir, 0, 0)
			must(t, d.TryNext("b"))
		},
		run: func(d *device.Device) error {
			if err := d.CancelTry(); err != nil {
				return err
			}
			return d.Reboot()
		},
		after: "a",
	},
	{
		name: "commit",
		setup: func(t *testing.T, dir string) {
			d := openDev(t, dir, 0, 0)
			must(t, d.TryNext("b"))
			must(t, d.Reboot())
			if g := reboot(t, dir, false); g != "b" {
				t.Fatalf("setup: trial started %s", g)
			}
		},
		run: func(d *device.Device) error {
			_, err := d.Commit()
			return err
		},
		after: "b",
	},
}

// TestPowerCut cuts the power at every cut point of try-next, cancel and
// commit, in every cut mode, for every flow. Three groups make "garbage"
// visible: a boot of c, or a fallback, is a failure. After each cut the
// device must start a, or b (the group tried or committed), tandem must be
// able to read its state, and repeating the operation must complete it.
func TestPowerCut(t *testing.T) {
	forEachFlow(t, func(t *testing.T, fc flowCase) {
		groups := []string{"a", "b", "c"}
		if fc.two {
			groups = nil
		}
		for _, op := range cutOps {
			for _, mode := range []rootfs.CutMode{rootfs.CutDrop, rootfs.CutTear, rootfs.CutKeep} {
				t.Run(op.name+"/"+mode.String(), func(t *testing.T) {
					points := 0
					for cut := 1; ; cut++ {
						dir := newDevice(t, fc, groups, 1)
						op.setup(t, dir)
						d := openDev(t, dir, cut, mode)
						err := op.run(d)
						if err == nil {
							// Power off right after the operation: all it
							// did must have been durable.
							must(t, d.FS.(*rootfs.Sim).PowerOff())
							if g := reboot(t, dir, false); g != op.after {
								t.Fatalf("power off after a complete %s: booted %s, want %s", op.name, g, op.after)
							}
							points = cut - 1
							break
						}
						if !errors.Is(err, rootfs.ErrPowerCut) {
							t.Fatalf("cut %d: %v", cut, err)
						}
						if _, err := openDev(t, dir, 0, 0).Flow.Default(); err != nil {
							t.Fatalf("cut %d: tandem cannot read the boot state: %v", cut, err)
						}
						checkEnvFiles(t, dir)
						got := reboot(t, dir, false)
						if got != "a" && got != "b" {
							t.Fatalf("cut %d: the device booted %s, want a or b", cut, got)
						}
						completeAfterCut(t, dir, op.name, got)
						if cut > 200 {
							t.Fatal("more than 200 cut points: the operation never completes")
						}
					}
					if points == 0 {
						t.Fatalf("the operation had no cut point at all")
					}
					t.Logf("%d cut points", points)
				})
			}
		}
	})
}

// completeAfterCut repeats an interrupted operation and checks it completes.
func completeAfterCut(t *testing.T, dir, op, running string) {
	t.Helper()
	switch {
	case op == "try-next" && running == "a":
		d := openDev(t, dir, 0, 0)
		must(t, d.TryNext("b"))
		must(t, d.Reboot())
		if g := reboot(t, dir, false); g != "b" {
			t.Fatalf("try-next repeated after the cut: booted %s, want b", g)
		}
	case op == "commit" && running == "b":
		if _, err := openDev(t, dir, 0, 0).Commit(); err != nil {
			t.Fatalf("commit repeated after the cut: %v", err)
		}
		if g := reboot(t, dir, false); g != "b" {
			t.Fatalf("commit repeated after the cut: booted %s, want b", g)
		}
		// Every redundant copy must name b now.
		if r, ok := openDev(t, dir, 0, 0).Flow.(bootflow.Repairer); ok {
			if wrote, err := r.Repair("b"); err != nil || wrote {
				t.Fatalf("after the repeated commit a copy of the default still needed repair (%v, %v)", wrote, err)
			}
		}
	}
}

// checkEnvFiles checks every grubenv-signed file under dir with grub-editenv
// and every U-Boot env file with fw_printenv, as the real tools read them.
func checkEnvFiles(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(b, []byte(grubenv.Signature)) || strings.HasSuffix(p, ".new") {
			return err
		}
		tool := testutil.NeedTool(t, "grub-editenv")
		if out, err := exec.Command(tool, p, "list").CombinedOutput(); err != nil {
			t.Fatalf("grub-editenv %s list: %v: %s", p, err, out)
		}
		return nil
	})
	cfg, err := config.Load(dir, "")
	if err != nil || !slices.Contains([]string{config.FlowUBoot, config.FlowMenderUBoot, config.FlowRAUCUBoot}, cfg.BootFlow.Type) {
		return
	}
	tool := testutil.NeedTool(t, "fw_printenv")
	conf := filepath.Join(t.TempDir(), "fw_env.config")
	text := fmt.Sprintf("%s 0x0 %#x\n%s 0x0 %#x\n", rootfs.Join(dir, cfg.BootFlow.EnvFile), cfg.BootFlow.EnvSize,
		rootfs.Join(dir, cfg.BootFlow.EnvFileRedund), cfg.BootFlow.EnvSize)
	must(t, os.WriteFile(conf, []byte(text), 0o644))
	if out, err := exec.Command(tool, "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("fw_printenv: %v: %s", err, out)
	}
}

// Flows whose boot loader counts report the attempts left, and mark-bad
// ends a trial so the boot loader does not start it again.
func TestCounterMarkBad(t *testing.T) {
	forEachFlow(t, func(t *testing.T, fc flowCase) {
		if !fc.counts {
			t.Skipf("the %s boot loader cannot count attempts", fc.name)
		}
		dir := newDevice(t, fc, nil, 3)
		c, ok := openDev(t, dir, 0, 0).Flow.(bootflow.Counter)
		if !ok {
			t.Skipf("the %s flow cannot report its count to tandem", fc.name)
		}
		trySpare(t, dir)
		if g, left, err := c.Trial(); err != nil || g != "b" || left != 3 {
			t.Fatalf("trial = %q, %d, %v; want b with 3 attempts", g, left, err)
		}
		if g := reboot(t, dir, true); g != "b" {
			t.Fatalf("first attempt started %s", g)
		}
		c = openDev(t, dir, 0, 0).Flow.(bootflow.Counter)
		if _, left, _ := c.Trial(); left != 2 {
			t.Fatalf("attempts left after one boot: %d, want 2", left)
		}
		must(t, c.MarkBad("a")) // not on trial: nothing changes
		if g, _, _ := c.Trial(); g != "b" {
			t.Fatalf("mark-bad of another group ended the trial of b")
		}
		must(t, c.MarkBad("b"))
		if g, _, err := c.Trial(); err != nil || g != "" {
			t.Fatalf("after mark-bad: trial %q, %v", g, err)
		}
		if g := reboot(t, dir, false); g != "a" {
			t.Fatalf("after mark-bad the boot loader started %s, want a", g)
		}
	})
}
