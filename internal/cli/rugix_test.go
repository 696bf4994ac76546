package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/device"
	rugixctrl "github.com/tandem-ota/tandem/internal/fleet/rugix"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/state"
)

// rugix runs tandem in-process under the name rugix-ctrl, on the simulated
// device dev (TANDEM_ROOT, as a script's environment would carry it).
func rugix(t *testing.T, dev string, stdin io.Reader, args ...string) result {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errb bytes.Buffer
	env := map[string]string{"TANDEM_ROOT": dev}
	code := Main(args, Env{Name: "/usr/bin/rugix-ctrl", Stdin: stdin, Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] }})
	return result{code, out.String(), errb.String()}
}

// mustRugix runs a command a script runs under `set -e`.
func mustRugix(t *testing.T, dev string, stdin io.Reader, args ...string) result {
	t.Helper()
	r := rugix(t, dev, stdin, args...)
	if r.code != 0 {
		t.Fatalf("rugix-ctrl %s: %+v", strings.Join(args, " "), r)
	}
	return r
}

// rugixBoot parses `rugix-ctrl system info` the way the scripts do (jq on
// .boot.activeGroup and .boot.defaultGroup).
func rugixBoot(t *testing.T, dev string, args ...string) (active, def string) {
	t.Helper()
	r := mustRugix(t, dev, nil, append([]string{"system", "info"}, args...)...)
	var doc rugixctrl.Info
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("system info is not JSON: %v\n%s", err, r.stdout)
	}
	return doc.Boot.ActiveGroup, doc.Boot.DefaultGroup
}

func simReboot(t *testing.T, dev, want string) {
	t.Helper()
	if r := run(t, nil, "sim", "reboot", dev); r.code != 0 || lastLine(r.stdout) != want {
		t.Fatalf("sim reboot: %+v, want group %s", r, want)
	}
}

type rugixFixture struct {
	dev, bundle, hash, url string
	image                  []byte
}

// newRugixFixture makes a signed bundle, serves it over HTTP (with ranges)
// and makes a uboot device that trusts its key.
func newRugixFixture(t *testing.T) rugixFixture {
	dir, image := bundleFixture(t)
	out := filepath.Join(dir, "v2.tandem")
	hash := createBundle(t, nil, out, image, "--key", filepath.Join(dir, "release.key"))
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	dev := newSim(t, "uboot", "--trust", filepath.Join(dir, "release.pub"), "--slot-size", "1M", "--image", image)
	return rugixFixture{dev: dev, bundle: out, hash: hash, url: srv.URL + "/v2.tandem", image: readFile(t, image)}
}

func (f rugixFixture) checkCommitted(t *testing.T) {
	t.Helper()
	if a, d := rugixBoot(t, f.dev, "--json"); a != "b" || d != "b" {
		t.Fatalf("after commit: active %s, default %s; want b, b", a, d)
	}
	if got := readFile(t, filepath.Join(f.dev, "slots/system-b.img")); !bytes.HasPrefix(got, f.image) {
		t.Fatal("slot b does not hold the image")
	}
}

