package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/health"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/sim"
)

func newAgent(t *testing.T) (*fleet.Agent, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "dev")
	open := fleettest.NewDevice(t, root, sim.Options{BootFlow: "grub"})
	return &fleet.Agent{Open: open, Adapter: "test"}, filepath.Join(root, "var/lib/tandem/fleet/test.json")
}

// deep returns a JSON object whose field "x" nests n arrays.
func deep(n int) json.RawMessage {
	return json.RawMessage(`{"status":"init","x":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`)
}

// issue 11, hardening 3: a 20 KB command with 5,000-deep JSON in an unknown
// field became a 50 MB job file (indented) that the adapter refused to read
// on every restart. Begin now refuses it with a reason the adapter reports,
// and writes nothing.
func TestBeginRefusesDeepExtra(t *testing.T) {
	a, job := newAgent(t)
	_, err := a.Begin(fleet.Job{ID: "c1", Source: "https://example.com/v2.tandem", Extra: deep(5000)})
	if !errors.Is(err, fleet.ErrJobData) || !strings.Contains(err.Error(), "deep") {
		t.Fatalf("Begin with a 5,000-deep command: %v, want ErrJobData naming the depth", err)
	}
	if _, err := os.Stat(job); !os.IsNotExist(err) {
		t.Fatalf("a job file was written for a refused command: %v", err)
	}
	big := json.RawMessage(`{"x":"` + strings.Repeat("a", fleet.MaxExtra) + `"}`)
	if _, err := a.Begin(fleet.Job{ID: "c2", Extra: big}); !errors.Is(err, fleet.ErrJobData) {
		t.Fatalf("Begin with a %d-byte command: %v, want ErrJobData", len(big), err)
	}
	if o, err := a.Outcome(); err != nil || o.State != fleet.Idle {
		t.Fatalf("after the refusals: %+v, %v; want idle", o, err)
	}
}

// What a job may keep at the bounds (depth 32, 64 KiB of many small
// values, which indentation would have grown past the read limit) is
// written and read back.
func TestJobAtTheBounds(t *testing.T) {
	a, job := newAgent(t)
	inner := strings.Repeat("1,", (fleet.MaxExtra-200)/2) + "1"
	extra := json.RawMessage(`{"x":` + strings.Repeat("[", fleet.MaxExtraDepth-1) + inner + strings.Repeat("]", fleet.MaxExtraDepth-1) + `}`)
	if _, err := a.Begin(fleet.Job{ID: "c3", Source: "https://example.com/v2.tandem", Extra: extra}); err != nil {
		t.Fatal(err)
	}
	j, err := a.Job()
	if err != nil || j == nil || !bytes.Equal(j.Extra, extra) {
		t.Fatalf("read back: %v (job %v)", err, j != nil)
	}
	if fi, err := os.Stat(job); err != nil || fi.Size() > 2*fleet.MaxExtra {
		t.Fatalf("job file: %v, %v", fi.Size(), err)
	}
}

// issue 11, hardening 3: a job file that cannot be read back (cut short,
// too large, not a job) is ErrBadJob with the id it starts with, so that
// the adapter can report that update failed; Done moves it aside and the
// adapter goes on. A large file is not read beyond its start.
func TestUnreadableJob(t *testing.T) {
	for _, tc := range []struct {
		name, content, id string
	}{
		{"cut-short", `{"id":"cmd-7","source":"https://example.com/v2.tandem","phase":"inst`, "cmd-7"},
		{"too-large", `{"id":"cmd-8","extra":"` + strings.Repeat("a", 2<<20) + `"}`, "cmd-8"},
		{"unknown-phase", `{"id":"cmd-9","phase":"dancing","started":"2026-01-01T00:00:00Z"}`, "cmd-9"},
		{"too-deep", `{"id":"cmd-10","phase":"installing","extra":` + string(deep(5000)) + `}`, "cmd-10"},
		{"garbage", "\x00\x01not json at all", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, job := newAgent(t)
			if err := os.MkdirAll(filepath.Dir(job), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(job, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := a.Outcome()
			var bad *fleet.BadJobError
			if !errors.Is(err, fleet.ErrBadJob) || !errors.As(err, &bad) || bad.ID != tc.id {
				t.Fatalf("Outcome: %.200v, want ErrBadJob with id %q", err, tc.id)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("the error is %d bytes long", len(err.Error()))
			}
			if err := a.Done(); err != nil {
				t.Fatalf("Done: %v", err)
			}
			if moved, err := os.ReadFile(job + ".bad"); err != nil || string(moved) != tc.content {
				t.Fatalf("the unusable job was not moved aside: %v", err)
			}
			if o, err := a.Outcome(); err != nil || o.State != fleet.Idle {
				t.Fatalf("after Done: %+v, %v; want idle", o, err)
			}
			if _, err := a.Begin(fleet.Job{ID: "next"}); err != nil {
				t.Fatalf("the next job: %v", err)
			}
		})
	}
}

// issue 11, hardening 10: a job left behind (its final outcome never
// reported) whose group committed itself, on a device that has since moved
// to another group, reported "did not commit itself". It is a success.
func TestLeftoverCommittedJob(t *testing.T) {
	dir := t.TempDir()
	key, pub := fleettest.NewKey(t, dir, "release")
	bundles := map[string]string{}
	for _, v := range []string{"2.0.0", "3.0.0"} {
		b, _ := fleettest.SignedBundle(t, bundle.Header{Version: v, Created: time.Now().Unix()}, fleettest.Image(64<<10, v), key)
		bundles[v] = filepath.Join(dir, v+".tandem")
		if err := os.WriteFile(bundles[v], b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(dir, "dev")
	open := fleettest.NewDevice(t, root, sim.Options{BootFlow: "grub", Trust: []string{pub}, FactoryVersion: "1.0.0"})
	left := &fleet.Agent{Open: open, Adapter: "mender"}
	if _, err := left.Begin(fleet.Job{ID: "release-2", Source: bundles["2.0.0"]}); err != nil {
		t.Fatal(err)
	}
	if _, err := left.Install(context.Background(), install.Options{}, install.RebootSet); err != nil {
		t.Fatal(err)
	}
	commitTrial := func() {
		t.Helper()
		if _, _, err := sim.Reboot(root, false); err != nil {
			t.Fatal(err)
		}
		if res, err := health.Check(health.Options{Open: open}); err != nil || res.Verdict != health.Committed {
			t.Fatalf("health check: %+v, %v", res, err)
		}
	}
	commitTrial()
	// The device moves on: another adapter installs 3.0.0 into a.
	other := &fleet.Agent{Open: open, Adapter: "other"}
	if _, err := other.Begin(fleet.Job{ID: "v3", Source: bundles["3.0.0"]}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Install(context.Background(), install.Options{}, install.RebootSet); err != nil {
		t.Fatal(err)
	}
	commitTrial()
	d, _ := open()
	if st, _ := d.Status(); st.Active != "a" || st.Default != "a" {
		t.Fatalf("boot state %+v, want a committed", st)
	}
	o, err := left.Outcome()
	if err != nil {
		t.Fatal(err)
	}
	if o.State != fleet.Success || strings.Contains(o.Reason, "did not commit") {
		t.Fatalf("the leftover job of a committed update: %s (%s), want success", o.State, o.Reason)
	}
	t.Logf("leftover job: %s (%s)", o.State, o.Reason)
}
