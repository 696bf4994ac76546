package image

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	diskimage "github.com/tandem-ota/tandem/internal/image"
)

// Boot loaders of the x86-64 images.
const (
	LoaderGrub   = "grub"         // GRUB standalone EFI image + bootloader/grub/tandem.cfg, boot flow grub
	LoaderSDBoot = "systemd-boot" // systemd-boot + loader entries, boot flow systemd-boot
	// LoaderSDBootCount is systemd-boot with boot counting: each group's
	// kernel, initramfs and command line are file slots on the ESP
	// (/tandem/<group>/), and tandem writes the group's entry.
	LoaderSDBootCount = "systemd-boot-counting"
	// LoaderSDBootUKI is LoaderSDBootCount with a unified kernel image per
	// group (systemd-stub with the kernel, initramfs and a command line;
	// slot "uki") and a command line file slot.
	LoaderSDBootUKI = "systemd-boot-uki"
)

// X86 layout: partition numbers in the guest (/dev/vdaN).
const (
	X86PartESP    = 1
	X86PartSysA   = 2
	X86PartSysB   = 3
	X86PartData   = 4
	X86Compatible = "tandem-e2e-x86"
)

// X86 builds the x86-64 EFI test images: GPT with ESP, system-a, system-b
// and data, booted by OVMF and the real GRUB or systemd-boot.
type X86 struct {
	Loader   string // LoaderGrub or LoaderSDBoot
	Work     string // output directory
	Cache    string // download cache (kept across runs), e.g. /var/tmp/tandem-e2e
	Tandem   string // static tandem binary (CGO_ENABLED=0)
	PubKey   string // trusted public key placed in /etc/tandem/keys
	Key      string // private key that signs the factory image's bundle
	Attempts int    // boot-flow attempts (grub)
	// Sizes in MiB (0: defaults).
	SystemMiB, DataMiB int
	// State, when set, boots the systems through tandem init with a blank
	// data partition (GRUB only).
	State *State

	busybox, initrd, e2fs string
	kernel                Kernel
	modules               []Module
}

// Prepare fetches the Debian kernel and busybox and builds the initramfs.
func (x *X86) Prepare() error {
	if x.SystemMiB == 0 {
		x.SystemMiB = 48
	}
	if x.DataMiB == 0 {
		x.DataMiB = 160
	}
	d := Debs{Cache: filepath.Join(x.Cache, "debs")}
	var err error
	if x.kernel, err = DebianKernel(d, "linux-image-amd64"); err != nil {
		return err
	}
	if x.busybox, err = Busybox(d, "busybox-static"); err != nil {
		return err
	}
	if x.State != nil {
		if x.e2fs, err = E2fsprogs(d, "amd64"); err != nil {
			return err
		}
	}
	x.initrd = filepath.Join(x.Work, "initrd.img")
	x.modules = []Module{
		{Name: "virtio_pci"}, {Name: "virtio_blk"}, {Name: "crc32c_generic"}, {Name: "ext4"}, {Name: "vfat"}, {Name: "nls_cp437"}, {Name: "nls_ascii"},
		{Name: "nls_utf8"}, {Name: "efivarfs"}, {Name: "overlay"}, {Name: "i6300esb", Params: "heartbeat=10"}, {Name: "virtio_net"},
	}
	return BuildInitramfs(x.initrd, InitramfsOptions{Busybox: x.busybox, Kernel: x.kernel, Modules: x.modules})
}

// BootFiles returns, for LoaderSDBootCount, the boot files of a system
// version as bundle slot arguments ("--slot", "kernel=<path>", ...): the
// kernel, an initramfs that leaves the version in
// /dev/.tandem-e2e-initramfs, and a command line with
// tandem.e2e_cmdline=<version>. Other loaders have none.
func (x *X86) BootFiles(version string) ([]string, error) {
	files, err := x.bootFiles(version)
	var args []string
	for _, f := range files {
		args = append(args, "--slot", f.alias+"="+f.src)
	}
	return args, err
}

// bootFile is one boot file of a counting image: its slot alias, its name
// under /tandem/<group>/ on the ESP and its content on the host.
type bootFile struct{ alias, name, src string }

