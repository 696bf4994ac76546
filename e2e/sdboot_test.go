package e2e

import "testing"

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
