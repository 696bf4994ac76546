package image

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/bootenv/autoboot"
	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

const rpiSpec = `compatible = "acme-pi"
version = "1.0.0"
boot-flow = "rpi-tryboot"

[disk]
partition-prefix = "/dev/mmcblk0p"
system-size = "16M"
data-size = "8M"
boot-size = "34M"

[boot]
cmdline = "quiet"
%FIRMWARE%

[keys]
signing = ["release.key"]
trusted = ["release.pub"]

[tandem]
binary = "tandem-device"
`

// rpiFirmware is /boot/firmware as Debian's raspi-firmware and kernel
// hooks lay it out (tiny stand-ins for the real files).
var rpiFirmware = map[string]string{
	"config.txt":  "[all]\narm_64bit=1\nkernel=vmlinuz\ninitramfs initrd.img followkernel\n",
	"cmdline.txt": "console=serial0,115200 console=tty1 root=LABEL=RASPIROOT rw fsck.repair=yes rootwait\n",
	"start4.elf":  "firmware", "fixup4.dat": "fixup", "bootcode.bin": "bootcode",
	"vmlinuz": "kernel", "initrd.img": "initramfs",
	"bcm2711-rpi-4-b.dtb":       "dtb",
	"overlays/vc4-kms-v3d.dtbo": "overlay",
}