// bootFiles returns the boot files of a version (none unless counting):
// kernel, initramfs and command line, or a UKI and the command line.
func (x *X86) bootFiles(version string) ([]bootFile, error) {
	if x.Loader != LoaderSDBootCount && x.Loader != LoaderSDBootUKI {
		return nil, nil
	}
	initrd, cmdline, err := x.versionFiles(version)
	if err != nil {
		return nil, err
	}
	if x.Loader == LoaderSDBootUKI {
		uki, err := x.uki(version, initrd)
		return []bootFile{{"uki", "linux.efi", uki}, {"cmdline", "cmdline", cmdline}}, err
	}
	return []bootFile{{"kernel", "vmlinuz", x.kernel.Image}, {"initrd", "initrd.img", initrd}, {"cmdline", "cmdline", cmdline}}, nil
}

// uki builds (once) the unified kernel image of a version: systemd-stub of
// the systemd-boot-efi package with .osrel, .cmdline, .linux and .initrd
// sections added by objcopy. Its built-in command line names no group; the
// entry's options line (no Secure Boot) replaces it.
func (x *X86) uki(version, initrd string) (string, error) {
	out := filepath.Join(x.Work, "linux-"+version+".efi")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	dir, err := Debs{Cache: filepath.Join(x.Cache, "debs")}.Extract("systemd-boot-efi")
	if err != nil {
		return "", err
	}
	osrel, cmdline := filepath.Join(x.Work, "osrel-"+version), filepath.Join(x.Work, "uki-cmdline-"+version)
	if err := diskimage.WriteFile(osrel, fmt.Appendf(nil, "ID=tandem-e2e\nVERSION_ID=%s\n", version), 0o644); err != nil {
		return "", err
	}
	if err := diskimage.WriteFile(cmdline, []byte("console=ttyS0 panic=1 quiet"), 0o644); err != nil {
		return "", err
	}
	// The section addresses follow the stub's last section (below 0x20000).
	return out, diskimage.Run("objcopy", "--add-section", ".osrel="+osrel, "--change-section-vma", ".osrel=0x20000",
		"--add-section", ".cmdline="+cmdline, "--change-section-vma", ".cmdline=0x30000",
		"--add-section", ".linux="+x.kernel.Image, "--change-section-vma", ".linux=0x2000000",
		"--add-section", ".initrd="+initrd, "--change-section-vma", ".initrd=0x3000000",
		filepath.Join(dir, "usr/lib/systemd/boot/efi/linuxx64.efi.stub"), out)
}

// versionFiles builds (once) the initramfs and command line of a version.
func (x *X86) versionFiles(version string) (initrd, cmdline string, err error) {
	initrd = filepath.Join(x.Work, "initrd-"+version+".img")
	cmdline = filepath.Join(x.Work, "cmdline-"+version)
	if _, err := os.Stat(initrd); err == nil {
		return initrd, cmdline, nil
	}
	if err := diskimage.WriteFile(cmdline, []byte("quiet tandem.e2e_cmdline="+version+"\n"), 0o644); err != nil {
		return "", "", err
	}
	return initrd, cmdline, BuildInitramfs(initrd, InitramfsOptions{Busybox: x.busybox, Kernel: x.kernel, Modules: x.modules, Version: version})
}

// Config returns /etc/tandem/system.toml of the images.
func (x *X86) Config() string {
	flow := diskimage.FlowConfig(diskimage.FlowGrub, max(x.Attempts, 1))
	if x.Loader == LoaderSDBoot {
		flow = diskimage.FlowConfig(diskimage.FlowSDBoot, 0)
	}
	if f, ok := adoptFlows[x.Loader]; ok {
		flow = f // adopt.go
	}
	if x.Loader == LoaderSDBootCount || x.Loader == LoaderSDBootUKI {
		return x.countingConfig()
	}
	return systemConfig(X86Compatible, X86PartSysA, X86PartSysB, flow)
}

// countingConfig is system.toml for LoaderSDBootCount (and UKI): each group
// has its system partition and its boot files on the ESP, mounted at /boot/efi.
func (x *X86) countingConfig() string {
	files := [][2]string{{"kernel", "vmlinuz"}, {"initrd", "initrd.img"}, {"cmdline", "cmdline"}}
	if x.Loader == LoaderSDBootUKI {
		files = [][2]string{{"uki", "linux.efi"}, {"cmdline", "cmdline"}}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "compatible = %q\ndata-dir = \"/data/tandem\"\nreboot-command = [\"/bin/reboot\", \"-f\"]\n\n", X86Compatible)
	for _, g := range []struct {
		name string
		part int
	}{{"a", X86PartSysA}, {"b", X86PartSysB}} {
		fmt.Fprintf(&b, "[slots.system-%s]\ntype = \"block\"\ndevice = \"/dev/vda%d\"\n\n", g.name, g.part)
		slots := fmt.Sprintf("system = \"system-%s\"", g.name)
		for _, f := range files {
			fmt.Fprintf(&b, "[slots.%s-%s]\ntype = \"file\"\npath = \"/boot/efi/tandem/%s/%s\"\nresize = true\n\n", f[0], g.name, g.name, f[1])
			slots += fmt.Sprintf(", %[1]s = \"%[1]s-%[2]s\"", f[0], g.name)
		}
		fmt.Fprintf(&b, "[groups.%s]\nslots = { %s }\n\n", g.name, slots)
	}
	fmt.Fprintf(&b, "[boot-flow]\ntype = \"systemd-boot\"\nboot-dir = \"/boot/efi\"\nboot-counting = true\nattempts = %d\n", max(x.Attempts, 1))
	fmt.Fprintf(&b, "options = { a = \"root=/dev/vda%d console=ttyS0 panic=1\", b = \"root=/dev/vda%d console=ttyS0 panic=1\" }\n", X86PartSysA, X86PartSysB)
	return b.String()
}

