package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/sim"
)

// flows are the boot flows sim new offers (cli_test.go, powercut_test.go).
var flows = sim.Flows

// tandem adopt on a device that ran Mender: it prints, then writes the
// configuration, refuses to overwrite it, and tandem then runs on it.
func TestAdopt(t *testing.T) {
	dir := newSim(t, "mender-grub")
	if err := os.Remove(filepath.Join(dir, "etc/tandem/system.toml")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "etc/mender"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/mender/mender.conf"), []byte(`{"RootfsPartA": "/dev/sda2", "RootfsPartB": "/dev/sda3"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(t, nil, "--root", dir, "adopt"); r.code != 1 || !strings.Contains(r.stderr, "--compatible") {
		t.Fatalf("adopt without a compatible string: %+v", r)
	}
	r := run(t, nil, "--root", dir, "adopt", "--compatible", "pc")
	if r.code != 0 || !strings.Contains(r.stdout, `type = "mender-grub"`) {
		t.Fatalf("adopt: %+v", r)
	}
	if r := run(t, nil, "--root", dir, "adopt", "--compatible", "pc", "--write"); r.code != 0 || !strings.Contains(r.stdout, "default group a") {
		t.Fatalf("adopt --write: %+v", r)
	}
	if r := run(t, nil, "--root", dir, "adopt", "--compatible", "pc", "--write"); r.code == 0 || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("second adopt --write: %+v", r)
	}
	if r := run(t, nil, "--root", dir, "system", "info"); r.code != 0 || !strings.Contains(r.stdout, "mender-grub") {
		t.Fatalf("system info on the adopted device: %+v", r)
	}
}
