package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/testutil"
)

func TestHealth(t *testing.T) {
	dir := newSim(t, "grub")
	if r := run(t, nil, "--root", dir, "health"); r.code != 0 || !strings.Contains(r.stdout, "nothing to decide") {
		t.Fatalf("health without a trial: %+v", r)
	}
	trial := func() {
		t.Helper()
		if r := run(t, nil, "--root", dir, "system", "reboot", "--spare"); r.code != 0 {
			t.Fatalf("reboot --spare: %+v", r)
		}
		if r := run(t, nil, "sim", "reboot", dir); r.code != 0 || lastLine(r.stdout) != "b" && lastLine(r.stdout) != "a" {
			t.Fatalf("sim reboot: %+v", r)
		}
	}

	// A failing check: --once reports it without acting, --deadline 0 rolls back.
	trial()
	hook := filepath.Join(dir, "etc/tandem/hooks/health/check/50-app")
	testutil.WriteScript(t, hook, "echo 'app: connection refused'\nexit 1\n")
	r := run(t, nil, "--root", dir, "health", "--once", "--json")
	var res struct{ Verdict, Group, Message string }
	if err := json.Unmarshal([]byte(lastLine(r.stdout)), &res); err != nil || r.code != ExitUnhealthy || res.Verdict != "failing" {
		t.Fatalf("health --once with a failing check: %+v (%v)", r, err)
	}
	if get(info(t, dir), "boot", "commitPending") != true {
		t.Fatalf("--once before the deadline changed the boot state")
	}
	r = run(t, nil, "--root", dir, "health", "--deadline", "0")
	if r.code != ExitUnhealthy || !strings.Contains(r.stdout, "rolled back") || !strings.Contains(r.stdout, "connection refused") {
		t.Fatalf("health --deadline 0: %+v", r)
	}
	if r := run(t, nil, "sim", "reboot", dir); r.code != 0 || lastLine(r.stdout) != "a" {
		t.Fatalf("after the rollback: %+v, want a", r)
	}
	doc := info(t, dir)
	if get(doc, "lastUpdate", "status") != "rolled-back" || !strings.Contains(get(doc, "lastUpdate", "message").(string), "50-app") {
		t.Fatalf("lastUpdate after the rollback: %v", doc["lastUpdate"])
	}

	// A passing check commits.
	if err := os.WriteFile(hook, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	trial()
	if r := run(t, nil, "--root", dir, "health", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"verdict":"committed"`) {
		t.Fatalf("health with a passing check: %+v", r)
	}
	if doc := info(t, dir); get(doc, "boot", "defaultGroup") != "b" {
		t.Fatalf("not committed: %v", doc["boot"])
	}
	if r := run(t, nil, "--root", dir, "health", "--interval", "0"); r.code != ExitUsage {
		t.Fatalf("--interval 0: %+v", r)
	}
}
