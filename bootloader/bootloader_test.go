package bootloader

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tandem-ota/tandem/internal/testutil"
)

// The GRUB script must pass GRUB's own parser.
func TestGrubScriptSyntax(t *testing.T) {
	tool := testutil.NeedTool(t, "grub-script-check")
	if out, err := exec.Command(tool, "grub/tandem.cfg").CombinedOutput(); err != nil {
		t.Fatalf("grub-script-check: %v\n%s", err, out)
	}
}

// The U-Boot script must compile into a script image.
func TestUBootScriptCompiles(t *testing.T) {
	tool := testutil.NeedTool(t, "mkimage")
	out := filepath.Join(t.TempDir(), "boot.scr")
	if b, err := exec.Command(tool, "-A", "arm64", "-T", "script", "-C", "none", "-d", "u-boot/boot.cmd", out).CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, b)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() <= int64(len(UBootScript)) {
		t.Fatalf("boot.scr: %v", err)
	}
}
