package image

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/bundle/spec"
	"github.com/tandem-ota/tandem/internal/config"
)

// MaxSpecSize bounds an image spec file in bytes.
const MaxSpecSize = 64 << 10

// Boot flows of an image (Spec.BootFlow).
const (
	FlowGrub       = "grub"
	FlowUBoot      = "uboot"
	FlowSDBoot     = "systemd-boot"
	FlowRPiTryboot = "rpi-tryboot"
)

// Spec is an image spec file (docs/image.md): what Build writes.
type Spec struct {
	Compatible string     `toml:"compatible"`
	Version    string     `toml:"version"`
	BootFlow   string     `toml:"boot-flow"` // grub, uboot, systemd-boot or rpi-tryboot
	Spare      string     `toml:"spare"`     // "copy" (default) or "empty"
	Disk       DiskSpec   `toml:"disk"`
	Boot       BootSpec   `toml:"boot"`
	Keys       KeySpec    `toml:"keys"`
	Tandem     TandemSpec `toml:"tandem"`
}

// DiskSpec is the [disk] table: the partition layout.
type DiskSpec struct {
	// PartitionPrefix + N is partition N's device on the target
	// ("/dev/mmcblk0p", "/dev/vda").
	PartitionPrefix string `toml:"partition-prefix"`
	BootSize        string `toml:"boot-size"`   // default 64M
	SystemSize      string `toml:"system-size"` // required, each of system-a and system-b
	DataSize        string `toml:"data-size"`   // default 64M

	boot, system, data int64
}

// BootSpec is the [boot] table: what the boot loader starts.
type BootSpec struct {
	Arch      string `toml:"arch"`      // x86_64 (grub, systemd-boot) or arm64 (grub, uboot; default for uboot); arm (uboot)
	Kernel    string `toml:"kernel"`    // path inside the root file system, e.g. /boot/vmlinuz
	Initramfs string `toml:"initramfs"` // path inside the root file system; "" for none
	Cmdline   string `toml:"cmdline"`   // more kernel parameters, e.g. "console=ttyS0 quiet"
	Attempts  int    `toml:"attempts"`  // boot attempts of a trial (grub, uboot); default 1
	// EFIBinary is the host path of systemd-boot's EFI binary (systemd-boot).
	EFIBinary string `toml:"efi-binary"`
	// Firmware is the Raspberry Pi firmware directory inside the root file
	// system (rpi-tryboot; default /boot/firmware, as Debian's
	// raspi-firmware lays it out); FirmwareDir, a host directory, replaces it.
	Firmware    string `toml:"firmware"`
	FirmwareDir string `toml:"firmware-dir"`
}

// KeySpec is the [keys] table.
type KeySpec struct {
	Signing []string `toml:"signing"` // PEM private keys (PATH[:CHAIN]) that sign the bundle
	Trusted []string `toml:"trusted"` // PEM public keys installed in /etc/tandem/keys
}

// TandemSpec is the [tandem] table: the agent placed in the root file system.
type TandemSpec struct {
	Binary string `toml:"binary"` // host path of the device's tandem binary; default: this program
	// RebootCommand is system.toml's reboot-command (default: tandem's, ["reboot"]).
	RebootCommand []string `toml:"reboot-command"`
}

// LoadSpec reads and checks the image spec file (ParseSpec).
func LoadSpec(file, bootFlow string) (*Spec, error) {
	data, err := config.ReadSmall(file, MaxSpecSize)
	if err != nil {
		return nil, err
	}
	return ParseSpec(file, data, bootFlow)
}

// ParseSpec decodes and checks an image spec (file names it in errors;
// relative paths in it resolve against its directory); bootFlow, when not
// empty, replaces the spec's boot-flow (the --boot-flow flag). Every error
// wraps config.ErrInvalid and names the field.
func ParseSpec(file string, data []byte, bootFlow string) (*Spec, error) {
	if len(data) > MaxSpecSize {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", file, config.ErrInvalid, MaxSpecSize)
	}
	var s Spec
	doc, err := config.DecodeFile(file, data, &s)
	if err != nil {
		return nil, err
	}
	if bootFlow != "" {
		s.BootFlow = bootFlow
	}
	if err := s.check(doc.Errorf); err != nil {
		return nil, err
	}
	dir := filepath.Dir(file)
	for _, p := range []*string{&s.Boot.EFIBinary, &s.Boot.FirmwareDir, &s.Tandem.Binary} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for _, ks := range [][]string{s.Keys.Signing, s.Keys.Trusted} {
		for i, k := range ks {
			if !filepath.IsAbs(k) {
				ks[i] = filepath.Join(dir, k)
			}
		}
	}
	return &s, nil
}

// Check validates a spec made in Go (not read from a file) and fills its
// defaults, as ParseSpec does; paths in it are used as they are.
func (s *Spec) Check() error {
	return s.check(func(path []string, format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", strings.Join(path, "."), config.ErrInvalid, fmt.Sprintf(format, args...))
	})
}