// spec returns the image spec and the builder's options of version's
// images (internal/image, as `tandem image build`): the guest's sizes, boot
// settings and test hooks, and for the boot set-ups the builder does not
// know (boot counting, adopted integrations) their system.toml and ESP.
func (x *X86) spec(version string) (*diskimage.Spec, diskimage.Options, error) {
	s := &diskimage.Spec{Compatible: X86Compatible, Version: version, BootFlow: diskimage.FlowGrub,
		Disk: diskimage.DiskSpec{PartitionPrefix: "/dev/vda", BootSize: "64M", SystemSize: fmt.Sprintf("%dM", x.SystemMiB),
			DataSize: fmt.Sprintf("%dM", x.DataMiB)},
		Boot: diskimage.BootSpec{Arch: "x86_64", Kernel: "/boot/vmlinuz", Initramfs: "/boot/initrd.img",
			Cmdline: "console=ttyS0 panic=1 " + cmdline(x.State), Attempts: max(x.Attempts, 1)},
		Keys:   diskimage.KeySpec{Signing: []string{x.Key}, Trusted: []string{x.PubKey}},
		Tandem: diskimage.TandemSpec{Binary: x.Tandem, RebootCommand: []string{"/bin/reboot", "-f"}},
	}
	var o diskimage.Options
	switch x.Loader {
	case LoaderGrub:
		o.Loader = diskimage.LoaderHooks{Pre: grubPre, Extra: grubExtra, Cmdline: "${e2e_args}"}
	case LoaderSDBoot:
		s.BootFlow = diskimage.FlowSDBoot
		dir, err := Debs{Cache: filepath.Join(x.Cache, "debs")}.Extract("systemd-boot-efi")
		if err != nil {
			return nil, o, err
		}
		s.Boot.EFIBinary = filepath.Join(dir, "usr/lib/systemd/boot/efi/systemd-bootx64.efi")
	case LoaderSDBootCount, LoaderSDBootUKI:
		s.BootFlow = diskimage.FlowSDBoot
		o.SystemConfig = x.countingConfig()
		o.BootTree = func(tree string) error { return x.countingESP(tree, filepath.Join(tree, "EFI", "BOOT")) }
	default: // adopt.go
		o.SystemConfig = x.Config()
		o.BootTree = func(tree string) error {
			boot := filepath.Join(tree, "EFI", "BOOT")
			if err := os.MkdirAll(boot, 0o755); err != nil {
				return err
			}
			return x.adoptESP(tree, boot)
		}
	}
	return s, o, s.Check()
}

// rootTree writes the root file system of one system version under dir:
// busybox, the console init (behavior: SystemOptions.Behavior), the
// kernel and initramfs in /boot, the mounts of the data partition and the
// ESP, and with State tandem init's parts. tandem, its system.toml and the
// keys are the image builder's.
func (x *X86) rootTree(dir, version, behavior string) error {
	o := SystemOptions{
		Version: version, Busybox: x.busybox,
		Mounts: []Mount{
			{Device: fmt.Sprintf("/dev/vda%d", X86PartData), Dir: "/data", Type: "ext4"},
			{Device: fmt.Sprintf("/dev/vda%d", X86PartESP), Dir: "/boot/efi", Type: "vfat"},
		},
		Behavior: behavior,
		Boot:     map[string]string{"vmlinuz": x.kernel.Image, "initrd.img": x.initrd},
	}
	if x.State != nil {
		x.State.apply(&o, x.e2fs, fmt.Sprintf("/dev/vda%d", X86PartData))
	}
	return SystemTree(dir, o)
}

