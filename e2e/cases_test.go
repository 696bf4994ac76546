package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
)

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

// spare returns the group that is neither active nor default (two groups).
func spare(g string) string {
	if g == "a" {
		return "b"
	}
	return "a"
}

// caseFailedUpdate (d): install a bundle whose system fails to come up
// (bundle v4-exit: init exits and the kernel panics, panic=1 reboots;
// v4-hang: init arms the i6300esb watchdog and hangs, QEMU resets). The
// boot loader tries it attempts times, then starts the committed group.
func caseFailedUpdate(m *Machine, bundle string, attempts int) {
	m.t.Helper()
	info := m.Info()
	def := info.Boot.DefaultGroup
	if info.Boot.ActiveGroup != def {
		m.fatalf("case d needs a committed device; active %s, default %s", info.Boot.ActiveGroup, def)
	}
	bad := spare(def)
	m.Run("tandem update install /data/bundles/" + bundle + ".tandem --reboot set --json > /tmp/install.log")
	m.Reboot()
	for i := 1; i <= attempts; i++ {
		if g, v := m.Booted(false); g != bad || v != "4.0.0" {
			m.fatalf("failed update, attempt %d: group %s version %s, want %s 4.0.0", i, g, v, bad)
		}
		if err := m.VM.ExpectString("TANDEM-E2E failing", bootTimeout); err != nil {
			m.fatalf("attempt %d: %v", i, err)
		}
	}
	if g, _ := m.Booted(true); g != def {
		m.fatalf("after %d failed attempts: group %s booted, want the committed %s", attempts, g, def)
	}
	info = m.expectState(def, def)
	if info.LastUpdate == nil || info.LastUpdate.Status != "rolled-back" || info.LastUpdate.Group != bad {
		m.fatalf("after the failed update: last update %+v, want rolled-back of %s", info.LastUpdate, bad)
	}
	if info.Boot.Trial != nil {
		m.fatalf("after the failed update: trial %+v still pending", info.Boot.Trial)
	}
}

var pauseRe = regexp.MustCompile(`tandem: test pause before (\S+ #\d+ \(\S+\))|TANDEM-E2E rc=(\d+)\r?\n`)

// cutAt runs cmd in the guest with TANDEM_TEST_PAUSE_AT=point, waits until
// tandem pauses there, cuts the power and waits for the next boot (ready).
// It returns the group that booted.
func cutAt(m *Machine, point, cmd string) string {
	m.t.Helper()
	if err := m.VM.Send("TANDEM_TEST_PAUSE_AT=" + point + " " + cmd); err != nil {
		m.fatalf("%v", err)
	}
	g, err := m.VM.Expect(pauseRe, commandTimeout)
	if err != nil {
		m.fatalf("%s with pause at %s: %v", cmd, point, err)
	}
	if g[2] != "" {
		m.fatalf("%s finished (exit status %s) before pause point %s", cmd, g[2], point)
	}
	m.t.Logf("%s: cut before %s", m.Name, g[1])
	m.Cut()
	group, _ := m.Booted(true)
	return group
}

// checkCommitted asserts a committed, consistent device and returns its group.
func checkCommitted(m *Machine) string {
	m.t.Helper()
	info := m.Info()
	g := info.Boot.ActiveGroup
	if info.Boot.DefaultGroup != g || info.Boot.CommitPending || info.Boot.Trial != nil {
		m.fatalf("not a committed device: active %s, default %s, commit pending %v, trial %+v",
			g, info.Boot.DefaultGroup, info.Boot.CommitPending, info.Boot.Trial)
	}
	return g
}

// checkGrubCopies asserts that both copies of the GRUB default name group.
func checkGrubCopies(m *Machine, group string) {
	m.t.Helper()
	for _, f := range []string{"primary", "secondary"} {
		if out := m.Run("cat /boot/efi/tandem/" + f + ".grubenv"); !strings.Contains(out, "tandem_default="+group+"\n") {
			m.fatalf("%s.grubenv does not name %s:\n%s", f, group, out)
		}
	}
}