// The command sequences of the public Rugix integrations
// (../shared/reference/integrations.md), replayed through the rugix-ctrl name.
func TestRugixScripts(t *testing.T) {
	t.Run("mender-module", func(t *testing.T) {
		f := newRugixFixture(t)
		// ArtifactInstall: commit whatever runs, then install with --reboot set.
		mustRugix(t, f.dev, nil, "system", "commit")
		mustRugix(t, f.dev, nil, "update", "install", "--reboot", "set", f.bundle)
		// NeedsArtifactReboot = Automatic: the client reboots.
		simReboot(t, f.dev, "b")
		// ArtifactVerifyReboot: fail if default == active.
		if a, d := rugixBoot(t, f.dev); a == d {
			t.Fatalf("verify reboot: active %s == default %s", a, d)
		}
		// ArtifactCommit.
		mustRugix(t, f.dev, nil, "system", "commit")
		f.checkCommitted(t)
	})
	t.Run("thin-edge-workflow", func(t *testing.T) {
		f := newRugixFixture(t)
		// executing: refuse unless active == default.
		if a, d := rugixBoot(t, f.dev, "--json"); a != d {
			t.Fatalf("executing: active %s, default %s", a, d)
		}
		// install (c8y proxy URL, not streamed): indexes first, boot-a does not exist here.
		r := mustRugix(t, f.dev, nil, "slots", "create-index", "boot-a", "casync-64", "sha512-256")
		if !strings.Contains(r.stderr, "nothing to index") {
			t.Fatalf("create-index of a missing slot: %+v", r)
		}
		r = mustRugix(t, f.dev, nil, "slots", "create-index", "system-a", "casync-64", "sha512-256")
		if !strings.Contains(r.stderr, "indexed slot system-a") {
			t.Fatalf("create-index: %+v", r)
		}
		r = mustRugix(t, f.dev, nil, "update", "install", "--reboot", "no", f.url)
		if !strings.Contains(r.stdout, `"event":"UpdateProgress","progress":100`) {
			t.Fatalf("progress lines: %q", r.stdout)
		}
		// restart: reboot into the spare group.
		mustRugix(t, f.dev, nil, "system", "reboot", "--spare")
		simReboot(t, f.dev, "b")
		// verify: the partition swap happened.
		if a, d := rugixBoot(t, f.dev, "--json"); a != "b" || d != "a" {
			t.Fatalf("verify: active %s, default %s", a, d)
		}
		mustRugix(t, f.dev, nil, "system", "commit")
		f.checkCommitted(t)
	})
	t.Run("thin-edge-workflow-streamed", func(t *testing.T) {
		f := newRugixFixture(t)
		// download_file URL | rugix-ctrl update install --reboot no -
		mustRugix(t, f.dev, bytes.NewReader(readFile(t, f.bundle)), "update", "install", "--reboot", "no", "-")
		mustRugix(t, f.dev, nil, "system", "reboot", "--spare")
		simReboot(t, f.dev, "b")
		mustRugix(t, f.dev, nil, "system", "commit")
		f.checkCommitted(t)
	})
	t.Run("memfault-template", func(t *testing.T) {
		f := newRugixFixture(t)
		// The releases API answered a URL: install it, reboot into the spare group.
		mustRugix(t, f.dev, nil, "update", "install", "--reboot", "no", f.url)
		mustRugix(t, f.dev, nil, "system", "reboot", "--spare")
		simReboot(t, f.dev, "b")
		mustRugix(t, f.dev, nil, "system", "commit")
		f.checkCommitted(t)
	})
	t.Run("nexigon-script", func(t *testing.T) {
		f := newRugixFixture(t)
		// system info without --json is parsed as JSON too.
		if a, d := rugixBoot(t, f.dev); a != d {
			t.Fatalf("start: active %s, default %s", a, d)
		}
		mustRugix(t, f.dev, nil, "update", "install", "--reboot", "no", "--bundle-hash", "sha256:"+f.hash, f.url)
		mustRugix(t, f.dev, nil, "system", "reboot", "--spare")
		simReboot(t, f.dev, "b")
		// Next boot: commit when active != default.
		if a, d := rugixBoot(t, f.dev); a == d {
			t.Fatalf("after reboot: active %s == default %s", a, d)
		}
		mustRugix(t, f.dev, nil, "system", "commit")
		f.checkCommitted(t)
	})
	t.Run("reboot-yes-default", func(t *testing.T) {
		f := newRugixFixture(t)
		// Without --reboot, rugix-ctrl reboots into the new system.
		mustRugix(t, f.dev, nil, "update", "install", f.bundle)
		simReboot(t, f.dev, "b")
		mustRugix(t, f.dev, nil, "system", "commit")
		f.checkCommitted(t)
	})
	t.Run("deferred-is-set", func(t *testing.T) {
		f := newRugixFixture(t)
		mustRugix(t, f.dev, nil, "update", "install", "--reboot", "deferred", f.bundle)
		if sim := readFile(t, filepath.Join(f.dev, ".tandem-sim.json")); bytes.Contains(sim, []byte(`"reboot"`)) {
			t.Fatalf("--reboot deferred rebooted: %s", sim)
		}
		simReboot(t, f.dev, "b")
	})
	t.Run("rollback", func(t *testing.T) {
		f := newRugixFixture(t)
		mustRugix(t, f.dev, nil, "update", "install", "--reboot", "set", f.bundle)
		simReboot(t, f.dev, "b")
		// No commit: a plain reboot goes back to the default.
		mustRugix(t, f.dev, nil, "system", "reboot")
		simReboot(t, f.dev, "a")
		if a, d := rugixBoot(t, f.dev); a != "a" || d != "a" {
			t.Fatalf("after rollback: active %s, default %s", a, d)
		}
	})
}

