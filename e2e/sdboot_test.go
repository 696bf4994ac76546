package e2e

import "testing"

// TestSDBootABCycle runs cases a-c on a device booted by the real
// systemd-boot (OVMF, loader entries on the ESP, boot flow systemd-boot):
// tandem writes LoaderEntryOneShot and LoaderEntryDefault through efivarfs
// inside the guest, and the firmware keeps them across reboots.
func TestSDBootABCycle(t *testing.T) {
	needE2E(t, false)
	m := x86Build(t, "systemd-boot").machine(t, "abc")
	caseFirstBoot(m)
	caseInstallCommit(m)
	caseRollback(m)
}
