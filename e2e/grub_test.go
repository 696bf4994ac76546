package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The GRUB image: OVMF, a standalone GRUB EFI image, bootloader/grub/tandem.cfg,
// boot flow grub with attempts = 2.

// TestGrubABCycle runs cases a-c, then one power cut during a commit, on
// one device booted by the real GRUB (the CI subset).
func TestGrubABCycle(t *testing.T) {
	needE2E(t, true)
	m := x86Build(t, "grub").machine(t, "abc")
	caseFirstBoot(m)
	caseInstallCommit(m)
	caseRollback(m)
	// The commit's second rename: primary.grubenv names the new default, secondary the old.
	caseCutCommit(m, []string{"rename:2"}, true)
}

// TestGrubFailedUpdate runs case d: a system that panics, and one that hangs
// until the i6300esb watchdog resets the machine, are each tried twice, then
// the committed group boots.
func TestGrubFailedUpdate(t *testing.T) {
	needE2E(t, true)
	m := x86Build(t, "grub").machine(t, "failed")
	caseFirstBoot(m)
	caseFailedUpdate(m, "v4-exit", 2)
	caseFailedUpdate(m, "v4-hang", 2)
}

// TestGrubPowerCuts runs case e: power cuts during an install, at each write
// of try-next (state.json, trial.grubenv) and of commit (primary, secondary,
// trial block, state.json). Then it installs v3 over HTTP from the host,
// which must be a delta download, and then v5 by the patch from v3
// published next to it.
func TestGrubPowerCuts(t *testing.T) {
	needE2E(t, true)
	e := x86Build(t, "grub")
	m := e.machine(t, "cuts")
	caseFirstBoot(m)
	caseCutInstall(m, "v2", "2.0.0")
	caseCutTryNext(m, []string{"rename:1", "rename:2", "syncdir:2"})
	caseCutCommit(m, []string{"rename:1", "syncdir:1", "rename:3", "rename:4"}, true)
	// Then a delta install over HTTP: the slots hold most of v3's chunks.
	st, err := os.Stat(filepath.Join(e.www, "v3.tandem"))
	if err != nil {
		t.Fatal(err)
	}
	base := e.serve(t)
	caseHTTPDelta(m, base+"v3.tandem", "3.0.0", st.Size())
	// The device now runs v3, installed from v3.tandem: it finds the patch
	// by that bundle's hash.
	t0 := time.Now()
	dynamic := e.patchRelease(t, "v3", "v5", "5.0.0", strings.Replace(base, "10.0.2.2", "127.0.0.1", 1))
	caseHTTPPatch(m, base+"v5.tandem", "5.0.0", dynamic)
	t.Logf("the patch case took %s", time.Since(t0).Round(time.Second))
}

// grubWriteRe is GRUB's debug line of a disk write (debug=efidisk, set for
// the run of tandem.cfg by EFI/BOOT/e2e-debug.cfg): GRUB prints it just
// before it hands the sectors to the firmware. The only write in that run
// is save_env of trial.grubenv.
var grubWriteRe = regexp.MustCompile(`: writing 0x[0-9a-f]+ sectors at the sector`)

// grubOpenRe is GRUB's third disk open in the run of tandem.cfg (debug
// lines), the one of load_env of trial.grubenv, before save_env's.
var grubOpenRe = regexp.MustCompile(`(?s)(?:opening hd0 succeeded.*?){3}`)