func TestRugixInfoFields(t *testing.T) {
	f := newRugixFixture(t)
	r := mustRugix(t, f.dev, nil, "system", "info")
	var doc map[string]map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"slots", "boot", "state"} {
		if doc[k] == nil {
			t.Errorf("no %q in %s", k, r.stdout)
		}
	}
	if doc["boot"]["bootFlow"] != "uboot" || doc["state"]["status"] != "Active" {
		t.Errorf("boot %v, state %v", doc["boot"], doc["state"])
	}
	a, _ := doc["slots"]["system-a"].(map[string]any)
	if a["active"] != true || a["size"] != float64(1<<20) || a["hashes"] == nil {
		t.Errorf("slots.system-a = %v", a)
	}
	groups, _ := doc["boot"]["groups"].(map[string]any)
	if len(groups) != 2 || groups["a"] == nil || groups["b"] == nil {
		t.Errorf("boot.groups = %v", groups)
	}
	mustRugix(t, f.dev, nil, "update", "install", "--reboot", "no", f.bundle)
	r = mustRugix(t, f.dev, nil, "system", "info", "--json")
	var after rugixctrl.Info
	if err := json.Unmarshal([]byte(r.stdout), &after); err != nil || after.Slots["system-b"].UpdatedAt == nil {
		t.Errorf("system-b updatedAt after an install: %s", r.stdout)
	}
}

func TestRugixBadInput(t *testing.T) {
	f := newRugixFixture(t)
	before := snapshot(t, f.dev)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"update", "install", "--reboot", "later", f.bundle}, ExitUsage, `--reboot "later"`},
		{[]string{"update", "install", "--keep-overlay", f.bundle}, ExitUsage, "unknown flag: --keep-overlay"},
		{[]string{"update", "install", "--bundle-hash", "sha512-256:" + strings.Repeat("b", 64), f.bundle}, ExitUsage, "tandem bundle hashes are sha256"},
		{[]string{"update", "install", "--bundle-hash", "abc", f.bundle}, ExitUsage, "64 hex digits"},
		{[]string{"update", "install", "--bundle-hash", strings.Repeat("0", 64), "--reboot", "no", f.bundle}, ExitBundle, ""},
		{[]string{"update", "install"}, ExitUsage, "accepts 1 arg"},
		{[]string{"system", "info", "--verbose"}, ExitUsage, "unknown flag"},
		{[]string{"system", "reboot", "--now"}, ExitUsage, "unknown flag"},
		{[]string{"slots", "create-index", "system-a", "rabin-64", "sha256"}, ExitUsage, `chunker "rabin-64"`},
		{[]string{"slots", "create-index", "system-a", "casync-64", "md5"}, ExitUsage, `hash algorithm "md5"`},
		{[]string{"state", "reset", "--keep-backup"}, ExitUsage, "unknown flag: --keep-backup"},
		{[]string{"state", "reset"}, ExitConfig, "no data partition is configured"},
		{[]string{"system", "bogus"}, ExitUsage, `unknown command "bogus" for "rugix-ctrl system"`},
		{[]string{"state", "overlay", "set"}, ExitUsage, `unknown command "overlay"`},
	} {
		r := rugix(t, f.dev, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) || !strings.HasPrefix(r.stderr, "rugix-ctrl: ") {
			t.Errorf("rugix-ctrl %s: %+v, want exit %d and %q", strings.Join(tc.args, " "), r, tc.code, tc.msg)
		}
	}
	after := snapshot(t, f.dev)
	for name, sum := range before {
		if strings.Contains(name, "/var/lib/tandem/") {
			continue // a rejected bundle may leave its verdict in the state database
		}
		if after[name] != sum {
			t.Errorf("bad input changed %s", name)
		}
	}
	// tandem's own name still runs tandem's command line.
	if r := run(t, map[string]string{"TANDEM_ROOT": f.dev}, "system", "info"); r.code != 0 || !strings.Contains(r.stdout, "boot flow") {
		t.Errorf("tandem system info: %+v", r)
	}
}

