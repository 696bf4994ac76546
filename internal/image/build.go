// Package image writes bootable A/B factory disk images (`tandem image
// build`, docs/image.md) and is the one disk-layout builder of tandem's
// real-boot tests (internal/e2e/image builds their guests on it). It runs
// host tools and needs no root rights, loop devices or mounts: ext4 file
// systems with `mkfs.ext4 -d` (owners and device nodes kept by fakeroot),
// FAT with mkfs.vfat and mtools, the GPT with sfdisk on the image file, the
// boot loaders with grub-mkimage and mkimage. The boot scripts are the ones
// tandem's flows pair with (package bootloader).
package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/bundle/spec"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Partition numbers of a built image.
const (
	PartBoot = 1
	PartSysA = 2
	PartSysB = 3
	PartData = 4
)

// Partition numbers of an rpi-tryboot image (MBR; 4 is the extended
// partition holding 5-7).
const (
	RPiPartConfig = 1
	RPiPartBootA  = 2
	RPiPartBootB  = 3
	RPiPartSysA   = 5
	RPiPartSysB   = 6
	RPiPartData   = 7
)

// Mount points of the boot partition in the root file system, by flow.
var bootDirs = map[string]string{FlowGrub: "/boot/efi", FlowSDBoot: "/boot/efi", FlowUBoot: "/boot/firmware", FlowRPiTryboot: "/boot/config"}

// SystemConfig is /etc/tandem/system.toml of an A/B image: two block
// slots, partitions SysA and SysB, and the boot flow.
type SystemConfig struct {
	Compatible string
	Root       string // partition prefix: slot devices are <Root><N>
	SysA, SysB int
	Flow       string // the body of [boot-flow] (FlowConfig)
	Top        string // more top-level lines, e.g. reboot-command
}

// String returns the file's content.
func (c SystemConfig) String() string {
	return fmt.Sprintf(`compatible = %q
data-dir = "/data/tandem"
%s
[slots.system-a]
type = "block"
device = "%s%d"

[slots.system-b]
type = "block"
device = "%[3]s%[5]d"

[groups.a]
slots = { system = "system-a" }

[groups.b]
slots = { system = "system-b" }

[boot-flow]
%s`, c.Compatible, c.Top, c.Root, c.SysA, c.SysB, c.Flow)
}

// FlowConfig returns the body of [boot-flow] for an image's flow, with the
// boot partition mounted at boot-dir.
func FlowConfig(flow string, attempts int) string {
	switch flow {
	case FlowUBoot:
		return fmt.Sprintf("type = \"uboot\"\nboot-dir = %q\nattempts = %d\nenv-size = %#x\n", bootDirs[flow], attempts, UBootEnvSize)
	case FlowSDBoot:
		return fmt.Sprintf("type = \"systemd-boot\"\nboot-dir = %q\n", bootDirs[flow])
	case FlowRPiTryboot:
		return fmt.Sprintf("type = \"rpi-tryboot\"\nboot-dir = %q\npartitions = { a = %d, b = %d }\n", bootDirs[flow], RPiPartBootA, RPiPartBootB)
	}
	return fmt.Sprintf("type = \"grub\"\nboot-dir = %q\nattempts = %d\n", bootDirs[FlowGrub], attempts)
}

// Options are the inputs of Build besides the spec.
type Options struct {
	RootFS   string // directory or tar archive (plain, gzip or zstd)
	Out      string // the disk image
	Bundle   string // the bundle of the spec's version ("": Out with the extension .tandem)
	Created  int64  // the bundle's creation time (spec.Created)
	Progress func(step string)

	// The fields below are for Go callers whose images the spec cannot
	// describe (tandem's real-boot tests build their guests with them).
	// They are not checked like the spec's fields.

	// SystemConfig replaces the generated /etc/tandem/system.toml (it must
	// still parse), e.g. for other slots or an adopted boot flow.
	SystemConfig string
	// BootTree, when set, fills the boot partition's tree instead of the
	// flow's files (a boot loader set-up the builder does not know).
	BootTree func(dir string) error
	// Loader adds lines to the flow's boot loader configuration.
	Loader LoaderHooks
	// DataTree is a host directory copied into the data partition's root
	// (next to /tandem), e.g. bundles a test installs from.
	DataTree string
	// DataEmpty leaves the data partition zero: tandem init makes its file
	// system at the first boot (docs/state.md).
	DataEmpty bool
}

