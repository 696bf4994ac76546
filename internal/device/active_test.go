package device

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"golang.org/x/sys/unix"
)

const baseConfig = `compatible = "test"
[boot-flow]
type = "grub"
`

func fakeDevice(t *testing.T, cfgText string, files map[string]string) *Device {
	t.Helper()
	root := t.TempDir()
	files["/etc/tandem/system.toml"] = cfgText
	for name, data := range files {
		p := rootfs.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(root, "")
	if err != nil {
		t.Fatal(err)
	}
	return &Device{Root: root, Config: cfg, FS: rootfs.NewOS(root)}
}

const mountinfo = `22 1 254:3 / / rw,relatime shared:1 - ext4 /dev/vda3 rw
23 22 0:5 / /proc rw - proc proc rw
`

func TestActiveGroup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string
		want    string
		wantErr string
	}{
		{"cmdline", map[string]string{"/proc/cmdline": "quiet tandem.group=b root=/dev/vda3\n"}, "b", ""},
		{"cmdline wins over the root mount", map[string]string{
			"/proc/cmdline": "tandem.group=a\n", "/proc/self/mountinfo": mountinfo,
			"/sys/dev/block/254:3/partition": "3\n"}, "a", ""},
		{"unknown group on the cmdline", map[string]string{"/proc/cmdline": "tandem.group=x\n"}, "", "names no configured boot group"},
		// Default slots: system-a = partition 2, system-b = partition 3 of the root disk.
		{"root mount partition", map[string]string{
			"/proc/cmdline": "root=/dev/vda3\n", "/proc/self/mountinfo": mountinfo,
			"/sys/dev/block/254:3/partition": "3\n"}, "b", ""},
		{"root mount is no system slot", map[string]string{
			"/proc/cmdline": "", "/proc/self/mountinfo": mountinfo,
			"/sys/dev/block/254:3/partition": "7\n"}, "", "(/dev/vda3, device 254:3) is no group's system slot"},
		{"root on dm-crypt (no partition)", map[string]string{
			"/proc/cmdline": "", "/proc/self/mountinfo": strings.ReplaceAll(mountinfo, "254:3", "253:0")}, "", "is no group's system slot"},
		{"nothing to go by", map[string]string{}, "", "cannot tell which boot group is running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := fakeDevice(t, baseConfig, tc.files)
			got, err := d.ActiveGroup()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// A slot given by device path matches the root mount by device number.
func TestActiveGroupByDeviceNode(t *testing.T) {
	cfg := baseConfig + `
[slots.system-a]
type = "block"
device = "/dev/mmcblk0p2"
[slots.system-b]
type = "block"
device = "/dev/mmcblk0p3"
`
	d := fakeDevice(t, cfg, map[string]string{"/proc/self/mountinfo": strings.ReplaceAll(mountinfo, "254:3", "179:3")})
	for name, minor := range map[string]uint32{"mmcblk0p2": 2, "mmcblk0p3": 3} {
		if err := unix.Mknod(rootfs.Join(d.Root, "/dev/"+name), unix.S_IFBLK|0o600, int(unix.Mkdev(179, minor))); err != nil {
			t.Skipf("cannot make device nodes here (%v)", err)
		}
	}
	if got, err := d.ActiveGroup(); err != nil || got != "b" {
		t.Fatalf("got %q, %v; want b", got, err)
	}
}

func TestNoActiveGroupIsSentinel(t *testing.T) {
	d := fakeDevice(t, baseConfig, map[string]string{})
	if _, err := d.ActiveGroup(); !errors.Is(err, ErrNoActiveGroup) {
		t.Fatalf("got %v, want ErrNoActiveGroup", err)
	}
}

func TestOSReleaseVersion(t *testing.T) {
	for text, want := range map[string]string{
		"ID=debian\nVERSION_ID=\"12\"\n":         "12",
		"VERSION_ID=1\nIMAGE_VERSION='2024.1'\n": "2024.1",
		"ID=x\n":                                 "",
	} {
		d := fakeDevice(t, baseConfig, map[string]string{"/etc/os-release": text})
		if got := osReleaseVersion(d.FS); got != want {
			t.Errorf("%q: got %q, want %q", text, got, want)
		}
	}
}

func TestLockExcludes(t *testing.T) {
	d := fakeDevice(t, baseConfig, map[string]string{})
	unlock, err := d.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lock(); !errors.Is(err, ErrRefused) {
		t.Fatalf("second lock: %v, want refused", err)
	}
	unlock()
	unlock2, err := d.Lock()
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}
