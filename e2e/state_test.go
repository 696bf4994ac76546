package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/e2e/image"
	"github.com/tandem-ota/tandem/internal/state"
)

// The state cases of issue 12 (docs/state.md): the systems boot through
// tandem init (init=/usr/sbin/tandem-init) on a read-only root, with a data
// partition that is blank in the factory image.

// stateConfig is the images' /etc/tandem/state.d/10-e2e.toml.
const stateConfig = `overlay = "discard"

[data-partition]
partition = 4
mount = "/data"
filesystem = "ext4"
grow = true

[persist."/etc/machine-id"]
type = "file"

[persist."/var/lib/app"]

[persist."/var/log"]
shared = true
`

// stateGrowMiB is the room the state images' disks have after the data
// partition, as when a factory image is flashed onto a larger disk (its
// backup GPT is then where the image ended, not at the disk's end).
const stateGrowMiB = 64

// growDisk adds stateGrowMiB of zeros at the end of a disk image.
func growDisk(t *testing.T, disk string) {
	t.Helper()
	fi, err := os.Stat(disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, fi.Size()+stateGrowMiB<<20); err != nil {
		t.Fatal(err)
	}
}

// stateSeed is what the system image holds under the persistent paths.
var stateSeed = map[string]string{
	"/etc/machine-id":       "",
	"/var/lib/app/seed.txt": "from the image\n",
}

func x86State(t *testing.T) *x86Env {
	t.Helper()
	return x86BuildVariant(t, "grub-state", image.LoaderGrub, &image.State{Config: stateConfig, Seed: stateSeed})
}

// bootReport returns what tandem init did at this boot (/run/tandem/init.json).
func bootReport(m *Machine) state.BootReport {
	m.t.Helper()
	out := m.Run("cat " + state.BootReportPath)
	var r state.BootReport
	i := strings.Index(out, "{")
	if i < 0 || json.Unmarshal([]byte(out[i:]), &r) != nil {
		m.fatalf("%s is not a boot report:\n%s", state.BootReportPath, out)
	}
	return r
}

// expectBoot checks the boot report's status and that its actions include
// each of want (substrings), and returns it.
func expectBoot(m *Machine, status string, want ...string) state.BootReport {
	m.t.Helper()
	r := bootReport(m)
	all := strings.Join(r.Actions, "\n")
	if r.Status != status {
		m.fatalf("tandem init: status %s (%s), want %s; actions:\n%s", r.Status, r.Error, status, all)
	}
	for _, w := range want {
		if !strings.Contains(all, w) {
			m.fatalf("tandem init did not %q; actions:\n%s", w, all)
		}
	}
	return r
}

// cat returns a guest file's content, "<absent>" when it does not exist.
func cat(m *Machine, p string) string {
	m.t.Helper()
	out := m.Run("cat " + p + " 2>/dev/null || echo '<absent>'")
	return strings.TrimSpace(out)
}

func expectFile(m *Machine, p, want, why string) {
	m.t.Helper()
	if got := cat(m, p); got != want {
		m.fatalf("%s: %s holds %q, want %q", why, p, got, want)
	}
}

var machineIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

// machineID returns the guest's /etc/machine-id, which must be a valid id.
func machineID(m *Machine) string {
	m.t.Helper()
	id := cat(m, "/etc/machine-id")
	if !machineIDRe.MatchString(id) {
		m.fatalf("/etc/machine-id is %q, not an id", id)
	}
	return id
}