// LoaderHooks are verbatim additions to the generated boot configuration
// (BootConfig's Pre and Extra; Cmdline is appended to the kernel
// parameters, unlike boot.cmdline it may hold GRUB variables).
type LoaderHooks struct {
	Pre, Extra, Cmdline string
}

// Result says what Build wrote.
type Result struct {
	Disk       string          `json:"disk"`
	Bundle     string          `json:"bundle"`
	BundleHash string          `json:"bundle_hash"`
	BootFlow   string          `json:"boot_flow"`
	Version    string          `json:"version"`
	Partitions []PartitionInfo `json:"partitions"`
}

// PartitionInfo is one partition of the written disk.
type PartitionInfo struct {
	Number int    `json:"number"`
	Label  string `json:"label"`
	Start  int64  `json:"start"` // bytes
	Size   int64  `json:"size"`  // bytes
	Empty  bool   `json:"empty,omitempty"`
}

// WriteText prints the result for humans.
func (r *Result) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "disk    %s (%s, version %s)\n", r.Disk, r.BootFlow, r.Version)
	for _, p := range r.Partitions {
		empty := ""
		if p.Empty {
			empty = " (empty)"
		}
		fmt.Fprintf(w, "  %d %-9s %6d MiB at %d MiB%s\n", p.Number, p.Label, p.Size/MiB, p.Start/MiB, empty)
	}
	_, err := fmt.Fprintf(w, "bundle  %s\nhash    %s\n", r.Bundle, r.BundleHash)
	return err
}

// tools returns the host tools a flow needs.
func tools(flow string) []string {
	t := []string{"fakeroot", "tar", "mkfs.ext4", "mkfs.vfat", "mcopy", "sfdisk"}
	switch flow {
	case FlowGrub:
		t = append(t, "grub-mkimage")
	case FlowUBoot:
		t = append(t, "mkimage")
	}
	return t
}

// job is a checked build: the spec, the options and what was read from
// them before anything is written.
type job struct {
	s     *Spec
	o     Options
	flow  string
	cfg   string            // system.toml
	keys  map[string][]byte // trusted keys by file name
	agent string            // host path of the device's tandem
}

// prepare checks the tools, the keys, the agent binary, the root file
// system and system.toml.
func prepare(s *Spec, o Options) (*job, error) {
	j := &job{s: s, o: o, flow: s.Flow(), keys: map[string][]byte{}}
	if err := CheckTools(tools(j.flow)...); err != nil {
		return nil, err
	}
	var err error
	for _, k := range s.Keys.Trusted {
		if j.keys[filepath.Base(k)], err = os.ReadFile(k); err != nil {
			return nil, fmt.Errorf("keys.trusted: %w", err)
		}
	}
	if j.agent, err = agentBinary(s); err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.RootFS); err != nil {
		return nil, fmt.Errorf("root file system: %w", err)
	}
	top := ""
	if len(s.Tandem.RebootCommand) > 0 {
		top = fmt.Sprintf("reboot-command = [\"%s\"]\n", strings.Join(s.Tandem.RebootCommand, `", "`))
	}
	j.cfg = o.SystemConfig
	if j.cfg == "" {
		sysA, sysB := PartSysA, PartSysB
		if j.flow == FlowRPiTryboot {
			sysA, sysB = RPiPartSysA, RPiPartSysB
		}
		j.cfg = SystemConfig{Compatible: s.Compatible, Root: s.Disk.PartitionPrefix, SysA: sysA, SysB: sysB,
			Flow: FlowConfig(j.flow, s.Boot.Attempts), Top: top}.String()
	}
	if _, err := config.Parse("system.toml", []byte(j.cfg)); err != nil {
		return nil, fmt.Errorf("the generated system.toml: %w", err)
	}
	return j, nil
}