// TestRugixStateReset: `rugix-ctrl state reset` is tandem's factory reset
// (state-reset hooks, journal request) followed by the reboot, as in
// rugix-ctrl; --backup keeps the old state aside and --backup-name implies
// it with a warning (issue 12, "a drop-in rugix-ctrl state reset").
func TestRugixStateReset(t *testing.T) {
	tmp := t.TempDir()
	cfg := filepath.Join(tmp, "10-app.toml")
	if err := os.WriteFile(cfg, []byte("[data-partition]\nlabel = \"data\"\n\n[persist.\"/var/lib/app\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := newSim(t, "grub", "--state", cfg)
	marker := filepath.Join(dev, "var/lib/app/data")
	if err := os.WriteFile(marker, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustRugix(t, dev, nil, "state", "reset", "--backup-name", "umbrel-factory-reset-1")
	if !strings.Contains(r.stderr, "rugix-ctrl: warning: --backup-name") {
		t.Errorf("no warning about the backup name: %q", r.stderr)
	}
	sim, err := device.ReadSimState(dev)
	if err != nil || sim.Reboot == nil {
		t.Fatalf("no reboot recorded: %+v %v", sim, err)
	}
	rep, err := state.Inspect(rootfs.NewOS(dev), "/var/lib/tandem", "a")
	if err != nil || rep.ResetPending == nil || !rep.ResetPending.KeepBackup {
		t.Fatalf("reset not pending with a backup: %+v %v", rep, err)
	}
	simReboot(t, dev, "a")
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("after the reset the state still holds %s: %v", marker, err)
	}
	if rep, err = state.Inspect(rootfs.NewOS(dev), "/var/lib/tandem", "a"); err != nil || rep.Backup == nil || rep.ResetPending != nil {
		t.Errorf("after the reset: %+v %v, want a backup and no pending reset", rep, err)
	}
}

// rugix-ctrl's boot mark-good and mark-bad are tandem's (device.MarkGood,
// device.MarkBad): mark-bad of a running trial sends the next boot to the
// default, mark-good commits the running trial.
func TestRugixBootMark(t *testing.T) {
	dev := newSim(t, "grub", "--attempts", "3")
	if r := rugix(t, dev, nil, "boot", "mark-bad", "a"); r.code != ExitRefused {
		t.Fatalf("mark-bad of the default: %+v", r)
	}
	run(t, nil, "--root", dev, "system", "reboot", "--spare")
	simReboot(t, dev, "b")
	if r := mustRugix(t, dev, nil, "boot", "mark-bad", "b"); !strings.Contains(r.stdout, "marked bad") {
		t.Fatalf("mark-bad: %+v", r)
	}
	simReboot(t, dev, "a")
	run(t, nil, "--root", dev, "system", "reboot", "--spare")
	simReboot(t, dev, "b")
	mustRugix(t, dev, nil, "boot", "mark-good")
	if a, d := rugixBoot(t, dev, "--json"); a != "b" || d != "b" {
		t.Fatalf("after mark-good: active %s, default %s", a, d)
	}
}
