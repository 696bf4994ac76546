package health_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/health"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/state"
)

// TestDegradedBootNotCommitted: a trial that tandem init booted with the
// state degraded is not committed although its health hooks pass — the
// check fails, says why, and rolls back at the deadline — unless the state
// configuration sets commit-when-degraded = true (issue 12, "a fleet health
// check can then refuse to commit").
func TestDegradedBootNotCommitted(t *testing.T) {
	tmp := t.TempDir()
	cfg := filepath.Join(tmp, "10-app.toml")
	if err := os.WriteFile(cfg, []byte("[data-partition]\nlabel = \"data\"\n\n[persist.\"/var/lib/app\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(tmp, "dev")
	if err := sim.New(root, sim.Options{BootFlow: "grub", State: []string{cfg}}); err != nil {
		t.Fatal(err)
	}
	open := func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }
	boot := func(want string) {
		t.Helper()
		if g, notes, err := sim.Reboot(root, false); err != nil || g != want {
			t.Fatalf("boot: %s %v %q, want %s", g, err, notes, want)
		}
	}
	report := func(status string) {
		t.Helper()
		p := filepath.Join(root, state.BootReportPath)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := `{"status":"` + status + `","error":"mount /dev/vda4: structure needs cleaning","overlay":"discard","actions":[]}`
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	try := func() {
		t.Helper()
		d, err := open()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.TrySpare(); err != nil {
			t.Fatal(err)
		}
	}
	boot("a")
	try()
	boot("b")
	report(state.BootDegraded) // no health hooks: they would all pass
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	o := health.Options{Open: open, Deadline: time.Minute, Now: func() time.Time { return now }}
	res, err := health.Check(o)
	if err != nil || res.Verdict != health.Failing || !strings.Contains(res.Message, "structure needs cleaning") ||
		!strings.Contains(res.Message, "commit-when-degraded = true") {
		t.Fatalf("degraded boot: %+v %v, want failing with the reason", res, err)
	}
	now = now.Add(2 * time.Minute)
	if res, err = health.Check(o); err != nil || res.Verdict != health.RolledBack {
		t.Fatalf("degraded boot past the deadline: %+v %v, want rolled back", res, err)
	}
	boot("a")

	// A boot report that says ok commits.
	try()
	boot("b")
	report(state.BootOK)
	if res, err = health.Check(o); err != nil || res.Verdict != health.Committed {
		t.Fatalf("ok boot: %+v %v, want committed", res, err)
	}

	// The opt-out commits a degraded boot.
	try()
	boot("a")
	report(state.BootDegraded)
	optOut := filepath.Join(root, state.ConfigDir, "90-degraded.toml")
	if err := os.WriteFile(optOut, []byte("commit-when-degraded = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err = health.Check(o); err != nil || res.Verdict != health.Committed {
		t.Fatalf("degraded boot with commit-when-degraded: %+v %v, want committed", res, err)
	}
}
