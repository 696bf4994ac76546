package e2e

import (
	"fmt"
	"os/exec"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

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
	commitTrial(m, s, version, "install after the cuts")
}

// TestSDBootCountCut cuts the power while systemd-boot counts a trial
// attempt down (the rename of tandem-<n>-<G>+2.conf to +1-1.conf by the
// firmware's FAT driver, before the kernel starts): at the first write to
// the ESP after the firmware started systemd-boot (the FAT's first sector,
// where the volume's dirty flag is, or the directory), at the first write to
// loader/entries, and half a second after it. After each cut the host
// checks the ESP with fsck.fat and lists loader/entries with mtools: the
// committed group's good entry and exactly one whole entry of the trial,
// counted or not (+2, or +1-1). The trial then boots exactly the attempts
// its name has left, and the committed group after them, with the trial's
// entry at +0-2: no attempt gained (or the trial commits and stays).
func TestSDBootCountCut(t *testing.T) {
	needE2E(t, false)
	needTool(t, "fsck.fat")
	m := x86Build(t, image.LoaderSDBootCount).machine(t, "countcut")
	caseFirstBoot(m)
	spans := func() []span { return espSpans(m, true, "/loader/entries") }
	entryRe := regexp.MustCompile(`^tandem-\d+-([a-z]+)(?:\+(\d)(?:-(\d))?)?\.conf$`)
	left := func(s, def string) int {
		fsckESP(m)
		out, err := exec.Command("mdir", "-b", "-i", fmt.Sprintf("%s@@%d", m.Disk, espOffset), "::/loader/entries").CombinedOutput()
		if err != nil {
			m.fatalf("mdir loader/entries: %v: %s", err, out)
		}
		var good, trial []string
		n := -1
		for _, p := range strings.Fields(string(out)) {
			e := entryRe.FindStringSubmatch(path.Base(p))
			switch {
			case e == nil:
				m.fatalf("loader/entries after the cut: unexpected %s", p)
			case e[1] == def && e[2] == "":
				good = append(good, p)
			case e[1] == s && e[2] != "":
				l, _ := strconv.Atoi(e[2])
				d := 0
				if e[3] != "" {
					d, _ = strconv.Atoi(e[3])
				}
				if l+d != 2 || l < 1 {
					m.fatalf("loader/entries after the cut: %s, want +2 (not counted) or +1-1 (counted)", p)
				}
				trial, n = append(trial, p), l
			}
		}
		if len(good) != 1 || len(trial) != 1 {
			m.fatalf("loader/entries after the cut: %s\nwant one good entry of %s and one counted entry of %s", out, def, s)
		}
		if e := string(espRead(m, strings.TrimPrefix(trial[0], "::"))); !strings.Contains(e, "linux /tandem/"+s+"/vmlinuz\n") || !strings.Contains(e, "tandem.group="+s+"\n") {
			m.fatalf("%s after the cut is not whole:\n%s", trial[0], e)
		}
		return n
	}
	install := func() {
		m.Run("tandem update install /data/bundles/v2.tandem --reboot set --json > /tmp/install.log")
		m.Reboot()
	}
	rolledBack := regexp.MustCompile(`^tandem-1-a\.conf tandem-\d+-b\+0-2\.conf$`)
	trialCycle(m, install, bootCut{name: "at the first write to the ESP", write: "any"}, spans, left, false)
	checkEntries(m, rolledBack)
	trialCycle(m, m.RebootSpare, bootCut{name: "at the first write to loader/entries", write: "target"}, spans, left, false)
	checkEntries(m, rolledBack)
	trialCycle(m, m.RebootSpare, bootCut{name: "0.5 s after the write to loader/entries", write: "target", delay: 500 * time.Millisecond}, spans, left, true)
	checkEntries(m, regexp.MustCompile(`^tandem-1-a\.conf tandem-\d+-b\.conf$`))
}

// checkEntries asserts the loader entries on the ESP (sorted by name,
// separated by blanks).
func checkEntries(m *Machine, want *regexp.Regexp) {
	m.t.Helper()
	if got := strings.Join(strings.Fields(m.Run("ls /boot/efi/loader/entries")), " "); !want.MatchString(got) {
		m.fatalf("loader entries %q, want %s", got, want)
	}
}

// TestSDBootUKI runs cases a–c on systemd-boot with boot counting where
// each group boots a unified kernel image through the real systemd-stub
// (systemd-boot-efi's linuxx64.efi.stub with .osrel, .cmdline, .linux and
// .initrd added by objcopy; slot "uki", entry "efi /tandem/<G>/linux.efi")
// and a command line slot: the system that boots must show the new UKI's
// initramfs and the new command line, and systemd-stub must have started it.
func TestSDBootUKI(t *testing.T) {
	needE2E(t, false)
	needTool(t, "objcopy")
	m := x86Build(t, image.LoaderSDBootUKI).machine(t, "abc")
	caseFirstBoot(m)
	checkUKI(m, "a", "1.0.0", "tandem-1-a.conf")
	caseInstallCommit(m)
	checkUKI(m, "b", "2.0.0", "tandem-1-a.conf tandem-2-b.conf")
	caseRollback(m)
	checkUKI(m, "b", "2.0.0", "tandem-2-b.conf tandem-3-a+0-2.conf")
}

// checkUKI is checkBootFiles for the UKI image, and checks that systemd-stub
// booted the running system from the group's UKI entry.
func checkUKI(m *Machine, g, version, entries string) {
	m.t.Helper()
	checkBootFiles(m, g, version, entries)
	if out := m.Run("tr -d '\\000' < /sys/firmware/efi/efivars/StubInfo-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"); !strings.Contains(out, "systemd-stub") {
		m.fatalf("StubInfo %q: the system was not started by systemd-stub", out)
	}
	for _, e := range strings.Fields(entries) {
		if strings.Contains(e, "-"+g+".conf") || strings.Contains(e, "-"+g+"+") {
			if out := m.Run("cat /boot/efi/loader/entries/" + e); !strings.Contains(out, "efi /tandem/"+g+"/linux.efi\n") {
				m.fatalf("entry %s:\n%s\nwant efi /tandem/%s/linux.efi", e, out, g)
			}
		}
	}
}