// TestGrubSaveEnvCut cuts the power while GRUB counts a trial attempt down
// (save_env rewrites trial.grubenv in place, before GRUB boots the trial;
// tandem.cfg runs before any menu or countdown): at load_env of the block
// just before (GRUB's debug lines of its disk opens), at GRUB's debug line of
// the write, at the first change of the block's sectors on the disk (GRUB
// writes the 1024 bytes one sector at a time: this cut falls between them),
// and a second after it. After each cut the host reads the three blocks with
// grub-editenv and the ESP with fsck.fat: both default copies name the
// committed group, and the trial block is whole with the attempt counted or
// not. The trial then boots exactly the attempts left, and the committed
// group after them (or the trial commits and stays). Last, a block that
// storage without atomic sector writes would leave unreadable (zeroed from
// the host during the cut): the committed group boots, tandem reports the
// rollback, and the next trial works.
func TestGrubSaveEnvCut(t *testing.T) {
	needE2E(t, false)
	needTool(t, "grub-editenv")
	m := x86Build(t, "grub").machine(t, "saveenv")
	caseFirstBoot(m)
	m.Run("echo 'set debug=efidisk' > /boot/efi/EFI/BOOT/e2e-debug.cfg && sync")
	spans := func() []span { return espSpans(m, false, "/tandem/trial.grubenv") }
	left := func(s, def string) int {
		fsckESP(m)
		for _, f := range []string{"primary", "secondary"} {
			if v := grubVars(m, f+".grubenv"); v["tandem_default"] != def {
				m.fatalf("%s.grubenv after the cut: %v, want tandem_default=%s", f, v, def)
			}
		}
		v := grubVars(m, "trial.grubenv")
		if v["tandem_trial"] != s || (v["tandem_trial_left"] != "2" && v["tandem_trial_left"] != "1") {
			m.fatalf("trial.grubenv after the cut: %v, want tandem_trial=%s with 2 (not counted) or 1 (counted) attempts left", v, s)
		}
		n, _ := strconv.Atoi(v["tandem_trial_left"])
		return n
	}
	install := func() {
		m.Run("tandem update install /data/bundles/v2.tandem --reboot set --json > /tmp/install.log")
		m.Reboot()
	}
	// GRUB 2.06 writes the block one sector at a time, each after its debug
	// line; the first disk open after tandem.cfg's sourcing reads the script,
	// the second primary.grubenv, the third trial.grubenv (load_env), the
	// fourth is save_env's. The host reacts in about a line's time.
	trialCycle(m, install, bootCut{name: "at load_env of trial.grubenv", line: grubOpenRe}, spans, left, false)
	trialCycle(m, m.RebootSpare, bootCut{name: "at GRUB's write line", line: grubWriteRe}, spans, left, false)
	trialCycle(m, m.RebootSpare, bootCut{name: "at the first sector written", line: grubWriteRe, write: "target"}, spans, left, false)
	trialCycle(m, m.RebootSpare, bootCut{name: "1 s after the write", line: grubWriteRe, write: "target", delay: time.Second}, spans, left, true)

	// A torn sector: the block's first sector (both variables) zeroed.
	def := checkCommitted(m)
	s := spare(def)
	m.RebootSpare()
	m.cutBoot(bootCut{name: "torn block", line: grubWriteRe, write: "target"}, spans, func() {
		sp := spans()
		f, err := os.OpenFile(m.Disk, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteAt(make([]byte, 512), sp[0].off)
			f.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	if g, _ := m.Booted(true); g != def {
		m.fatalf("unreadable trial block: group %s booted, want the committed %s", g, def)
	}
	if info := m.expectState(def, def); info.LastUpdate == nil || info.LastUpdate.Status != "rolled-back" || info.Boot.Trial != nil {
		m.fatalf("unreadable trial block: last update %+v, trial %+v; want rolled-back, no trial", info.LastUpdate, info.Boot.Trial)
	}
	m.RebootSpare()
	if g, _ := m.Booted(true); g != s {
		m.fatalf("trial after the torn block: group %s booted, want %s", g, s)
	}
	m.Run("tandem system commit")
	checkGrubCopies(m, s)
}

// grubVars reads a grubenv block of <ESP>/tandem from the powered-off disk
// with grub-editenv.
func grubVars(m *Machine, name string) map[string]string {
	m.t.Helper()
	p := filepath.Join(m.t.TempDir(), name)
	b := espRead(m, "/tandem/"+name)
	if len(b) != 1024 {
		m.fatalf("%s: %d bytes, want 1024", name, len(b))
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		m.t.Fatal(err)
	}
	out, err := exec.Command("grub-editenv", p, "list").CombinedOutput()
	if err != nil {
		m.fatalf("grub-editenv %s list: %v: %s", name, err, out)
	}
	vars := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			vars[k] = v
		}
	}
	return vars
}
