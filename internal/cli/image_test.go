package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImageBuild builds a GRUB image from a tiny root file system with the
// command line, checks its JSON and that its bundle verifies with the key
// the image trusts; a bad spec exits 3 and writes nothing.
func TestImageBuild(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "debugfs", "mkfs.vfat", "mcopy", "sfdisk", "grub-mkimage"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (scripts/install-deps.sh)", tool)
		}
	}
	dir := t.TempDir()
	if r := run(t, nil, "key", "generate", filepath.Join(dir, "release")); r.code != 0 {
		t.Fatal(r.stderr)
	}
	os.MkdirAll(filepath.Join(dir, "rootfs", "boot"), 0o755)
	write(t, dir, "rootfs/boot/vmlinuz", "kernel")
	write(t, dir, "tandem-arm", "binary")
	spec := `compatible = "acme"
version = "1.0.0"
boot-flow = "uboot"
[disk]
partition-prefix = "/dev/mmcblk0p"
system-size = "8M"
[boot]
kernel = "/boot/vmlinuz"
[keys]
signing = ["release.key"]
trusted = ["release.pub"]
[tandem]
binary = "tandem-arm"
`
	write(t, dir, "image.toml", spec)
	out := filepath.Join(dir, "out", "disk.img")
	os.Mkdir(filepath.Dir(out), 0o755)
	r := run(t, nil, "image", "build", "--spec", filepath.Join(dir, "image.toml"), "--rootfs", filepath.Join(dir, "rootfs"),
		"--out", out, "--boot-flow", "grub", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var res struct {
		BootFlow   string `json:"boot_flow"`
		Partitions []struct{ Label string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if res.BootFlow != "grub" || len(res.Partitions) != 4 || !strings.Contains(r.stderr, "image: bundle: ") {
		t.Errorf("stdout %s\nstderr %s", r.stdout, r.stderr)
	}
	if v := run(t, nil, "bundle", "verify", filepath.Join(dir, "out", "disk.tandem"), "--trust", filepath.Join(dir, "release.pub")); v.code != 0 {
		t.Errorf("bundle verify: exit %d: %s", v.code, v.stderr)
	}

	replace(t, dir, "image.toml", `system-size = "8M"`, `system-size = "8"`)
	bad := filepath.Join(dir, "bad", "disk.img")
	os.Mkdir(filepath.Dir(bad), 0o755)
	r = run(t, nil, "image", "build", "--spec", filepath.Join(dir, "image.toml"), "--rootfs", filepath.Join(dir, "rootfs"), "--out", bad)
	if entries, _ := os.ReadDir(filepath.Dir(bad)); r.code != ExitConfig || !strings.Contains(r.stderr, "disk.system-size") || len(entries) != 0 {
		t.Errorf("bad spec: exit %d, %q, wrote %v", r.code, r.stderr, entries)
	}
	if r := run(t, nil, "image", "build", "--spec", "x.toml"); r.code != ExitUsage {
		t.Errorf("missing flags: exit %d", r.code)
	}
}
