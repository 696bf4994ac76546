package image

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tandem-ota/tandem/bootloader"
	"github.com/tandem-ota/tandem/internal/bootenv/ubootenv"
)

// Arm64 layout: partition numbers in the guest (/dev/vdaN) and in U-Boot
// (virtio 0:N).
const (
	Arm64PartBoot   = 1
	Arm64PartSysA   = 2
	Arm64PartSysB   = 3
	Arm64PartData   = 4
	Arm64Compatible = "tandem-e2e-arm64"
	// Arm64BootDir is where the guest mounts the boot partition (boot-dir).
	Arm64BootDir = "/boot/firmware"
	// Arm64EnvSize is env-size: the size of each of tandem's env files.
	Arm64EnvSize = 0x4000
)

// UBootQEMU is Debian's u-boot-qemu build for QEMU's arm64 virt machine.
const UBootQEMU = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"

// ubootBoot is tandem_boot of the arm64 images: the kernel and initramfs of
// ${tandem_group} come from that group's system partition (ext4, read by
// U-Boot's load), so an update replaces them; the command line carries
// tandem.group. ${devtype} and ${devnum} are set by distro boot.
const ubootBoot = `if test "${tandem_group}" = b; then setenv tandem_part %[2]d; else setenv tandem_part %[1]d; fi; ` +
	`echo "UBOOT-E2E group=${tandem_group} part=${tandem_part}"; ` +
	`setenv bootargs "console=ttyAMA0 root=/dev/vda${tandem_part} tandem.group=${tandem_group} panic=1 %[3]s"; ` +
	`load ${devtype} ${devnum}:${tandem_part} ${kernel_addr_r} /boot/Image && ` +
	`load ${devtype} ${devnum}:${tandem_part} ${ramdisk_addr_r} /boot/initrd.img && ` +
	`booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}`

// Arm64 builds the arm64 test images: GPT with a FAT boot partition
// (boot.scr from bootloader/u-boot/boot.cmd and tandem's two env files),
// system-a, system-b and data, booted by Debian's qemu_arm64 U-Boot.
type Arm64 struct {
	Work     string // output directory
	Cache    string // download cache (kept across runs), e.g. /var/tmp/tandem-e2e
	Tandem   string // static tandem binary for arm64 (CGO_ENABLED=0 GOARCH=arm64)
	PubKey   string // trusted public key placed in /etc/tandem/keys
	Attempts int    // boot-flow attempts
	// Sizes in MiB (0: defaults).
	SystemMiB, DataMiB int
	// State, when set, boots the systems through tandem init with a blank
	// data partition.
	State *State
	// Loader is "" (tandem's uboot flow and boot.cmd) or an adopted
	// integration, LoaderMenderUBoot or LoaderRAUCUBoot (adopt.go).
	Loader string

	busybox, initrd, e2fs, fwenv string
	kernel                       Kernel
}

// Prepare fetches Debian's arm64 kernel and busybox (after dpkg
// --add-architecture arm64; nothing is installed on the host) and builds the
// initramfs. The generic arm64 kernel is used because it has the i6300esb
// watchdog driver (the cloud kernel does not).
func (a *Arm64) Prepare() error {
	if a.SystemMiB == 0 {
		a.SystemMiB = 64
	}
	if a.DataMiB == 0 {
		a.DataMiB = 200
	}
	out, err := exec.Command("dpkg", "--print-foreign-architectures").Output()
	if err != nil || !slices.Contains(strings.Fields(string(out)), "arm64") {
		return fmt.Errorf("arm64 is not a dpkg architecture here (run scripts/install-deps.sh, or dpkg --add-architecture arm64 && apt-get update)")
	}
	d := Debs{Cache: filepath.Join(a.Cache, "debs")}
	if a.kernel, err = DebianKernel(d, "linux-image-arm64:arm64"); err != nil {
		return err
	}
	if a.busybox, err = Busybox(d, "busybox-static:arm64"); err != nil {
		return err
	}
	if a.State != nil {
		if a.e2fs, err = E2fsprogs(d, "arm64"); err != nil {
			return err
		}
	}
	if a.Loader != "" {
		if a.fwenv, err = UBootTools(d); err != nil {
			return err
		}
	}
	a.initrd = filepath.Join(a.Work, "initrd.img")
	return BuildInitramfs(a.initrd, InitramfsOptions{Busybox: a.busybox, Kernel: a.kernel, Modules: []Module{
		{Name: "virtio_pci"}, {Name: "virtio_blk"}, {Name: "crc32c_generic"}, {Name: "ext4"}, {Name: "vfat"}, {Name: "nls_cp437"}, {Name: "nls_ascii"},
		{Name: "overlay"}, {Name: "i6300esb", Params: "heartbeat=10"},
	}})
}

// Config returns /etc/tandem/system.toml of the images: the uboot flow with
// the file back end on the boot partition.
func (a *Arm64) Config() string {
	if ad, ok := adoptUBoots[a.Loader]; ok {
		return systemConfig(Arm64Compatible, Arm64PartSysA, Arm64PartSysB, ad.flow)
	}
	flow := fmt.Sprintf("type = \"uboot\"\nboot-dir = %q\nattempts = %d\nenv-size = %#x\n", Arm64BootDir, max(a.Attempts, 1), Arm64EnvSize)
	return systemConfig(Arm64Compatible, Arm64PartSysA, Arm64PartSysB, flow)
}

