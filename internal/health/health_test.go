package health_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/health"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// TestDeadlineSurvivesRestarts: the deadline counts from the first check in
// this boot, not from each start of the checker; a new boot starts afresh.
func TestDeadlineSurvivesRestarts(t *testing.T) {
	root := filepath.Join(t.TempDir(), "dev")
	if err := sim.New(root, sim.Options{BootFlow: "grub"}); err != nil {
		t.Fatal(err)
	}
	open := func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }
	boot := func(want string) {
		t.Helper()
		if g, notes, err := sim.Reboot(root, false); err != nil || g != want {
			t.Fatalf("boot: %s %v %q, want %s", g, err, notes, want)
		}
	}
	boot("a")
	d, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.TrySpare(); err != nil {
		t.Fatal(err)
	}
	boot("b")
	hook := filepath.Join(root, "etc/tandem/hooks/health/check/10-fail")
	testutil.WriteScript(t, hook, "echo not yet\nexit 1\n")
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	o := health.Options{Open: open, Deadline: time.Minute, Interval: time.Millisecond, Now: func() time.Time { return now }}
	for _, step := range []struct {
		advance time.Duration
		want    health.Verdict
	}{{0, health.Failing}, {40 * time.Second, health.Failing}, {30 * time.Second, health.RolledBack}} {
		now = now.Add(step.advance)
		res, err := health.Check(o) // a fresh start of the checker every time
		if err != nil || res.Verdict != step.want {
			t.Fatalf("at +%v: %+v %v, want %s", step.advance, res, err, step.want)
		}
	}
	boot("a")

	// Run: a check that starts passing before the deadline commits.
	if d, err = open(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.TrySpare(); err != nil {
		t.Fatal(err)
	}
	boot("b")
	calls := 0
	o.Now = func() time.Time { return now }
	o.Progress = func(r health.Result) {
		calls++
		if calls == 3 {
			if err := os.WriteFile(hook, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
				t.Error(err)
			}
		}
	}
	res, err := health.Run(context.Background(), o)
	if err != nil || res.Verdict != health.Committed || calls != 3 {
		t.Fatalf("run: %+v %v after %d failing checks, want committed after 3", res, err, calls)
	}
}

// TestGivenUpTrialIsNotCommitted: once a trial was given up (a fleet
// adapter rolled back while the group runs), a passing check does not
// commit it; the device goes back to the committed group.
func TestGivenUpTrialIsNotCommitted(t *testing.T) {
	root := filepath.Join(t.TempDir(), "dev")
	if err := sim.New(root, sim.Options{BootFlow: "grub"}); err != nil {
		t.Fatal(err)
	}
	open := func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }
	if _, _, err := sim.Reboot(root, false); err != nil {
		t.Fatal(err)
	}
	d, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.TrySpare(); err != nil {
		t.Fatal(err)
	}
	if g, _, err := sim.Reboot(root, false); err != nil || g != "b" {
		t.Fatalf("trial boot: %s %v", g, err)
	}
	if d, err = open(); err != nil {
		t.Fatal(err)
	}
	if err := d.RollBack("rolled back by the operator"); err != nil {
		t.Fatal(err)
	}
	res, err := health.Check(health.Options{Open: open}) // no hooks: the checks pass
	if err != nil || res.Verdict != health.RolledBack || res.Message != "rolled back by the operator" {
		t.Fatalf("check after the rollback: %+v %v, want rolled-back with the rollback's reason", res, err)
	}
	if st, err := device.ReadSimState(root); err != nil || st.Reboot == nil {
		t.Fatalf("no reboot requested (%v)", err)
	}
	if g, _, err := sim.Reboot(root, false); err != nil || g != "a" {
		t.Fatalf("after the rollback the device booted %s (%v), want a", g, err)
	}
	if d, err = open(); err != nil {
		t.Fatal(err)
	}
	if st, err := d.Status(); err != nil || st.Default != "a" {
		t.Fatalf("default %s (%v), want a", st.Default, err)
	}
}

// TestGivenUpTrialRefusesCommit: between a rollback and its reboot, an
// explicit commit (a fleet script, an operator) is refused.
func TestGivenUpTrialRefusesCommit(t *testing.T) {
	root := filepath.Join(t.TempDir(), "dev")
	if err := sim.New(root, sim.Options{BootFlow: "uboot"}); err != nil {
		t.Fatal(err)
	}
	open := func() *device.Device {
		d, err := device.Open(device.Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if _, _, err := sim.Reboot(root, false); err != nil {
		t.Fatal(err)
	}
	if _, err := open().TrySpare(); err != nil {
		t.Fatal(err)
	}
	if g, _, err := sim.Reboot(root, false); err != nil || g != "b" {
		t.Fatalf("trial boot: %s %v", g, err)
	}
	if err := open().RollBack("app crashed"); err != nil {
		t.Fatal(err)
	}
	if _, err := open().Commit(); !errors.Is(err, device.ErrRefused) || !strings.Contains(err.Error(), "app crashed") {
		t.Fatalf("commit of a given-up trial: %v, want refused naming the reason", err)
	}
}

// TestIncompleteNotCommitted: a trial of a group whose install did not
// finish (tried with --force-incomplete) is not committed by passing health
// checks: the check fails with ErrIncomplete (exit 4), and the trial stays
// uncommitted. Issue 11, hardening 12.
func TestIncompleteNotCommitted(t *testing.T) {
	root := filepath.Join(t.TempDir(), "dev")
	if err := sim.New(root, sim.Options{BootFlow: "grub"}); err != nil {
		t.Fatal(err)
	}
	open := func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }
	d, err := open()
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := d.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.BeginWrite("b", "2.0.0", "h"); err != nil {
		t.Fatal(err)
	}
	unlock()
	d.ForceIncomplete = true
	if _, err := d.TrySpare(); err != nil {
		t.Fatal(err)
	}
	if g, _, err := sim.Reboot(root, false); err != nil || g != "b" {
		t.Fatalf("boot: %s %v", g, err)
	}
	testutil.WriteScript(t, filepath.Join(root, "etc/tandem/hooks/health/check/10-ok"), "exit 0\n")
	res, err := health.Check(health.Options{Open: open})
	if !errors.Is(err, device.ErrIncomplete) || res.Verdict == health.Committed {
		t.Fatalf("health check of the incomplete b: %+v %v, want ErrIncomplete", res, err)
	}
	if d, _ = open(); d != nil {
		if st, err := d.Status(); err != nil || !st.CommitPending() {
			t.Fatalf("after the refused commit: %+v %v, want b still on trial", st, err)
		}
	}
}