func (f *fixture) rpiSpec(t *testing.T, firmware string) *Spec {
	t.Helper()
	s, err := ParseSpec(filepath.Join(f.dir, "image.toml"), []byte(strings.Replace(rpiSpec, "%FIRMWARE%", firmware, 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBuildRPiTryboot(t *testing.T) {
	needTools(t, FlowRPiTryboot)
	f := newFixture(t)
	for p, c := range rpiFirmware {
		if err := WriteFile(filepath.Join(f.rootfs, "boot/firmware", p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "pi.img")
	r, err := Build(f.rpiSpec(t, ""), Options{RootFS: f.rootfs, Out: out, Created: 1})
	if err != nil {
		t.Fatal(err)
	}

	// The MBR: three FAT partitions, the extended one, and 5-7 Linux.
	var table struct {
		PartitionTable struct {
			Label      string
			Partitions []struct {
				Node        string
				Start, Size int64
				Type        string
			}
		}
	}
	if err := json.Unmarshal([]byte(tool(t, "sfdisk", "--json", out)), &table); err != nil {
		t.Fatal(err)
	}
	pt := table.PartitionTable
	if pt.Label != "dos" || len(pt.Partitions) != 7 {
		t.Fatalf("partition table: %+v", pt)
	}
	wantTypes := []string{"c", "c", "c", "5", "83", "83", "83"}
	byNumber := map[int]PartitionInfo{}
	for _, p := range r.Partitions {
		byNumber[p.Number] = p
	}
	for i, p := range pt.Partitions {
		if p.Type != wantTypes[i] || !strings.HasSuffix(p.Node, "img"+string(rune('1'+i))) {
			t.Errorf("partition %d: %+v, want type %s", i+1, p, wantTypes[i])
		}
		if ri, ok := byNumber[i+1]; ok && (ri.Start != p.Start*512 || ri.Size != p.Size*512) {
			t.Errorf("partition %d: table %+v, result %+v", i+1, p, ri)
		}
	}
	if len(r.Partitions) != 6 || byNumber[RPiPartConfig].Label != "config" || byNumber[RPiPartBootB].Label != "boot-b" ||
		byNumber[RPiPartSysA].Label != "system-a" || byNumber[RPiPartData].Label != "data" {
		t.Fatalf("result partitions: %+v", r.Partitions)
	}

	// The config partition: autoboot.txt, group a's boot partition the default.
	cfgPart := partition(t, out, byNumber[RPiPartConfig])
	ab := tool(t, "mtype", "-i", cfgPart, "::/autoboot.txt")
	if ab != string(autoboot.New(RPiPartBootA, RPiPartBootB).Bytes()) {
		t.Errorf("autoboot.txt:\n%s", ab)
	}

	// Each boot partition: the firmware's files and its group's cmdline.txt.
	for g, n := range map[string]int{"a": RPiPartBootA, "b": RPiPartBootB} {
		boot := partition(t, out, byNumber[n])
		for p, c := range rpiFirmware {
			if p == "cmdline.txt" {
				continue
			}
			if got := tool(t, "mtype", "-i", boot, "::/"+p); got != c {
				t.Errorf("boot-%s %s: %q, want %q", g, p, got, c)
			}
		}
		sys := map[string]string{"a": "5", "b": "6"}[g]
		want := "console=serial0,115200 console=tty1 rw fsck.repair=yes rootwait root=/dev/mmcblk0p" + sys + " tandem.group=" + g + " quiet\n"
		if got := tool(t, "mtype", "-i", boot, "::/cmdline.txt"); got != want {
			t.Errorf("boot-%s cmdline.txt: %q, want %q", g, got, want)
		}
	}

	// The system: system.toml names the rpi-tryboot flow on the config
	// partition, the slots are partitions 5 and 6, fstab mounts 1 and 7.
	sysA := partition(t, out, byNumber[RPiPartSysA])
	cfgText := debugfsOut(t, sysA, "cat /etc/tandem/system.toml")
	cfg, err := config.Parse("system.toml", []byte(cfgText))
	if err != nil {
		t.Fatalf("%v\n%s", err, cfgText)
	}
	if cfg.BootFlow.Type != config.FlowRPiTryboot || cfg.BootFlow.BootDir != "/boot/config" ||
		!strings.Contains(cfgText, `device = "/dev/mmcblk0p5"`) || !strings.Contains(cfgText, `device = "/dev/mmcblk0p6"`) {
		t.Errorf("system.toml:\n%s", cfgText)
	}
	fstab := debugfsOut(t, sysA, "cat /etc/fstab")
	if !strings.Contains(fstab, "/dev/mmcblk0p1 /boot/config vfat") || !strings.Contains(fstab, "/dev/mmcblk0p7 /data ext4") {
		t.Errorf("fstab:\n%s", fstab)
	}

	// tandem's own rpi-tryboot flow reads the built layout: the config
	// partition's autoboot.txt at boot-dir, default a; a commit of b
	// makes b the default.
	dev := t.TempDir()
	if err := WriteFile(filepath.Join(dev, "boot/config/autoboot.txt"), []byte(ab), 0o644); err != nil {
		t.Fatal(err)
	}
	flow, err := bootflow.New(cfg, rootfs.NewOS(dev))
	if err != nil {
		t.Fatal(err)
	}
	if g, err := flow.Default(); err != nil || g != "a" {
		t.Fatalf("the flow's default: %q, %v", g, err)
	}
	if err := flow.TryNext("b"); err != nil {
		t.Fatal(err)
	}
	ra, ok := flow.(bootflow.RebootArger)
	if !ok {
		t.Fatalf("%T is no RebootArger", flow)
	}
	if args, err := ra.RebootArgs(); err != nil || len(args) != 1 || args[0] != "0 tryboot" {
		t.Errorf("reboot args %q, %v", args, err)
	}
	if err := flow.Commit("b"); err != nil {
		t.Fatal(err)
	}
	if g, err := flow.Default(); err != nil || g != "b" {
		t.Errorf("after commit: %q, %v", g, err)
	}
}

func TestBuildRPiFirmwareDirAndMissing(t *testing.T) {
	needTools(t, FlowRPiTryboot)
	f := newFixture(t)
	fw := filepath.Join(f.dir, "fw")
	for p, c := range rpiFirmware {
		if p == "start4.elf" || strings.HasSuffix(p, ".dtb") || p == "initrd.img" {
			continue
		}
		if err := WriteFile(filepath.Join(fw, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "pi.img")
	// No /boot/firmware in the root file system.
	_, err := Build(f.rpiSpec(t, ""), Options{RootFS: f.rootfs, Out: out})
	if err == nil || !strings.Contains(err.Error(), "boot.firmware: /boot/firmware is not a directory") {
		t.Errorf("no firmware directory: %v", err)
	}
	// firmware-dir (relative to the spec) lacking files: one line naming them.
	_, err = Build(f.rpiSpec(t, `firmware-dir = "fw"`), Options{RootFS: f.rootfs, Out: out})
	want := "boot firmware " + fw + ": missing start4.elf, initrd.img, a device tree (*.dtb)"
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Errorf("missing files: %v, want %q", err, want)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed build left %s", out)
	}
	for p, c := range map[string]string{"start4.elf": "firmware", "initrd.img": "initramfs", "bcm2712-rpi-5-b.dtb": "dtb"} {
		if err := WriteFile(filepath.Join(fw, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Build(f.rpiSpec(t, `firmware-dir = "fw"`), Options{RootFS: f.rootfs, Out: out}); err != nil {
		t.Fatal(err)
	}
	// A kernel path is the config.txt's business.
	_, err = ParseSpec("image.toml", []byte(strings.Replace(rpiSpec, "%FIRMWARE%", `kernel = "/boot/vmlinuz"`, 1)), "")
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "not used by rpi-tryboot") {
		t.Errorf("kernel with rpi-tryboot: %v", err)
	}
}