// caseCutInstall (e): cut the power in the middle of writing a bundle: the
// committed group boots, nothing is pending, and the install then completes.
func caseCutInstall(m *Machine, bundle, version string) {
	m.t.Helper()
	def := checkCommitted(m)
	target := spare(def)
	if err := m.VM.Send("tandem update install /data/bundles/" + bundle + ".tandem --reboot set --json"); err != nil {
		m.fatalf("%v", err)
	}
	// Cut once at least 4 MiB reached the slot.
	if _, err := m.VM.Expect(regexp.MustCompile(`"event":"progress".*"bytes":([4-9]\d{6}|\d{8,})`), commandTimeout); err != nil {
		m.fatalf("install progress: %v", err)
	}
	m.t.Logf("%s: cut during the install", m.Name)
	m.Cut()
	if g, _ := m.Booted(true); g != def {
		m.fatalf("after a cut during the install: group %s booted, want %s", g, def)
	}
	checkCommitted(m)
	m.Run("tandem update install /data/bundles/" + bundle + ".tandem --reboot set --json > /tmp/install.log")
	m.Reboot()
	if g, v := m.Booted(true); g != target || v != version {
		m.fatalf("install after the cut: group %s version %s, want %s %s", g, v, target, version)
	}
	m.Run("tandem system commit")
	checkCommitted(m)
}

// caseCutTryNext (e): cut `tandem system reboot --spare` at each point: the
// device boots the default, or the spare on a proper trial.
func caseCutTryNext(m *Machine, points []string) {
	m.t.Helper()
	for _, p := range points {
		def := checkCommitted(m)
		s := spare(def)
		switch g := cutAt(m, p, "tandem system reboot --spare"); g {
		case def:
			checkCommitted(m)
			m.RebootSpare()
			if g, _ := m.Booted(true); g != s {
				m.fatalf("try-next repeated after the cut at %s: group %s booted, want %s", p, g, s)
			}
		case s:
		default:
			m.fatalf("cut at %s: group %s booted", p, g)
		}
		info := m.expectState(s, def)
		if !info.Boot.CommitPending || info.LastUpdate == nil || info.LastUpdate.Status != "on-trial" {
			m.fatalf("cut at %s: trial of %s: commit pending %v, last update %+v", p, s, info.Boot.CommitPending, info.LastUpdate)
		}
		m.Run("tandem system commit")
		checkCommitted(m)
	}
}

// caseCutCommit (e): try the spare group, then cut `tandem system commit`
// at each point. With attempts left (GRUB) the tried group boots again:
// committed, or still on trial, and repeating the commit completes it. With
// one attempt (systemd-boot) a commit that did not reach the boot loader is
// a rollback: the default boots, tandem reports rolled-back, and the test
// tries and commits again.
func caseCutCommit(m *Machine, points []string, grub bool) {
	m.t.Helper()
	for _, p := range points {
		def := checkCommitted(m)
		s := spare(def)
		m.RebootSpare()
		if g, _ := m.Booted(true); g != s {
			m.fatalf("trial before the commit cut: group %s booted, want %s", g, s)
		}
		g := cutAt(m, p, "tandem system commit")
		info := m.Info()
		switch {
		case g == s && info.Boot.ActiveGroup == s && info.Boot.DefaultGroup == s:
		case g == s && info.Boot.DefaultGroup == def && info.Boot.CommitPending:
			m.t.Logf("%s: cut at %s: %s still on trial; commit again", m.Name, p, s)
		case g == def && !grub && info.Boot.DefaultGroup == def && info.LastUpdate != nil && info.LastUpdate.Status == "rolled-back":
			m.t.Logf("%s: cut at %s: the commit did not reach the boot loader; rolled back to %s, try again", m.Name, p, def)
			m.RebootSpare()
			if g, _ := m.Booted(true); g != s {
				m.fatalf("trial after the rollback: group %s booted, want %s", g, s)
			}
		default:
			m.fatalf("cut at %s during the commit of %s: group %s booted; active %s, default %s, last update %+v",
				p, s, g, info.Boot.ActiveGroup, info.Boot.DefaultGroup, info.LastUpdate)
		}
		m.Run("tandem system commit")
		if got := checkCommitted(m); got != s {
			m.fatalf("cut at %s: repeated commit left %s", p, got)
		}
		if grub {
			checkGrubCopies(m, s)
		}
		if info := m.Info(); info.LastUpdate == nil || info.LastUpdate.Status != "committed" {
			m.fatalf("cut at %s: last update %+v, want committed", p, info.LastUpdate)
		}
	}
}