// caseStateFirstBoot (a): the factory image's first boot makes the data
// partition's file system, mounts it, seeds the persistent paths from the
// image, and the system gives itself a machine id there.
func caseStateFirstBoot(m *Machine) string {
	m.t.Helper()
	if g, v := m.Booted(true); g != "a" || v != "1.0.0" {
		m.fatalf("first boot: group %s version %s, want a 1.0.0", g, v)
	}
	expectBoot(m, state.BootOK, "grew partition 4", "mkfs ext4", "format", "adopt state for group a", "overlay discard on /",
		"seed file /etc/machine-id", "seed directory /var/lib/app", "bind")
	// The partition reaches the disk's end (less the backup GPT, rounded down to a MiB).
	var start, size, disk int64
	out := m.Run(fmt.Sprintf("cat /sys/class/block/vda%[1]d/start /sys/class/block/vda%[1]d/size /sys/class/block/vda/size", image.X86PartData))
	if _, err := fmt.Sscan(out, &start, &size, &disk); err != nil || (disk-start-size)*512 > 2<<20 {
		m.fatalf("the data partition was not grown to the disk's end: start, size and disk size (sectors): %s", out)
	}
	if out := m.Run("grep ' /data ' /proc/mounts"); !strings.Contains(out, "ext4") {
		m.fatalf("the data partition is not mounted on /data:\n%s", out)
	}
	if out := m.Run("grep ' / ' /proc/mounts"); !strings.Contains(out, "overlay") {
		m.fatalf("the root is not an overlay over the read-only system:\n%s", out)
	}
	expectFile(m, "/var/lib/app/seed.txt", "from the image", "first boot")
	info := m.Info()
	if info.State == nil || info.State.Status == state.StatusDegraded || info.State.Overlay != state.OverlayDiscard {
		m.fatalf("system info: state %+v, want an active state with a discarded overlay", info.State)
	}
	return machineID(m)
}

// caseStatePersist (b): a write outside the persistent paths is gone after a
// reboot, one inside stays; the machine id is stable.
func caseStatePersist(m *Machine, id string) {
	m.t.Helper()
	m.Run("echo 1 > /var/lib/app/db && echo scratch > /etc/scratch && echo boot1 >> /var/log/app.log && echo x > /bin/x")
	m.Reboot()
	m.Booted(true)
	expectBoot(m, state.BootOK, "bind")
	expectFile(m, "/etc/scratch", "<absent>", "a write outside the persistent paths after a reboot")
	expectFile(m, "/bin/x", "<absent>", "a write to the system's /bin after a reboot")
	expectFile(m, "/var/lib/app/db", "1", "a persistent file after a reboot")
	expectFile(m, "/var/log/app.log", "boot1", "a shared persistent file after a reboot")
	if got := machineID(m); got != id {
		m.fatalf("the machine id changed across a reboot: %s, then %s", id, got)
	}
}

// caseStateTrial (c): v2 on trial sees v1's state and migrates it; without
// a commit the boot loader falls back and v1 finds its state exactly as it
// left it (the shared log keeps the trial's line); a second trial starts
// from v1's state again, commits, and keeps its migration.
func caseStateTrial(m *Machine, url, id string) {
	m.t.Helper()
	m.Run("tandem update install " + url + "v2.tandem --reboot set --json > /tmp/install.log")
	m.Reboot()
	if g, v := m.Booted(true); g != "b" || v != "2.0.0" {
		m.fatalf("trial: group %s version %s, want b 2.0.0", g, v)
	}
	expectBoot(m, state.BootOK, "snapshot state for group b")
	expectFile(m, "/var/lib/app/db", "1", "the trial's snapshot")
	m.Run("echo 2-migrated > /var/lib/app/db && echo trial >> /var/log/app.log")
	// No commit: GRUB tries b again (attempts = 2), with the same snapshot, then falls back to a.
	m.Reboot()
	if g, _ := m.Booted(true); g != "b" {
		m.fatalf("second attempt of the trial: group %s", g)
	}
	expectFile(m, "/var/lib/app/db", "2-migrated", "the trial's second attempt")
	m.Reboot()
	if g, v := m.Booted(true); g != "a" || v != "1.0.0" {
		m.fatalf("rollback: group %s version %s, want a 1.0.0", g, v)
	}
	expectBoot(m, state.BootOK, "rollback state for group b")
	expectFile(m, "/var/lib/app/db", "1", "after the rollback (the trial migrated its copy)")
	expectFile(m, "/var/log/app.log", "boot1\ntrial", "the shared log after the rollback")
	if got := machineID(m); got != id {
		m.fatalf("the machine id changed across a rollback: %s, then %s", id, got)
	}
	// Again, and commit.
	m.Run("tandem update install " + url + "v2.tandem --reboot set --json > /tmp/install.log")
	m.Reboot()
	if g, _ := m.Booted(true); g != "b" {
		m.fatalf("second trial: group %s", g)
	}
	expectBoot(m, state.BootOK, "snapshot state for group b")
	expectFile(m, "/var/lib/app/db", "1", "the second trial's snapshot")
	m.Run("echo 2 > /var/lib/app/db && tandem system commit")
	m.Reboot()
	if g, v := m.Booted(true); g != "b" || v != "2.0.0" {
		m.fatalf("after the commit: group %s version %s, want b 2.0.0", g, v)
	}
	expectBoot(m, state.BootOK, "commit state for group b")
	expectFile(m, "/var/lib/app/db", "2", "the committed trial's state")
	if got := machineID(m); got != id {
		m.fatalf("the machine id changed across an update: %s, then %s", id, got)
	}
}

