package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The real binary, started through a rugix-ctrl symlink, runs the rugix-ctrl
// command line (argv[0] dispatch).
func TestRugixCtrlSymlink(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tandem")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	link := filepath.Join(dir, "rugix-ctrl")
	if err := os.Symlink("tandem", link); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(dir, "dev")
	if out, err := exec.Command(bin, "sim", "new", dev, "--boot-flow", "grub", "--slot-size", "64K").CombinedOutput(); err != nil {
		t.Fatalf("sim new: %v\n%s", err, out)
	}
	cmd := exec.Command(link, "system", "info")
	cmd.Env = append(os.Environ(), "TANDEM_ROOT="+dev)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rugix-ctrl system info: %v\n%s", err, out)
	}
	var doc struct {
		Boot  struct{ ActiveGroup, DefaultGroup, BootFlow string }
		State struct{ Status string }
	}
	if err := json.Unmarshal(out, &doc); err != nil || doc.Boot.ActiveGroup != "a" || doc.Boot.BootFlow != "grub" || doc.State.Status == "" {
		t.Fatalf("rugix-ctrl system info: %v\n%s", err, out)
	}
	cmd = exec.Command(link, "update", "install", "--no-such-flag", "x")
	if out, err := cmd.CombinedOutput(); err == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("unknown flag: %v, exit %d\n%s", err, cmd.ProcessState.ExitCode(), out)
	}
}