// system unpacks the root file system under work, adds tandem's files and
// writes the system partition's ext4 image to out. The caller closes the
// returned tree; kernel and initramfs are paths in it.
func (j *job) system(work, out string) (_ *tree, kernel, initramfs string, err error) {
	s := j.s
	xs, err := readXattrs(j.o.RootFS)
	if err != nil {
		return nil, "", "", fmt.Errorf("root file system: %w", err)
	}
	t, err := unpack(j.o.RootFS, filepath.Join(work, "root"), filepath.Join(work, "fakeroot.db"))
	if err != nil {
		return nil, "", "", fmt.Errorf("root file system: %w", err)
	}
	defer func() {
		if err != nil {
			t.root.Close()
		}
	}()
	if s.Boot.Kernel != "" { // rpi-tryboot: config.txt names it
		if kernel, err = t.resolve(s.Boot.Kernel); err != nil {
			return nil, "", "", fmt.Errorf("boot.kernel: %w", err)
		}
	}
	if s.Boot.Initramfs != "" {
		if initramfs, err = t.resolve(s.Boot.Initramfs); err != nil {
			return nil, "", "", fmt.Errorf("boot.initramfs: %w", err)
		}
	}
	mounts := []mount{{"PARTLABEL=boot", bootDirs[j.flow], "vfat"}, {"PARTLABEL=data", "/data", "ext4"}}
	if j.flow == FlowRPiTryboot { // an MBR has no partition labels
		p := s.Disk.PartitionPrefix
		mounts = []mount{{fmt.Sprint(p, RPiPartConfig), bootDirs[j.flow], "vfat"}, {fmt.Sprint(p, RPiPartData), "/data", "ext4"}}
	}
	if err = t.addTandem(j.agent, j.cfg, j.keys, mounts); err != nil {
		return nil, "", "", err
	}
	if err = t.ext4(out, s.Disk.system, "system"); err != nil {
		return nil, "", "", fmt.Errorf("system partition: %w", err)
	}
	ours := map[string]bool{}
	for i := 1; i < len(t.added); i += 2 {
		ours[t.added[i]] = true
	}
	if err = setXattrs(out, work, xs, ours); err != nil {
		return nil, "", "", fmt.Errorf("system partition: %w", err)
	}
	return t, kernel, initramfs, nil
}

// System writes only the system partition's ext4 image of s to out, as
// Build writes partition 2: the image a later version's bundle carries.
func System(s *Spec, o Options, out string) error {
	j, err := prepare(s, o)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	t, _, _, err := j.system(work, out)
	if err != nil {
		return err
	}
	return t.root.Close()
}