// caseStateReset (d): a factory reset: the next boot starts from the
// image's seed, tandem's own data (what the slots hold, the committed
// group) is kept.
func caseStateReset(m *Machine) {
	m.t.Helper()
	g0 := checkCommitted(m)
	if err := m.VM.Send("tandem state reset --reboot"); err != nil {
		m.fatalf("%v", err)
	}
	if g, _ := m.Booted(true); g != g0 {
		m.fatalf("after the reset: group %s, want %s", g, g0)
	}
	expectBoot(m, state.BootOK, "reset the state")
	checkResetDone(m, g0)
}

// checkResetDone asserts a clean state after a reset on a committed device.
func checkResetDone(m *Machine, group string) {
	m.t.Helper()
	expectFile(m, "/var/lib/app/db", "<absent>", "after the reset")
	expectFile(m, "/var/log/app.log", "<absent>", "the shared log after the reset")
	expectFile(m, "/var/lib/app/seed.txt", "from the image", "after the reset")
	machineID(m)
	if g := checkCommitted(m); g != group {
		m.fatalf("after the reset: committed group %s, want %s", g, group)
	}
}

// caseStateCorrupt (e): a zeroed superblock on the data partition: the
// device still boots, with the overlay discarded and the persistent paths
// not mounted, and `system info` says so.
func caseStateCorrupt(m *Machine) {
	m.t.Helper()
	// Zero the ext4 superblock (at 1 KiB) and reboot without a sync, so
	// that the mounted file system cannot write it back.
	if err := m.VM.Send(fmt.Sprintf("sync; dd if=/dev/zero of=/dev/vda%d bs=1024 seek=1 count=1 conv=fsync 2>/dev/null; reboot -n -f", image.X86PartData)); err != nil {
		m.fatalf("%v", err)
	}
	m.Booted(true)
	r := expectBoot(m, state.BootDegraded, "overlay discard on /")
	if !strings.Contains(r.Error, "vda4") {
		m.fatalf("tandem init's reason does not name the data partition: %q", r.Error)
	}
	info := m.Info()
	if info.State == nil || info.State.Status != state.StatusDegraded || info.State.Overlay != state.OverlayDiscard || info.State.Error == "" {
		m.fatalf("system info: state %+v, want degraded with a discarded overlay and the reason", info.State)
	}
	if out := m.Run("grep ' /data ' /proc/mounts || echo none"); !strings.Contains(out, "none") {
		m.fatalf("a corrupted data partition was mounted:\n%s", out)
	}
}

// TestGrubState runs the state cases a, b, c, d and e on one device booted
// by the real GRUB through tandem init (the CI subset).
func TestGrubState(t *testing.T) {
	needE2E(t, true)
	e := x86State(t)
	m := e.machine(t, "state")
	id := caseStateFirstBoot(m)
	caseStatePersist(m, id)
	caseStateTrial(m, e.serve(t), id)
	caseStateReset(m)
	caseStateCorrupt(m)
}

var initPauseRe = regexp.MustCompile(`tandem: test pause before (\S+ #\d+ \(\S+\))|TANDEM-E2E booted`)

