package adopt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// foreign makes a simulated device whose boot files are those of flow, then
// takes tandem's configuration away and lays the other system's files.
func foreign(t *testing.T, o sim.Options, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dev")
	if err := sim.New(dir, o); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, config.DefaultPath)); err != nil {
		t.Fatal(err)
	}
	for p, text := range files {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var menderFiles = map[string]string{
	"/etc/mender/mender.conf":     `{"RootfsPartA": "/dev/mmcblk0p2", "RootfsPartB": "/dev/mmcblk0p3", "ServerURL": "https://x"}`,
	"/var/lib/mender/device_type": "device_type=beaglebone\n",
}

const raucConf = `[system]
compatible=Board-v1
bootloader=%s
boot-attempts-primary=2

[keyring]
path=/etc/rauc/ca.cert.pem

[slot.rootfs.0]
device=/dev/mmcblk0p2
type=ext4
bootname=A

[slot.rootfs.1]
device=/dev/mmcblk0p3
type=ext4
bootname=B

[slot.appfs.0]
device=/dev/mmcblk0p5
parent=rootfs.0

[slot.appfs.1]
device=/dev/mmcblk0p6
parent=rootfs.1
`

func TestDetect(t *testing.T) {
	tests := []struct {
		name     string
		opts     sim.Options
		files    map[string]string
		o        Options
		tool     string
		flow     string
		contains []string
	}{
		{name: "mender-grub", opts: sim.Options{BootFlow: config.FlowMenderGrub}, files: menderFiles, flow: config.FlowMenderGrub,
			contains: []string{`compatible = "beaglebone"`, `device = "/dev/mmcblk0p3"`, `env-dir = "/boot/grub-mender-grubenv"`, "partitions = { a = 2, b = 3 }"}},
		{name: "mender-uboot", opts: sim.Options{BootFlow: config.FlowMenderUBoot, UBootBackend: config.UBootBackendFwSetenv}, files: menderFiles, tool: "fw_printenv",
			flow: config.FlowMenderUBoot, contains: []string{`backend = "fw-setenv"`, `device = "/dev/mmcblk0p2"`}},
		{name: "rauc-uboot", opts: sim.Options{BootFlow: config.FlowRAUCUBoot, UBootBackend: config.UBootBackendFwSetenv},
			files: map[string]string{"/etc/rauc/system.conf": strings.Replace(raucConf, "%s", "uboot", 1)}, tool: "fw_printenv", flow: config.FlowRAUCUBoot,
			contains: []string{`compatible = "Board-v1"`, `slots = { system = "rootfs-0", appfs = "appfs-0" }`, `names = { a = "A", b = "B" }`, "attempts = 2"}},
		{name: "rauc-grub", opts: sim.Options{BootFlow: config.FlowRAUCGrub},
			files: map[string]string{"/etc/rauc/system.conf": strings.Replace(strings.Replace(raucConf, "%s", "grub", 1), "boot-attempts-primary=2\n", "", 1)},
			flow:  config.FlowRAUCGrub, contains: []string{`grubenv = "/boot/grub/grubenv"`}},
		{name: "rugix-grub", opts: sim.Options{BootFlow: config.FlowRugixGrub}, o: Options{Compatible: "pc"}, flow: config.FlowRugixGrub,
			contains: []string{`boot-dir = "/boot"`, `slots = { boot = "boot-a", system = "system-a" }`, "partition = 5"}},
		{name: "rugix-tryboot", opts: sim.Options{BootFlow: config.FlowRPiTryboot}, o: Options{Compatible: "pi", From: Rugix}, flow: config.FlowRPiTryboot,
			contains: []string{`type = "rpi-tryboot"`, "partition = 6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.tool != "" {
				testutil.NeedTool(t, tt.tool)
			}
			dir := foreign(t, tt.opts, tt.files)
			o := tt.o
			o.Root = dir
			r, err := Detect(o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Flow != tt.flow || r.Default != "a" {
				t.Fatalf("flow %s, default %s; want %s, a", r.Flow, r.Default, tt.flow)
			}
			for _, want := range tt.contains {
				if !strings.Contains(string(r.Config), want) {
					t.Errorf("configuration lacks %q:\n%s", want, r.Config)
				}
			}
			if err := Write(dir, config.DefaultPath, r, false); err != nil {
				t.Fatal(err)
			}
			if err := Write(dir, config.DefaultPath, r, false); err == nil || !strings.Contains(err.Error(), "--force") {
				t.Fatalf("second write: %v, want a refusal naming --force", err)
			}
			if err := Write(dir, config.DefaultPath, r, true); err != nil {
				t.Fatal(err)
			}
			if _, err := config.Load(dir, ""); err != nil {
				t.Fatalf("the written configuration does not load: %v", err)
			}
		})
	}
}

func TestDetectRefuses(t *testing.T) {
	grub := sim.Options{BootFlow: config.FlowMenderGrub}
	tests := []struct {
		name  string
		opts  sim.Options
		files map[string]string
		o     Options
		prep  func(t *testing.T, dir string)
		want  string
	}{
		{name: "nothing", opts: sim.Options{BootFlow: config.FlowGrub}, want: "no boot integration of another update system found"},
		{name: "two systems", opts: grub, files: map[string]string{"/etc/mender/mender.conf": "{}", "/etc/rauc/system.conf": strings.Replace(raucConf, "%s", "grub", 1)},
			want: "choose one with --from"},
		{name: "barebox", opts: grub, files: map[string]string{"/etc/rauc/system.conf": strings.Replace(raucConf, "%s", "barebox", 1)}, o: Options{From: RAUC},
			want: `bootloader="barebox": tandem drives RAUC's uboot and grub integrations only`},
		{name: "one bootable slot", opts: grub, files: map[string]string{"/etc/rauc/system.conf": "[system]\ncompatible=x\nbootloader=grub\n[slot.rootfs.0]\ndevice=/dev/sda2\nbootname=A\n"},
			o: Options{From: RAUC}, want: "names 1 bootable slots"},
		{name: "bad ini", opts: grub, files: map[string]string{"/etc/rauc/system.conf": "[system]\nbootloader\n"}, o: Options{From: RAUC}, want: "line 2: want [section] or key=value"},
		{name: "no compatible", opts: sim.Options{BootFlow: config.FlowRugixGrub}, want: "give the one your tandem bundles carry with --compatible"},
		{name: "space in compatible", opts: sim.Options{BootFlow: config.FlowRAUCGrub},
			files: map[string]string{"/etc/rauc/system.conf": strings.Replace(strings.Replace(raucConf, "%s", "grub", 1), "Board-v1", "Board v1", 1)},
			want:  `rauc's compatible string "Board v1" has a space`},
		{name: "unknown system", opts: grub, o: Options{From: "swupdate"}, want: `unknown system "swupdate"`},
		{name: "mender mid-update", opts: grub, files: menderFiles, want: "a trial of group b is pending on the mender integration",
			prep: func(t *testing.T, dir string) {
				d, err := device.Open(device.Options{Root: dir, ConfigPath: "/etc/saved.toml"})
				if err != nil {
					t.Fatal(err)
				}
				if err := d.Flow.TryNext("b"); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "dev")
			if err := sim.New(dir, tt.opts); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(dir, config.DefaultPath), filepath.Join(dir, "/etc/saved.toml")); err != nil {
				t.Fatal(err)
			}
			for p, text := range tt.files {
				p = filepath.Join(dir, p)
				_ = os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.prep != nil {
				tt.prep(t, dir)
			}
			o := tt.o
			o.Root = dir
			_, err := Detect(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Detect: %v, want an error with %q", err, tt.want)
			}
			if tt.name == "nothing" && !errors.Is(err, ErrNotFound) {
				t.Fatalf("%v is not ErrNotFound", err)
			}
		})
	}
}

// FuzzParseINI reads arbitrary system.conf files: an error or sections,
// never a panic.
func FuzzParseINI(f *testing.F) {
	f.Add([]byte(raucConf))
	f.Add([]byte("[system]\nbootloader=uboot\n[slot.rootfs.0]\n"))
	f.Add([]byte("x=y\n[\n]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		secs, order, err := parseINI(b)
		if err == nil && len(secs) != len(order) {
			t.Fatalf("%d sections, %d in order", len(secs), len(order))
		}
	})
}