// System builds the ext4 image of one system version at out with the image
// builder (internal/image.System). behavior is "", "exit" or "hang"
// (SystemOptions.Behavior). The kernel and initramfs live in the system's
// /boot, so an update replaces them (GRUB).
func (x *X86) System(out, version, behavior string) error {
	s, o, err := x.spec(version)
	if err != nil {
		return err
	}
	return buildSystem(x.Work, s, o, out, func(dir string) error { return x.rootTree(dir, version, behavior) })
}

// Factory builds the factory disk of version 1.0.0 at out with the image
// builder (internal/image.Build, as `tandem image build`), with the files
// (name → host path) under /data/bundles, or a blank data partition with
// State.
func (x *X86) Factory(out string, bundles map[string]string) (*diskimage.Result, error) {
	s, o, err := x.spec("1.0.0")
	if err != nil {
		return nil, err
	}
	return buildFactory(x.Work, s, o, out, bundles, x.State != nil, func(dir string) error { return x.rootTree(dir, "1.0.0", "") })
}

// RootFS writes under dir the root file system of a guest of version for
// `tandem image build` (docs/image.md; make demo-qemu): busybox, the console
// init, the kernel and initramfs in /boot, the mounts of the data partition
// and the ESP. tandem, its system.toml and the keys are the image builder's.
func (x *X86) RootFS(dir, version string) error {
	return SystemTree(dir, SystemOptions{Version: version, Busybox: x.busybox,
		Mounts: []Mount{
			{Device: fmt.Sprintf("/dev/vda%d", X86PartData), Dir: "/data", Type: "ext4"},
			{Device: fmt.Sprintf("/dev/vda%d", X86PartESP), Dir: "/boot/efi", Type: "vfat"},
		},
		Boot: map[string]string{"vmlinuz": x.kernel.Image, "initrd.img": x.initrd}})
}

// grubPre and grubExtra are the test lines of EFI/BOOT/grub.cfg
// (image.GrubCfg): GRUB settings for the run of tandem.cfg in
// EFI/BOOT/e2e-debug.cfg (set debug=efidisk: GRUB prints each disk write,
// the timing mark of the save_env cut test), unset after it; kernel
// parameters for the next boots in EFI/BOOT/e2e-args.cfg (set
// e2e_args="..."), e.g. tandem init's test pause; and the group GRUB boots.
const (
	grubPre   = `if [ -f ${prefix}/e2e-debug.cfg ]; then source ${prefix}/e2e-debug.cfg; fi`
	grubExtra = `unset debug
if [ -f ${prefix}/e2e-args.cfg ]; then source ${prefix}/e2e-args.cfg; fi
echo "GRUB-E2E group=${tandem_group} part=${tandem_part}"`
)

// countingESP fills the ESP tree for LoaderSDBootCount: systemd-boot,
// loader.conf choosing the newest tandem entry (default tandem-*), both
// groups' version 1.0.0 boot files and the good entry of group a.
func (x *X86) countingESP(tree, boot string) error {
	if err := os.MkdirAll(boot, 0o755); err != nil {
		return err
	}
	d := Debs{Cache: filepath.Join(x.Cache, "debs")}
	dir, err := d.Extract("systemd-boot-efi")
	if err != nil {
		return err
	}
	if err := diskimage.CopyFile(filepath.Join(dir, "usr/lib/systemd/boot/efi/systemd-bootx64.efi"), filepath.Join(boot, "BOOTX64.EFI"), 0o644); err != nil {
		return err
	}
	if err := diskimage.WriteFile(filepath.Join(tree, "loader", "loader.conf"), []byte("default tandem-*\ntimeout 0\nconsole-mode keep\n"), 0o644); err != nil {
		return err
	}
	files, err := x.bootFiles("1.0.0")
	if err != nil {
		return err
	}
	for _, g := range []string{"a", "b"} {
		for _, f := range files {
			if err := diskimage.CopyFile(f.src, filepath.Join(tree, "tandem", g, f.name), 0o644); err != nil {
				return err
			}
		}
	}
	prog := "linux /tandem/a/vmlinuz\ninitrd /tandem/a/initrd.img"
	if x.Loader == LoaderSDBootUKI {
		prog = "efi /tandem/a/linux.efi"
	}
	entry := fmt.Sprintf("title tandem a\n%s\noptions root=/dev/vda%d console=ttyS0 panic=1 quiet tandem.e2e_cmdline=1.0.0 tandem.group=a\n", prog, X86PartSysA)
	return diskimage.WriteFile(filepath.Join(tree, "loader", "entries", "tandem-1-a.conf"), []byte(entry), 0o644)
}
