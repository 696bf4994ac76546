package e2e

import (
	"testing"

	"github.com/tandem-ota/tandem/internal/e2e/image"
)

// The flows that drive another update system's boot integration, on the
// real GRUB (OVMF): each image boots through a GRUB script written from that
// project's description of its variables (internal/e2e/image/adopt.go), and
// tandem runs the A/B cycle on it: first boot, install and commit, a
// rollback of an uncommitted trial, and a power cut inside the commit at
// each point given (the boot loader reads the old state, which rolls the
// trial back, or the new one). These are in make test-e2e only.

// adoptCycle runs the cycle on a fresh machine. health: the flow needs the
// committed group marked good after each boot (RAUC's): run tandem health
// then, as the shipped units do.
func adoptCycle(t *testing.T, loader string, cuts []string, health bool) {
	m := x86Build(t, loader).machine(t, "adopt")
	caseFirstBoot(m)
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
	caseCutCommit(m, cuts, false)
}

// Mender's commit writes lock 2, env 2, lock 2, lock 1, env 1, lock 1: a cut
// before env 2's rename leaves copy 2 marked as being edited (GRUB restores
// it from copy 1: the trial's counted boot, so it rolls back); a cut before
// env 1's rename leaves copy 1 marked (GRUB restores it from copy 2: the
// commit).
func TestAdoptMenderGrub(t *testing.T) {
	needE2E(t, false)
	adoptCycle(t, image.LoaderMenderGrub, []string{"rename:2", "rename:5"}, false)
}

// RAUC's grubenv is one file: a cut before its rename keeps the trial's
// TRY=1, and GRUB falls back to the committed slot.
func TestAdoptRAUCGrub(t *testing.T) {
	needE2E(t, false)
	adoptCycle(t, image.LoaderRAUCGrub, []string{"rename:1"}, true)
}

// Rugix's commit writes secondary, its .sha1, primary, its .sha1: a cut
// before the primary's rename leaves the old primary winning (the one-shot
// trial is over: rollback); a cut before the primary's .sha1 leaves a
// primary that fails its check, and the new secondary wins.
func TestAdoptRugixGrub(t *testing.T) {
	needE2E(t, false)
	adoptCycle(t, image.LoaderRugixGrub, []string{"rename:3", "rename:4"}, false)
}
