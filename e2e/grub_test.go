package e2e

import "testing"

// TestGrubABCycle runs cases a-c on one device booted by the real GRUB.
func TestGrubABCycle(t *testing.T) {
	needE2E(t, true)
	e := x86Build(t, "grub")
	m := e.machine(t, "abc")
	caseFirstBoot(m)
	caseInstallCommit(m)
	caseRollback(m)
}
