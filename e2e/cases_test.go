package e2e

// The cases of issue 5, shared by the boot loaders. Each takes a running
// machine in the state the previous case left: a, then b, then c.

// caseFirstBoot (a): the factory image boots group a, which is active and default.
func caseFirstBoot(m *Machine) {
	m.t.Helper()
	g, v := m.Booted(true)
	if g != "a" || v != "1.0.0" {
		m.fatalf("first boot: group %s version %s, want a 1.0.0", g, v)
	}
	info := m.expectState("a", "a")
	if info.Boot.CommitPending || info.Boot.Trial != nil {
		m.fatalf("first boot: commit pending %v, trial %+v", info.Boot.CommitPending, info.Boot.Trial)
	}
}

// caseInstallCommit (b): install signed v2 into b, reboot: the boot loader
// starts b on trial; commit; reboot: b again.
func caseInstallCommit(m *Machine) {
	m.t.Helper()
	m.Run("tandem update install /data/bundles/v2.tandem --reboot set --json > /tmp/install.log")
	info := m.expectState("a", "a")
	if info.Boot.Trial == nil || info.Boot.Trial.Group != "b" {
		m.fatalf("after install: trial %+v, want b", info.Boot.Trial)
	}
	m.Reboot()
	if g, v := m.Booted(true); g != "b" || v != "2.0.0" {
		m.fatalf("trial boot: group %s version %s, want b 2.0.0", g, v)
	}
	info = m.expectState("b", "a")
	if !info.Boot.CommitPending || info.LastUpdate == nil || info.LastUpdate.Status != "on-trial" {
		m.fatalf("trial boot: commit pending %v, last update %+v", info.Boot.CommitPending, info.LastUpdate)
	}
	m.Run("tandem system commit")
	info = m.expectState("b", "b")
	if info.Boot.CommitPending || info.Boot.Trial != nil {
		m.fatalf("after commit: commit pending %v, trial %+v", info.Boot.CommitPending, info.Boot.Trial)
	}
	m.Reboot()
	if g, v := m.Booted(true); g != "b" || v != "2.0.0" {
		m.fatalf("after commit: group %s version %s, want b 2.0.0", g, v)
	}
	info = m.expectState("b", "b")
	if info.LastUpdate == nil || info.LastUpdate.Status != "committed" {
		m.fatalf("after commit and reboot: last update %+v, want committed", info.LastUpdate)
	}
}

// caseRollback (c): install v3 into a, reboot onto it without committing,
// reboot again: back on b, and tandem reports the uncommitted trial.
func caseRollback(m *Machine) {
	m.t.Helper()
	m.Run("tandem update install /data/bundles/v3.tandem --reboot set --json > /tmp/install.log")
	m.Reboot()
	if g, v := m.Booted(true); g != "a" || v != "3.0.0" {
		m.fatalf("trial of v3: group %s version %s, want a 3.0.0", g, v)
	}
	m.expectState("a", "b")
	m.Reboot()
	// attempts > 1 (grub) boots the trial again until the attempts are used up.
	for {
		g, v := m.Booted(true)
		if g == "b" {
			if v != "2.0.0" {
				m.fatalf("rollback: version %s, want 2.0.0", v)
			}
			break
		}
		if g != "a" || m.Boots > 6 {
			m.fatalf("rollback: boot %d started group %s", m.Boots, g)
		}
		m.expectState("a", "b")
		m.Reboot()
	}
	info := m.expectState("b", "b")
	if info.LastUpdate == nil || info.LastUpdate.Status != "rolled-back" || info.LastUpdate.Group != "a" {
		m.fatalf("after rollback: last update %+v, want rolled-back of a", info.LastUpdate)
	}
}