// Build writes the disk image of s to o.Out (through a temporary file next
// to it, renamed at the end) and the signed bundle of the same system to
// o.Bundle. Every input is checked before anything is written.
func Build(s *Spec, o Options) (*Result, error) {
	if o.Bundle == "" {
		o.Bundle = strings.TrimSuffix(o.Out, filepath.Ext(o.Out)) + ".tandem"
	}
	if o.Bundle == o.Out {
		return nil, errors.New("the bundle and the disk image are the same file; name another bundle file")
	}
	j, err := prepare(s, o)
	if err != nil {
		return nil, err
	}
	flow := j.flow
	sign, err := spec.Signer(s.Keys.Signing)
	if err != nil {
		return nil, fmt.Errorf("keys.signing: %w", err)
	}

	work, err := os.MkdirTemp(filepath.Dir(o.Out), "."+filepath.Base(o.Out)+".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	sys := filepath.Join(work, "system.ext4")
	t, kernel, initramfs, err := j.system(work, sys)
	if err != nil {
		return nil, err
	}
	defer t.root.Close()
	progress := j.progress
	progress("root file system: unpacked from " + o.RootFS)
	progress(fmt.Sprintf("system partition: %d MiB ext4 with tandem, system.toml and %d trusted key(s)", s.Disk.system/MiB, len(j.keys)))

	var parts []Partition
	mbr := flow == FlowRPiTryboot
	if mbr {
		parts, err = j.rpiParts(work, t, sys)
	} else {
		parts, err = j.parts(work, t, sys, kernel, initramfs)
	}
	if err != nil {
		return nil, err
	}
	disk := filepath.Join(work, "disk.img")
	if err := writeDisk(disk, parts, mbr); err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("disk: %s with %s (spare %s)", map[bool]string{false: "GPT", true: "MBR"}[mbr], labels(parts), s.Spare))

	b := &spec.Spec{Header: bundle.Header{Compatible: s.Compatible, Version: s.Version, Created: o.Created}, Level: bundle.LevelDefault}
	if b.Payloads, err = spec.SlotPayloads([]string{"system=" + sys}, "64K", false); err != nil {
		return nil, err
	}
	hash, err := b.Create(o.Bundle, sign, nil)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	progress(fmt.Sprintf("bundle: %s (version %s, signed)", o.Bundle, s.Version))
	if err := os.Rename(disk, o.Out); err != nil {
		return nil, err
	}
	if err := rootfs.NewOS("").SyncDir(filepath.Dir(o.Out)); err != nil {
		return nil, err
	}
	r := &Result{Disk: o.Out, Bundle: o.Bundle, BundleHash: hash.String(), BootFlow: flow, Version: s.Version}
	starts, _ := Offsets(parts, mbr)
	for i, p := range parts {
		r.Partitions = append(r.Partitions, PartitionInfo{Number: PartitionNumber(i, mbr), Label: p.Label, Start: starts[i], Size: p.Size, Empty: p.Image == ""})
	}
	return r, nil
}

// labels lists the partitions' labels.
func labels(parts []Partition) string {
	var l []string
	for _, p := range parts {
		l = append(l, p.Label)
	}
	return strings.Join(l, ", ")
}

// parts writes the boot and data partitions' images of the GPT flows under
// work and returns the disk's partitions.
func (j *job) parts(work string, t *tree, sys, kernel, initramfs string) ([]Partition, error) {
	s, o, flow := j.s, j.o, j.flow
	bc := BootConfig{SysA: PartSysA, SysB: PartSysB, Root: s.Disk.PartitionPrefix, Kernel: s.Boot.Kernel,
		Initramfs: s.Boot.Initramfs, Cmdline: strings.TrimSpace(s.Boot.Cmdline + " " + o.Loader.Cmdline), Arch: s.Boot.Arch,
		Pre: o.Loader.Pre, Extra: o.Loader.Extra}
	bootTree := filepath.Join(work, "boot")
	var err error
	switch {
	case o.BootTree != nil:
		if err = os.Mkdir(bootTree, 0o755); err == nil {
			err = o.BootTree(bootTree)
		}
	case flow == FlowGrub:
		err = GrubESP(bootTree, s.Boot.Arch, GrubCfg(bc))
	case flow == FlowUBoot:
		err = UBootPart(bootTree, s.Boot.Arch, UBootBoot(bc))
	case flow == FlowSDBoot:
		ird := ""
		if initramfs != "" {
			ird = filepath.Join(t.dir, initramfs)
		}
		err = SDBootESP(bootTree, s.Boot.EFIBinary, filepath.Join(t.dir, kernel), ird, bc)
	}
	if err != nil {
		return nil, fmt.Errorf("boot partition: %w", err)
	}
	bootImg := filepath.Join(work, "boot.vfat")
	if err := VFAT(bootImg, s.Disk.boot, "BOOT", bootTree); err != nil {
		return nil, fmt.Errorf("boot partition: %w", err)
	}
	j.progress(fmt.Sprintf("boot partition: %d MiB FAT32 for the %s flow", s.Disk.boot/MiB, flow))
	dataImg, err := j.data(work)
	if err != nil {
		return nil, fmt.Errorf("data partition: %w", err)
	}
	return []Partition{
		{Label: "boot", Type: TypeESP, Size: s.Disk.boot, Image: bootImg},
		{Label: "system-a", Type: TypeLinux, Size: s.Disk.system, Image: sys},
		{Label: "system-b", Type: TypeLinux, Size: s.Disk.system, Image: j.spare(sys)},
		{Label: "data", Type: TypeLinux, Size: s.Disk.data, Image: dataImg},
	}, nil
}

