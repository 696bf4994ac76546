package e2e

import (
	"regexp"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/e2e/image"
)

// The flows that drive Mender's and RAUC's U-Boot integrations, on the real
// U-Boot (Debian's qemu_arm64 build): each image boots through a U-Boot
// script written from that project's description of its variables
// (internal/e2e/image/adopt.go), with the environment in U-Boot's
// redundant layout in two files that the script writes itself and that
// fw_printenv/fw_setenv read and write in Linux. At the first boot
// `tandem adopt` must find the integration in the guest and write the
// [boot-flow] table the image runs with; then the A/B cycle (install and
// commit, a rollback of an uncommitted trial), power cuts in tandem's
// commit (before fw_setenv, and after it before state.json), and one while
// the script itself saves the environment. These are in make test-e2e only.

// adoptUBootCycle runs the cycle on a fresh machine. health: the flow needs
// the committed group marked good after each boot (RAUC's).
func adoptUBootCycle(t *testing.T, loader string, health bool) {
	needArm64Tools(t)
	m := arm64BuildWith(t, loader, loader, nil).machine(t, "adopt")
	caseFirstBoot(m)
	caseAdoptDetect(m, loader)
	if health {
		m.Run("tandem health --once")
	}
	caseInstallCommit(m)
	if health {
		m.Run("tandem health --once")
	}
	caseRollback(m)
	if health {
		m.Run("tandem health --once")
	}
	caseCutCommit(m, []string{"run:1", "rename:1"}, false)
	if health {
		m.Run("tandem health --once")
	}
	caseCutSaveenv(m, health)
}

// Mender's commit is one fw_setenv: a cut before it leaves the trial's
// counted boot (bootcount=1), and U-Boot's count above bootlimit rolls
// back; a cut after it (before state.json) leaves the commit.
func TestAdoptMenderUBoot(t *testing.T) {
	needE2E(t, false)
	adoptUBootCycle(t, image.LoaderMenderUBoot, false)
}

// RAUC's commit is one fw_setenv too: a cut before it leaves the trial
// with an attempt left, which boots again and is committed.
func TestAdoptRAUCUBoot(t *testing.T) {
	needE2E(t, false)
	adoptUBootCycle(t, image.LoaderRAUCUBoot, true)
}

// caseAdoptDetect: `tandem adopt --write` in the guest finds the
// integration (Mender's mender.conf and fw_env.config, RAUC's system.conf),
// reads its boot state through fw_printenv (default group a), and writes
// the same [boot-flow] table as the image's system.toml.
func caseAdoptDetect(m *Machine, loader string) {
	m.t.Helper()
	out := m.Run("tandem --config /tmp/adopted.toml adopt --write")
	if !strings.Contains(out, "boot flow "+loader+", default group a") {
		m.fatalf("tandem adopt: want boot flow %s, default group a:\n%s", loader, out)
	}
	table := func(file string) string {
		s := m.Run(`sed -n '/^\[boot-flow\]/,$p' ` + file)
		return strings.TrimSpace(strings.ReplaceAll(s, "\r", ""))
	}
	got, want := table("/tmp/adopted.toml"), table("/etc/tandem/system.toml")
	if got == "" || got != want {
		m.fatalf("tandem adopt wrote the boot flow\n%s\nthe image runs with\n%s", got, want)
	}
	compat := m.Run("grep '^compatible' /tmp/adopted.toml")
	if !strings.Contains(compat, `"`+image.Arm64Compatible+`"`) {
		m.fatalf("tandem adopt: %s, want compatible %q", compat, image.Arm64Compatible)
	}
	m.t.Logf("%s: tandem adopt: %s", m.Name, strings.TrimSpace(out))
}

// saveenvRe is what the adopted scripts print just before they write an
// environment copy (e2e_saveenv).
var saveenvRe = regexp.MustCompile(`E2E-SAVEENV (\S+)`)

// caseCutSaveenv: cut the power as the script saves the environment on the
// trial's first boot (Mender's bootcount, RAUC's BOOT_<name>_LEFT). The
// copy being written holds the old count, a torn copy or the new count;
// either way the device boots the trial again (on trial, and a commit
// completes it) or, when the count had reached Mender's bootlimit, rolls
// back to the committed group.
func caseCutSaveenv(m *Machine, health bool) {
	m.t.Helper()
	def := checkCommitted(m)
	s := spare(def)
	m.RebootSpare()
	g, err := m.VM.Expect(saveenvRe, bootTimeout)
	if err != nil {
		m.fatalf("saveenv of the trial boot: %v", err)
	}
	m.t.Logf("%s: cut while U-Boot writes %s", m.Name, g[1])
	m.Cut()
	booted, _ := m.Booted(true)
	info := m.Info()
	switch {
	case booted == s && info.Boot.ActiveGroup == s && info.Boot.DefaultGroup == def && info.Boot.CommitPending:
		m.Run("tandem system commit")
		if got := checkCommitted(m); got != s {
			m.fatalf("commit after the saveenv cut left %s", got)
		}
	case booted == def && info.Boot.DefaultGroup == def && info.LastUpdate != nil && info.LastUpdate.Status == "rolled-back":
		m.t.Logf("%s: the count was saved before the cut: rolled back to %s", m.Name, def)
		checkCommitted(m)
	default:
		m.fatalf("after a cut while U-Boot saves the environment: group %s booted; active %s, default %s, last update %+v",
			booted, info.Boot.ActiveGroup, info.Boot.DefaultGroup, info.LastUpdate)
	}
	if health {
		m.Run("tandem health --once")
	}
}