// bootPausedAt sets tandem init's pause point for the next boots (GRUB
// sources EFI/BOOT/e2e-args.cfg), runs cmd, which reboots, waits until init
// pauses, cuts the power, removes the pause point from the powered-off disk
// and waits for the next boot. It returns the group that booted.
func bootPausedAt(m *Machine, point, cmd string) string {
	m.t.Helper()
	m.Run(fmt.Sprintf(`echo 'set e2e_args="%s=%s"' > /boot/efi/EFI/BOOT/e2e-args.cfg && sync`, "tandem.test_pause_at", point))
	if err := m.VM.Send(cmd); err != nil {
		m.fatalf("%v", err)
	}
	g, err := m.VM.Expect(initPauseRe, bootTimeout)
	if err != nil {
		m.fatalf("%s with tandem init paused at %s: %v", cmd, point, err)
	}
	if g[1] == "" {
		m.fatalf("%s: the system booted without tandem init reaching pause point %s", cmd, point)
	}
	m.Boots++
	m.t.Logf("%s: cut tandem init before %s", m.Name, g[1])
	m.CutThen(func() {
		// The ESP is the first partition, at 1 MiB.
		if out, err := exec.Command("mdel", "-i", m.Disk+"@@1M", "::EFI/BOOT/e2e-args.cfg").CombinedOutput(); err != nil {
			m.fatalf("remove the pause point: %v: %s", err, out)
		}
	})
	group, _ := m.Booted(true)
	return group
}

// TestGrubStateCuts cuts the power inside tandem init at chosen writes of
// a factory reset, of a trial's snapshot and of the state's commit: every
// boot after a cut finds a consistent state.
func TestGrubStateCuts(t *testing.T) {
	needE2E(t, false)
	e := x86State(t)
	m := e.machine(t, "state-cuts")
	caseStateFirstBoot(m)
	url := e.serve(t)
	// Reset: mid-copy of tandem's data directory, before the journal's
	// rename (the old state, reset still pending: done at the next boot),
	// and after it (the clean state; the old one is garbage).
	for _, p := range []string{"write:1", "rename:1", "remove:1"} {
		m.Run("echo kept > /var/lib/app/db && echo log >> /var/log/app.log")
		if g := bootPausedAt(m, p, "tandem state reset --reboot"); g != "a" {
			m.fatalf("reset cut at %s: group %s booted", p, g)
		}
		expectBoot(m, state.BootOK)
		checkResetDone(m, "a")
	}
	id := machineID(m)
	// Snapshot: mid-copy and before the journal names it. The cut costs the
	// trial one of its two attempts; the second one snapshots again.
	for _, p := range []string{"write:1", "rename:1"} {
		def := checkCommitted(m)
		m.Run("echo " + p + " > /var/lib/app/db && tandem update install " + url + "v2.tandem --reboot set --json > /tmp/install.log")
		if g := bootPausedAt(m, p, "sync; reboot -f"); g != spare(def) {
			m.fatalf("snapshot cut at %s: group %s booted, want the trial %s", p, g, spare(def))
		}
		expectBoot(m, state.BootOK, "snapshot state for group "+spare(def))
		expectFile(m, "/var/lib/app/db", p, "the trial's snapshot after a cut during it")
		// Commit, with a cut in the state's commit at the next boot.
		m.Run("echo " + p + "-trial > /var/lib/app/db && tandem system commit")
		if g := bootPausedAt(m, p, "sync; reboot -f"); g != spare(def) {
			m.fatalf("commit cut at %s: group %s booted, want %s", p, g, spare(def))
		}
		expectBoot(m, state.BootOK)
		expectFile(m, "/var/lib/app/db", p+"-trial", "the committed trial's state after a cut during its commit")
		checkCommitted(m)
	}
	if got := machineID(m); got != id {
		m.fatalf("the machine id changed: %s, then %s", id, got)
	}
}

// TestUBootState runs state cases a and b on the arm64 images booted by the
// real U-Boot through tandem init: the first boot makes and mounts the data
// partition and seeds the persistent paths; a write outside them is gone
// after a reboot, one inside stays, and the machine id is stable.
func TestUBootState(t *testing.T) {
	needE2E(t, false)
	m := arm64BuildVariant(t, "uboot-state", &image.State{Config: stateConfig, Seed: stateSeed}).machine(t, "state")
	id := caseStateFirstBoot(m)
	caseStatePersist(m, id)
}