// spare is the image of group b's partition whose group a image is img:
// the same, or none (zeros) with spare = "empty".
func (j *job) spare(img string) string {
	if j.s.Spare == "empty" {
		return ""
	}
	return img
}

// progress reports a step.
func (j *job) progress(step string) {
	if j.o.Progress != nil {
		j.o.Progress(step)
	}
}

// data writes the data partition's image under work (tandem's data-dir and
// Options.DataTree) and returns its path ("" for DataEmpty).
func (j *job) data(work string) (string, error) {
	if j.o.DataEmpty {
		return "", nil
	}
	dir := filepath.Join(work, "data")
	if err := os.MkdirAll(filepath.Join(dir, "tandem"), 0o755); err != nil {
		return "", err
	}
	if j.o.DataTree != "" {
		if err := Run("cp", "-a", "--no-preserve=ownership", j.o.DataTree+"/.", dir); err != nil {
			return "", err
		}
	}
	img := filepath.Join(work, "data.ext4")
	return img, Ext4(img, j.s.Disk.data, "data", dir, RoleData)
}

// agentBinary returns the tandem binary to place in the root file system:
// tandem.binary, else this program when the architecture matches.
func agentBinary(s *Spec) (string, error) {
	if s.Tandem.Binary != "" {
		if _, err := os.Stat(s.Tandem.Binary); err != nil {
			return "", fmt.Errorf("tandem.binary: %w", err)
		}
		return s.Tandem.Binary, nil
	}
	if arch := strings.Replace(runtime.GOARCH, "amd64", "x86_64", 1); arch != s.Boot.Arch {
		return "", fmt.Errorf("tandem.binary: this tandem is for %s, the image is %s; set tandem.binary to a %s build", runtime.GOARCH, s.Boot.Arch, s.Boot.Arch)
	}
	return os.Executable()
}

// mount is an /etc/fstab line tandem adds: source, directory, type.
type mount struct{ src, dir, typ string }

// addTandem places tandem's files in the root file system: the binary at
// /usr/bin/tandem, system.toml, the trusted keys, the mount points of the
// boot and data partitions and their /etc/fstab lines (lines the fstab
// already has for those mount points are kept).
func (t *tree) addTandem(agent, cfg string, keys map[string][]byte, mounts []mount) error {
	bin, err := os.ReadFile(agent)
	if err != nil {
		return fmt.Errorf("tandem.binary: %w", err)
	}
	if err := t.add("usr/bin/tandem", bin, 0o755); err != nil {
		return err
	}
	if err := t.add("etc/tandem/system.toml", []byte(cfg), 0o644); err != nil {
		return err
	}
	for _, d := range []string{"etc/tandem/keys", strings.TrimPrefix(mounts[0].dir, "/"), strings.TrimPrefix(mounts[1].dir, "/")} {
		if err := t.mkdirs(d); err != nil {
			return err
		}
	}
	for name, k := range keys {
		if err := t.add("etc/tandem/keys/"+name, k, 0o644); err != nil {
			return err
		}
	}
	fstab, err := t.root.ReadFile("etc/fstab")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	mounted := map[string]bool{}
	for _, l := range strings.Split(string(fstab), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && !strings.HasPrefix(f[0], "#") {
			mounted[f[1]] = true
		}
	}
	add := ""
	for _, m := range mounts {
		if !mounted[m.dir] {
			add += fmt.Sprintf("%s %s %s defaults 0 2\n", m.src, m.dir, m.typ)
		}
	}
	if add == "" {
		return nil
	}
	if len(fstab) > 0 && !strings.HasSuffix(string(fstab), "\n") {
		fstab = append(fstab, '\n')
	}
	return t.add("etc/fstab", append(fstab, add...), 0o644)
}
