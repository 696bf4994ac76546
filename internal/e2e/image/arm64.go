package image

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	diskimage "github.com/tandem-ota/tandem/internal/image"
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
	Arm64EnvSize = diskimage.UBootEnvSize
)

// UBootQEMU is Debian's u-boot-qemu build for QEMU's arm64 virt machine.
const UBootQEMU = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"

// ubootBoot is tandem_boot of the arm64 images (image.UBootBoot): the
// kernel and initramfs of ${tandem_group} come from that group's system
// partition, so an update replaces them; U-Boot prints the group it boots.
func ubootBoot(st *State) string {
	return diskimage.UBootBoot(diskimage.BootConfig{SysA: Arm64PartSysA, SysB: Arm64PartSysB, Root: "/dev/vda",
		Kernel: "/boot/Image", Initramfs: "/boot/initrd.img", Cmdline: "console=ttyAMA0 panic=1 " + cmdline(st), Arch: "arm64",
		Extra: ubootEcho})
}

// ubootEcho is the U-Boot command of the images that prints the group it boots.
const ubootEcho = `echo "UBOOT-E2E group=${tandem_group} part=${tandem_part}"`

// Arm64 builds the arm64 test images: GPT with a FAT boot partition
// (boot.scr from bootloader/u-boot/boot.cmd and tandem's two env files),
// system-a, system-b and data, booted by Debian's qemu_arm64 U-Boot.
type Arm64 struct {
	Work     string // output directory
	Cache    string // download cache (kept across runs), e.g. /var/tmp/tandem-e2e
	Tandem   string // static tandem binary for arm64 (CGO_ENABLED=0 GOARCH=arm64)
	PubKey   string // trusted public key placed in /etc/tandem/keys
	Key      string // private key that signs the factory image's bundle
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
	return systemConfig(Arm64Compatible, Arm64PartSysA, Arm64PartSysB, diskimage.FlowConfig(diskimage.FlowUBoot, max(a.Attempts, 1)))
}

// spec returns the image spec and the builder's options of version's
// images (internal/image, as `tandem image build`): the uboot flow, the
// guest's sizes and boot settings, U-Boot's test line, and for an adopted
// integration its system.toml and boot partition.
func (a *Arm64) spec(version string) (*diskimage.Spec, diskimage.Options, error) {
	s := &diskimage.Spec{Compatible: Arm64Compatible, Version: version, BootFlow: diskimage.FlowUBoot,
		Disk: diskimage.DiskSpec{PartitionPrefix: "/dev/vda", BootSize: "64M", SystemSize: fmt.Sprintf("%dM", a.SystemMiB),
			DataSize: fmt.Sprintf("%dM", a.DataMiB)},
		Boot: diskimage.BootSpec{Arch: "arm64", Kernel: "/boot/Image", Initramfs: "/boot/initrd.img",
			Cmdline: "console=ttyAMA0 panic=1 " + cmdline(a.State), Attempts: max(a.Attempts, 1)},
		Keys:   diskimage.KeySpec{Signing: []string{a.Key}, Trusted: []string{a.PubKey}},
		Tandem: diskimage.TandemSpec{Binary: a.Tandem, RebootCommand: []string{"/bin/reboot", "-f"}},
	}
	o := diskimage.Options{Loader: diskimage.LoaderHooks{Extra: ubootEcho}}
	if a.Loader != "" {
		o.SystemConfig = a.Config()
		o.BootTree = func(tree string) error { return adoptBootTree(a.Loader, tree, ubootBoot(a.State)) }
	}
	return s, o, s.Check()
}

// rootTree writes the root file system of one system version under dir,
// with the kernel (/boot/Image) and initramfs (/boot/initrd.img) U-Boot
// loads; tandem, system.toml and the keys are the image builder's.
func (a *Arm64) rootTree(dir, version, behavior string) error {
	o := SystemOptions{
		Version: version, Busybox: a.busybox,
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
		if o.Files == nil {
			o.Files = map[string]string{}
		}
		o.Files["/etc/fw_env.config"] = FwEnvConfig
		for p, c := range ad.files {
			o.Files[p] = c
		}
		o.Trees = append(o.Trees, a.fwenv)
	}
	return SystemTree(dir, o)
}

// System builds the ext4 image of one system version at out with the image
// builder (internal/image.System). behavior is "", "exit" or "hang"
// (SystemOptions.Behavior).
func (a *Arm64) System(out, version, behavior string) error {
	s, o, err := a.spec(version)
	if err != nil {
		return err
	}
	return buildSystem(a.Work, s, o, out, func(dir string) error { return a.rootTree(dir, version, behavior) })
}

// Factory builds the factory disk of version 1.0.0 at out with the image
// builder (internal/image.Build, as `tandem image build`), with the files
// (name → host path) under /data/bundles, or a blank data partition with
// State.
func (a *Arm64) Factory(out string, bundles map[string]string) (*diskimage.Result, error) {
	s, o, err := a.spec("1.0.0")
	if err != nil {
		return nil, err
	}
	return buildFactory(a.Work, s, o, out, bundles, a.State != nil, func(dir string) error { return a.rootTree(dir, "1.0.0", "") })
}

// BootScript compiles the U-Boot script of the arm64 images at out
// (image.UBootScript); bootCmd "" is the images' tandem_boot.
func BootScript(out, bootCmd string) error {
	if bootCmd == "" {
		bootCmd = ubootBoot(nil)
	}
	return diskimage.UBootScript(out, "arm64", bootCmd)
}
