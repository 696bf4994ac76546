package hawkbit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit/ddiserver"
	"github.com/tandem-ota/tandem/internal/sim"
)

// jobFile is the host path of the adapter's job file.
func jobFile(t *testing.T, w *world) string {
	t.Helper()
	d, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	return d.FS.Path(filepath.Join(d.Config.DataDir, "fleet", hawkbit.AdapterName+".json"))
}

// TestLongNames: a 190 KB chunk name and version (characters that JSON
// escaping makes six times longer) are cut when the job is written, so
// that the job stays readable and the update goes through; an over-long
// action id is refused. Issue 11, hardening 3.
func TestLongNames(t *testing.T) {
	w := newWorld(t, 128<<10)
	srv := ddiserver.New(t, ddiserver.Options{TargetToken: "secret-1"})
	ad := newAdapter(t, srv, w.open)
	long := strings.Repeat("<", 190<<10)
	id := srv.Add(ddiserver.Action{Controller: controller, Version: long, Name: long,
		Artifacts: []ddiserver.Artifact{{Filename: "v2.tandem", Data: w.bundle}}})
	if act := step(t, ad); act != fleet.ActRebooting {
		t.Fatalf("first step: %s, want rebooting", act)
	}
	fi, err := os.Stat(jobFile(t, w))
	if err != nil || fi.Size() > 64<<10 {
		t.Fatalf("job file: %v, %v; want it below 64 KiB", fi, err)
	}
	j, err := ad.Agent.Job()
	if err != nil || j == nil || len(j.Version) > 256 || !strings.HasSuffix(j.Version, "…") {
		t.Fatalf("job after a long version: %.80v, %v", j, err)
	}
	if _, _, err := sim.Reboot(w.root, false); err != nil {
		t.Fatal(err)
	}
	commitReported(t, w, ad, srv, id)

	// An action id the job could not keep: refused, nothing begun.
	srv.Add(ddiserver.Action{ID: strings.Repeat("7", 200), Controller: controller, Version: "3.0.0",
		Artifacts: []ddiserver.Artifact{{Filename: "v3.tandem", Data: w.bundle}}})
	if _, err := ad.Step(context.Background()); err == nil || !strings.Contains(err.Error(), "action id of 200 bytes") || len(err.Error()) > 1024 {
		t.Fatalf("a 200-byte action id: %.200v", err)
	}
	if j, err := ad.Agent.Job(); j != nil || err != nil {
		t.Fatalf("a job was begun: %+v, %v", j, err)
	}
}

// TestBadJobFile: a job file the adapter cannot read (here one larger than
// the limit, as an older version could write) is reported failed on the
// action the server offers and dropped; the adapter goes on. Issue 11,
// hardening 3.
func TestBadJobFile(t *testing.T) {
	w := newWorld(t, 128<<10)
	srv := ddiserver.New(t, ddiserver.Options{TargetToken: "secret-1"})
	ad := newAdapter(t, srv, w.open)
	id := srv.Add(ddiserver.Action{Controller: controller, Version: "2.0.0",
		Artifacts: []ddiserver.Artifact{{Filename: "v2.tandem", Data: w.bundle}}})
	p := jobFile(t, w)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	big := `{"id":"1","phase":"installing","version":"` + strings.Repeat(`\u003c`, 190<<10) + `"}`
	if err := os.WriteFile(p, []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ad.Agent.Outcome(); !errors.Is(err, fleet.ErrBadJob) {
		t.Fatalf("outcome of a 1.1 MB job file: %v, want ErrBadJob", err)
	}
	if act := step(t, ad); act != fleet.ActReported {
		t.Fatalf("step with a bad job file: %s, want reported", act)
	}
	r, ok := srv.Result(id)
	if !ok || r.Success || !strings.Contains(strings.Join(r.Details, " "), "lost its record") {
		t.Fatalf("result %+v %v, want a failure saying why", r, ok)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("the bad job file is still there: %v", err)
	}
	// The next action goes through.
	srv.Add(ddiserver.Action{Controller: controller, Version: "2.0.0",
		Artifacts: []ddiserver.Artifact{{Filename: "v2.tandem", Data: w.bundle}}})
	if act := step(t, ad); act != fleet.ActRebooting {
		t.Fatalf("the next action: %s, want rebooting", act)
	}
}

// TestServerURL: a server URL a client cannot connect to is a configuration
// error (exit 3) when the file is loaded, not a server retried at every
// poll. Issue 11, hardening 10.
func TestServerURL(t *testing.T) {
	for _, tc := range []struct{ server, want string }{
		{"http://127.0.0.1:", "empty port"},
		{"http://127.0.0.1:0", "want 1 to 65535"},
		{"https://h:99999", "want 1 to 65535"},
		{"http://:8080", "no host"},
		{"https://user:pw@h", "no user info"},
		{"hawkbit.example.com", "want an http or https URL"},
		{"http://127.0.0.1:8080", ""},
		{"https://[::1]:8443/base", ""},
	} {
		p := filepath.Join(t.TempDir(), "hawkbit.toml")
		if err := os.WriteFile(p, []byte("server = \""+tc.server+"\"\ncontroller-id = \"d\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := hawkbit.LoadConfig(p, "")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.server, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, config.ErrInvalid)):
			t.Errorf("%q: %v, want a configuration error saying %q", tc.server, err, tc.want)
		}
	}
}