// System builds the ext4 image of one system version at out, with the
// kernel (/boot/Image) and initramfs (/boot/initrd.img) U-Boot loads.
// behavior is "", "exit" or "hang" (SystemOptions.Behavior).
func (a *Arm64) System(out, version, behavior string) error {
	tree, err := os.MkdirTemp(a.Work, "system-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tree)
	o := SystemOptions{
		Version: version, Busybox: a.busybox, Tandem: a.Tandem, Config: a.Config(), Keys: []string{a.PubKey},
		Mounts: []Mount{
			{Device: fmt.Sprintf("/dev/vda%d", Arm64PartData), Dir: "/data", Type: "ext4"},
			{Device: fmt.Sprintf("/dev/vda%d", Arm64PartBoot), Dir: Arm64BootDir, Type: "vfat"},
		},
		Behavior: behavior,
		Boot:     map[string]string{"Image": a.kernel.Image, "initrd.img": a.initrd},
	}
	if a.State != nil {
		a.State.apply(&o, a.e2fs, fmt.Sprintf("/dev/vda%d", Arm64PartData))
	}
	if ad, ok := adoptUBoots[a.Loader]; ok {
		o.Files = map[string]string{"/etc/fw_env.config": FwEnvConfig}
		for p, c := range ad.files {
			o.Files[p] = c
		}
		o.Trees = append(o.Trees, a.fwenv)
	}
	if err := SystemTree(tree, o); err != nil {
		return err
	}
	return Ext4(out, int64(a.SystemMiB)*MiB, "system", tree)
}

// UBootEnv returns one of tandem's env files in U-Boot's redundant layout
// holding tandem_default=def, with the given flag.
func UBootEnv(def string, size int, flag byte) ([]byte, error) {
	env := &ubootenv.Env{}
	if err := env.Set("tandem_default", def); err != nil {
		return nil, err
	}
	return ubootenv.Encode(env, size, true, flag)
}

// BootScript compiles the U-Boot script with mkimage: the settings of the
// arm64 images, then bootloader/u-boot/boot.cmd. bootCmd "" is the images'
// tandem_boot.
func BootScript(out, bootCmd string) error {
	if bootCmd == "" {
		bootCmd = fmt.Sprintf(ubootBoot, Arm64PartSysA, Arm64PartSysB, cmdline(nil))
	}
	src, err := bootloader.UBootCmd(bootloader.UBootSettings{
		Groups: []string{"a", "b"}, EnvFile: "uboot.env", EnvFileRedund: "uboot-redund.env", EnvSize: Arm64EnvSize, Boot: bootCmd,
	})
	if err != nil {
		return err
	}
	cmd := out + ".cmd"
	if err := os.WriteFile(cmd, src, 0o644); err != nil {
		return err
	}
	defer os.Remove(cmd)
	return run("mkimage", "-A", "arm64", "-T", "script", "-C", "none", "-n", "tandem", "-d", cmd, out)
}

// BootPart builds the FAT boot partition image at out: boot.scr and both
// env files naming group a (equal flags: the first file is current).
func (a *Arm64) BootPart(out string) error {
	tree, err := os.MkdirTemp(a.Work, "boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tree)
	boot := fmt.Sprintf(ubootBoot, Arm64PartSysA, Arm64PartSysB, cmdline(a.State))
	if a.Loader != "" {
		if err := adoptBootTree(a.Loader, tree, boot); err != nil {
			return err
		}
		return VFAT(out, 64*MiB, "BOOT", tree)
	}
	if err := BootScript(filepath.Join(tree, "boot.scr"), boot); err != nil {
		return err
	}
	env, err := UBootEnv("a", Arm64EnvSize, 1)
	if err != nil {
		return err
	}
	for _, f := range []string{"uboot.env", "uboot-redund.env"} {
		if err := writeFile(filepath.Join(tree, f), env, 0o644); err != nil {
			return err
		}
	}
	return VFAT(out, 64*MiB, "BOOT", tree)
}

// Partitions returns the disk layout with the given partition images.
func (a *Arm64) Partitions(boot, sysA, sysB, data string) []Partition {
	return []Partition{
		{Label: "boot", Type: TypeESP, Size: 64 * MiB, Image: boot},
		{Label: "system-a", Type: TypeLinux, Size: int64(a.SystemMiB) * MiB, Image: sysA},
		{Label: "system-b", Type: TypeLinux, Size: int64(a.SystemMiB) * MiB, Image: sysB},
		{Label: "data", Type: TypeLinux, Size: int64(a.DataMiB) * MiB, Image: data},
	}
}

// Data builds the data partition: tandem's data directory and the bundles
// under /data/bundles (the same layout as the x86-64 images).
func (a *Arm64) Data(out string, bundles map[string]string) error {
	x := X86{Work: a.Work, DataMiB: a.DataMiB}
	return x.Data(out, bundles)
}
