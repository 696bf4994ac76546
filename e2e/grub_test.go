package e2e

import (
	"os"
	"path/filepath"
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