// commitTrial reboots into the trial that group s of version must be, then
// commits it; what names the step in a failure.
func commitTrial(m *Machine, s, version, what string) {
	m.t.Helper()
	m.Reboot()
	if g, v := m.Booted(true); g != s || v != version {
		m.fatalf("%s: group %s version %s, want %s %s", what, g, v, s, version)
	}
	m.Run("tandem system commit")
	checkCommitted(m)
}

// installDone is the final JSON line of `tandem update install --json`.
type installDone struct {
	Event           string `json:"event"`
	Version         string `json:"version"`
	Method          string `json:"method"`
	Reason          string `json:"reason"`
	BytesDownloaded int64  `json:"bytesDownloaded"`
	BytesReused     int64  `json:"bytesReused"`
	ChunksPatched   int64  `json:"chunksPatched"`
	Requests        int64  `json:"requests"`
}

// parseDone reads the done event from the last line of out.
func parseDone(out string) (installDone, bool) {
	var done installDone
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	i := strings.Index(last, "{")
	ok := i >= 0 && json.Unmarshal([]byte(last[i:]), &done) == nil && done.Event == "done"
	return done, ok
}

// guestInstall installs url in the guest into the spare group with a trial
// set, and returns the done event.
func guestInstall(m *Machine, url string) installDone {
	m.t.Helper()
	out := m.Run("tandem update install " + url + " --reboot set --json | tail -1")
	done, ok := parseDone(out)
	if !ok {
		m.fatalf("install from %s: no done event:\n%s", url, out)
	}
	return done
}

// caseHTTPDelta installs a bundle from an HTTP server on the host (QEMU
// user-mode network) into the spare group: the slots already hold most of
// its chunks, so tandem downloads only part of it (docs/delta.md). Then the
// trial boots and is committed.
func caseHTTPDelta(m *Machine, url, version string, size int64) {
	m.t.Helper()
	def := checkCommitted(m)
	s := spare(def)
	done := guestInstall(m, url)
	m.t.Logf("%s: delta install of %s: downloaded %d of %d bundle bytes in %d requests, reused %d bytes",
		m.Name, version, done.BytesDownloaded, size, done.Requests, done.BytesReused)
	if done.Version != version || done.Requests == 0 || done.BytesDownloaded <= 0 || done.BytesDownloaded >= size/2 || done.BytesReused == 0 {
		m.fatalf("install from %s: %+v; want a delta download of less than half of %d bytes", url, done, size)
	}
	commitTrial(m, s, version, "after the delta install")
}

// caseHTTPPatch installs a bundle over HTTP for which a patch from the
// active group's bundle is published next to it (docs/delta.md, "Patches"):
// the device must find the patch by the bundle hash it installed from,
// choose method patch, and download far fewer bytes than the dynamic path
// (chunk reuse) takes for the same update (dynamic, measured on the host).
// Then the trial boots and is committed.
func caseHTTPPatch(m *Machine, url, version string, dynamic int64) {
	m.t.Helper()
	def := checkCommitted(m)
	s := spare(def)
	done := guestInstall(m, url)
	m.t.Logf("%s: patch install of %s: downloaded %d bytes in %d requests (the dynamic path: %d), %d chunks patched; %s",
		m.Name, version, done.BytesDownloaded, done.Requests, dynamic, done.ChunksPatched, done.Reason)
	if done.Version != version || done.Method != "patch" || done.ChunksPatched == 0 ||
		done.BytesDownloaded <= 0 || done.BytesDownloaded*4 > dynamic {
		m.fatalf("install from %s: %+v; want method patch and at most a quarter of the dynamic path's %d bytes", url, done, dynamic)
	}
	commitTrial(m, s, version, "after the patch install")
}
