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

// The settings go in front of the script as setenv lines, and the result
// still compiles; values that would break the quoting are refused.
func TestUBootCmd(t *testing.T) {
	src, err := UBootCmd(UBootSettings{Groups: []string{"a", "b"}, EnvDev: "mmc 0:1", EnvFile: "tandem/env0", EnvSize: 0x2000,
		Boot: `echo "${tandem_group}"; booti ${kernel_addr_r} - ${fdtcontroladdr}`})
	if err != nil {
		t.Fatal(err)
	}
	want := "setenv tandem_groups \"a b\"\nsetenv tandem_env_dev \"mmc 0:1\"\nsetenv tandem_env_file \"tandem/env0\"\n" +
		"setenv tandem_env_size 0x2000\nsetenv tandem_boot 'echo \"${tandem_group}\"; booti ${kernel_addr_r} - ${fdtcontroladdr}'\n"
	if got := string(src[:len(src)-len(UBootScript)]); got != want {
		t.Errorf("settings =\n%s\nwant\n%s", got, want)
	}
	tool := testutil.NeedTool(t, "mkimage")
	in, out := filepath.Join(t.TempDir(), "boot.cmd"), filepath.Join(t.TempDir(), "boot.scr")
	if err := os.WriteFile(in, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(tool, "-A", "arm64", "-T", "script", "-C", "none", "-d", in, out).CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, b)
	}
	for _, s := range []UBootSettings{
		{},
		{Boot: "echo 'x'"},
		{Boot: "boot", EnvFile: `a"b`},
		{Boot: "boot", Groups: []string{"a;reset"}},
	} {
		if _, err := UBootCmd(s); err == nil {
			t.Errorf("UBootCmd(%+v) accepted", s)
		}
	}
}
