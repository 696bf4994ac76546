package e2e

import (
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/e2e/image"
)

// TestSDBootABCycle runs cases a-c on a device booted by the real
// systemd-boot (OVMF, loader entries on the ESP, boot flow systemd-boot):
// tandem writes LoaderEntryOneShot and LoaderEntryDefault through efivarfs
// inside the guest, and the firmware keeps them across reboots and cuts.
// In the CI subset: efivarfs semantics cannot be proved in the simulator.
func TestSDBootABCycle(t *testing.T) {
	needE2E(t, true)
	m := x86Build(t, "systemd-boot").machine(t, "abc")
	caseFirstBoot(m)
	caseInstallCommit(m)
	caseRollback(m)
	// Power cuts: try-next before the LoaderEntryOneShot write (write #2,
	// after state.json), and commit before the LoaderEntryDefault write
	// (write #1) and before state.json (write #2).
	caseCutTryNext(m, []string{"write:2"})
	caseCutCommit(m, []string{"write:1", "write:2"}, false)
}

// The systemd-boot image with boot counting (image.LoaderSDBootCount): each
// group's kernel, initramfs and command line are file slots on the ESP, and
// tandem writes the group's loader entry; a trial is an entry named
// "+2" (attempts = 2) that the real systemd-boot counts down.

// TestSDBootCounting runs cases a–c on systemd-boot with boot counting:
// every bundle carries the kernel, an initramfs and a command line of its
// version, and the system that boots must show the new ones (the CI subset).
func TestSDBootCounting(t *testing.T) {
	needE2E(t, true)
	m := x86Build(t, image.LoaderSDBootCount).machine(t, "abc")
	caseFirstBoot(m)
	checkBootFiles(m, "a", "1.0.0", "tandem-1-a.conf")
	caseInstallCommit(m)
	checkBootFiles(m, "b", "2.0.0", "tandem-1-a.conf tandem-2-b.conf")
	caseRollback(m) // v3 into a, booted twice by the counter, then b
	checkBootFiles(m, "b", "2.0.0", "tandem-2-b.conf tandem-3-a+0-2.conf")
}

// TestSDBootCountingFailedUpdate runs case d: a system that panics, and one
// that hangs until the i6300esb watchdog resets the machine, are each
// started exactly twice by systemd-boot's counter, then the committed group.
func TestSDBootCountingFailedUpdate(t *testing.T) {
	needE2E(t, false)
	m := x86Build(t, image.LoaderSDBootCount).machine(t, "failed")
	caseFirstBoot(m)
	caseFailedUpdate(m, "v4-exit", 2)
	checkBootFiles(m, "a", "1.0.0", "tandem-1-a.conf tandem-2-b+0-2.conf")
	// The install removed b's bad entry, so the new one takes generation 2 again.
	caseFailedUpdate(m, "v4-hang", 2)
	checkBootFiles(m, "a", "1.0.0", "tandem-1-a.conf tandem-2-b+0-2.conf")
}

// TestSDBootCountingPowerCuts runs case e on the boot writes of install,
// try-next and commit (docs/testing.md lists the points and why each).
func TestSDBootCountingPowerCuts(t *testing.T) {
	needE2E(t, false)
	m := x86Build(t, image.LoaderSDBootCount).machine(t, "cuts")
	caseFirstBoot(m)
	// 4 MiB into the install: inside b's kernel file on the ESP.
	caseCutInstall(m, "v2", "2.0.0")
	// The spare's entry removed (and its directory fsync) before its boot files are written.
	caseCutInstallAt(m, "v3", "3.0.0", []string{"remove:1", "syncdir:1"})
	// try-next: the spare's old entry removed, its directory fsync, the new
	// entry's content, after its rename (before the fsync under the new
	// name: the vfat window), before the directory fsync.
	caseCutTryNext(m, []string{"remove:1", "syncdir:2", "write:2", "fsync:4", "syncdir:3"})
	// commit: the good entry's content, after its rename (vfat window), the
	// counted entry's removal, state.json.
	caseCutCommit(m, []string{"write:1", "fsync:2", "remove:1", "rename:2"}, false)
	entries := strings.Fields(m.Run("ls /boot/efi/loader/entries"))
	if len(entries) != 2 || strings.Contains(strings.Join(entries, " "), "+") {
		m.fatalf("entries after the cuts: %v, want one good entry per group", entries)
	}
}

// checkBootFiles asserts that the running system is group g booted with the
// command line and initramfs of version, and lists the loader entries.
func checkBootFiles(m *Machine, g, version, entries string) {
	m.t.Helper()
	cmdline := m.Run("cat /proc/cmdline")
	if !strings.Contains(cmdline, "tandem.e2e_cmdline="+version) || !strings.Contains(cmdline, "tandem.group="+g) {
		m.fatalf("kernel command line %q: want tandem.e2e_cmdline=%s and tandem.group=%s", cmdline, version, g)
	}
	if got := strings.TrimSpace(m.Run("cat /dev/.tandem-e2e-initramfs")); !strings.HasSuffix(got, version) {
		m.fatalf("booted by the initramfs of %q, want %s", got, version)
	}
	if got := strings.Join(strings.Fields(m.Run("ls /boot/efi/loader/entries")), " "); got != entries {
		m.fatalf("loader entries %q, want %q", got, entries)
	}
}

// caseCutInstallAt cuts `update install` at each pause point: the committed
// group boots each time; then the install completes, and its trial boots and
// is committed.
func caseCutInstallAt(m *Machine, bundle, version string, points []string) {
	m.t.Helper()
	cmd := "tandem update install /data/bundles/" + bundle + ".tandem --reboot set --json > /tmp/install.log"
	for _, p := range points {
		def := checkCommitted(m)
		if g := cutAt(m, p, cmd); g != def {
			m.fatalf("install cut at %s: group %s booted, want the committed %s", p, g, def)
		}
		checkCommitted(m)
	}
	s := spare(checkCommitted(m))
	m.Run(cmd)
	m.Reboot()
	if g, v := m.Booted(true); g != s || v != version {
		m.fatalf("install after the cuts: group %s version %s, want %s %s", g, v, s, version)
	}
	m.Run("tandem system commit")
	checkCommitted(m)
}