// check validates s and fills defaults; errorf names the field.
func (s *Spec) check(errorf func(path []string, format string, args ...any) error) error {
	bad := func(format string, args []any, path ...string) error { return errorf(path, format, args...) }
	if s.Compatible == "" || strings.ContainsAny(s.Compatible, "\"\\\n") {
		return bad("required, without quotes, backslashes or newlines", nil, "compatible")
	}
	if _, err := bundle.ParseVersion(s.Version); err != nil {
		return bad("%v", []any{err}, "version")
	}
	switch s.BootFlow {
	case FlowGrub, FlowUBoot, FlowSDBoot, FlowRPiTryboot, "":
	default:
		return bad("%q: want grub, uboot, systemd-boot or rpi-tryboot", []any{s.BootFlow}, "boot-flow")
	}
	switch s.Spare {
	case "":
		s.Spare = "copy"
	case "copy", "empty":
	default:
		return bad("%q: want copy or empty", []any{s.Spare}, "spare")
	}
	d := &s.Disk
	if !strings.HasPrefix(d.PartitionPrefix, "/dev/") || strings.ContainsAny(d.PartitionPrefix, " \"$;\\\n'") {
		return bad("required: the device path before the partition number, e.g. \"/dev/mmcblk0p\" or \"/dev/vda\"", nil, "disk", "partition-prefix")
	}
	for _, f := range []struct {
		name, val, def string
		out            *int64
	}{{"boot-size", d.BootSize, "64M", &d.boot}, {"system-size", d.SystemSize, "", &d.system}, {"data-size", d.DataSize, "64M", &d.data}} {
		v := f.val
		if v == "" {
			v = f.def
		}
		n, err := spec.ParseSize(v)
		if err != nil || n <= 0 || n%MiB != 0 || n > 1<<40 {
			return bad("%q: want a positive multiple of 1M up to 1024G (e.g. \"512M\")", []any{f.val}, "disk", f.name)
		}
		if f.name == "boot-size" && n < 33*MiB {
			return bad("%q: a FAT32 boot partition needs at least 33M", []any{f.val}, "disk", f.name)
		}
		*f.out = n
	}
	b := &s.Boot
	flow := s.Flow()
	archs := "x86_64 arm64" // grub
	switch flow {
	case FlowSDBoot:
		archs = "x86_64"
	case FlowUBoot, FlowRPiTryboot:
		archs = "arm64 arm"
	}
	if b.Arch == "" {
		b.Arch, _, _ = strings.Cut(archs, " ")
	}
	if !slices.Contains(strings.Fields(archs), b.Arch) {
		return bad("%q: the %s flow supports %s", []any{b.Arch, flow, archs}, "boot", "arch")
	}
	if flow == FlowRPiTryboot {
		// The firmware's config.txt names the kernel and initramfs.
		if b.Kernel != "" || b.Initramfs != "" {
			return bad("not used by rpi-tryboot: the firmware directory's config.txt names the kernel and initramfs", nil, "boot", "kernel")
		}
		if b.Firmware == "" {
			b.Firmware = "/boot/firmware"
		}
		if !path.IsAbs(b.Firmware) || path.Clean(b.Firmware) != b.Firmware {
			return bad("%q: want an absolute, clean path inside the root file system", []any{b.Firmware}, "boot", "firmware")
		}
	} else if b.Firmware != "" || b.FirmwareDir != "" {
		return bad("only for rpi-tryboot", nil, "boot", "firmware")
	}
	for _, f := range []struct{ name, val string }{{"kernel", b.Kernel}, {"initramfs", b.Initramfs}} {
		if f.val == "" && (f.name == "initramfs" || flow == FlowRPiTryboot) {
			continue
		}
		if !path.IsAbs(f.val) || path.Clean(f.val) != f.val || strings.ContainsAny(f.val, " \"'$;\\\n") {
			return bad("%q: want an absolute, clean path inside the root file system without spaces or quotes", []any{f.val}, "boot", f.name)
		}
	}
	if strings.ContainsAny(b.Cmdline, "\"'$;\\\n") {
		return bad("may not contain quotes, '$', ';', '\\' or newlines", nil, "boot", "cmdline")
	}
	if b.Attempts == 0 {
		b.Attempts = 1
	}
	if b.Attempts < 1 || b.Attempts > 9 {
		return bad("%d: want 1 to 9", []any{b.Attempts}, "boot", "attempts")
	}
	if flow == FlowSDBoot && b.EFIBinary == "" {
		b.EFIBinary = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	}
	if len(s.Keys.Signing) == 0 {
		return bad("required: the private key(s) that sign the bundle", nil, "keys", "signing")
	}
	if len(s.Keys.Trusted) == 0 {
		return bad("required: the public key(s) devices trust (installed in /etc/tandem/keys)", nil, "keys", "trusted")
	}
	for _, a := range s.Tandem.RebootCommand {
		if a == "" || strings.ContainsAny(a, "\n\"\\") {
			return bad("%q: want non-empty arguments without quotes, backslashes or newlines", []any{a}, "tandem", "reboot-command")
		}
	}
	seen := map[string]bool{}
	for _, k := range s.Keys.Trusted {
		base := filepath.Base(k)
		if seen[base] || !strings.HasSuffix(base, ".pub") && !strings.HasSuffix(base, ".pem") {
			return bad("%q: want distinct file names ending in .pub or .pem", []any{k}, "keys", "trusted")
		}
		seen[base] = true
	}
	return nil
}

// Flow is the boot flow (grub when the spec names none).
func (s *Spec) Flow() string {
	if s.BootFlow == "" {
		return FlowGrub
	}
	return s.BootFlow
}
