package device_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/state"
)

// TestRequestStateResetHooks: state-reset/pre runs before the request and
// a failing one records nothing; state-reset/post runs after it (issue 12,
// "hooks state-reset/{pre,post}").
func TestRequestStateResetHooks(t *testing.T) {
	tmp := t.TempDir()
	cfg := filepath.Join(tmp, "10-app.toml")
	if err := os.WriteFile(cfg, []byte("[data-partition]\nlabel = \"data\"\n\n[persist.\"/var/lib/app\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "dev")
	if err := sim.New(dir, sim.Options{BootFlow: "grub", State: []string{cfg}}); err != nil {
		t.Fatal(err)
	}
	hook := func(stage, script string) {
		t.Helper()
		p := filepath.Join(dir, "etc/tandem/hooks/state-reset", stage, "10-test")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pending := func() bool {
		r, err := state.Inspect(rootfs.NewOS(dir), "/var/lib/tandem", "a")
		if err != nil {
			t.Fatal(err)
		}
		return r.ResetPending != nil
	}
	d, err := device.Open(device.Options{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	hook("pre", "echo refused by pre; exit 1")
	if err := d.RequestStateReset(false); err == nil || !strings.Contains(err.Error(), "refused by pre") || pending() {
		t.Fatalf("a failing pre hook: err %v, pending %v", err, pending())
	}
	marker := filepath.Join(tmp, "post-ran")
	hook("pre", "exit 0")
	hook("post", "echo \"$1 $2 $TANDEM_KEEP_BACKUP\" > "+marker)
	if err := d.RequestStateReset(true); err != nil || !pending() {
		t.Fatalf("request: %v, pending %v", err, pending())
	}
	if b, err := os.ReadFile(marker); err != nil || string(b) != "state-reset post true\n" {
		t.Fatalf("post hook: %q %v", b, err)
	}
}
