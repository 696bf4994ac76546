package image

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tandem-ota/tandem/bootloader"
	"github.com/tandem-ota/tandem/internal/bootenv/grubenv"
	"github.com/tandem-ota/tandem/internal/bootenv/ubootenv"
)

// BootConfig is what the boot loader starts for a group: the group's
// system partition holds the kernel (and initramfs) at the given paths
// (GRUB, U-Boot) or the boot partition holds copies (systemd-boot).
type BootConfig struct {
	SysA, SysB int    // partition numbers of system-a and system-b
	Root       string // partition prefix on the target: root=<Root><N>
	Kernel     string // path of the kernel inside the system partition
	Initramfs  string // path of the initramfs ("" for none)
	Cmdline    string // more kernel parameters
	Arch       string // x86_64, arm64 or arm
	// Extra are more boot-loader commands run before the kernel is loaded
	// (GRUB: lines before the menu entry; U-Boot: commands joined by "; ").
	Extra string
	// Pre are GRUB lines run before tandem.cfg is sourced ("" for none).
	Pre string
}

// GrubModules are built into the standalone GRUB EFI image.
var GrubModules = []string{
	"part_gpt", "fat", "ext2", "linux", "normal", "configfile", "loadenv", "test", "echo", "reboot",
	"halt", "search", "search_fs_file", "search_label", "sleep", "gzio", "serial", "terminal", "efi_gop", "regexp",
}

// GrubCfg returns EFI/BOOT/grub.cfg: it sources the shipped tandem.cfg
// (which sets ${tandem_group}) and boots that group's kernel from its
// system partition on the disk GRUB was loaded from: ${root}, set by GRUB
// to the ESP it started from (e.g. hd1,gpt1), names the disk, so the boot
// disk need not be the firmware's first.
func GrubCfg(c BootConfig) []byte {
	initrd := ""
	if c.Initramfs != "" {
		initrd = fmt.Sprintf("  initrd (${tandem_disk},gpt${tandem_part})%s\n", c.Initramfs)
	}
	pre := ""
	if c.Pre != "" {
		pre = c.Pre + "\n"
	}
	return fmt.Appendf(nil, `set timeout=0
set default=0
set tandem_groups="a b"
set tandem_disk=hd0
regexp --set=1:tandem_disk '^([^,]+),' "${root}"
%ssource ${prefix}/tandem.cfg
if [ "${tandem_group}" = "b" ]; then set tandem_part=%d; else set tandem_part=%d; fi
%s
menuentry "tandem ${tandem_group}" {
  linux (${tandem_disk},gpt${tandem_part})%s root=%s${tandem_part} tandem.group=${tandem_group} %s
%s}
`, pre, c.SysB, c.SysA, c.Extra, c.Kernel, c.Root, c.Cmdline, initrd)
}

// GrubESP fills tree, the EFI system partition, for the grub flow: the
// standalone GRUB for arch (x86_64 or arm64) at the removable-media path,
// grub.cfg, the shipped tandem.cfg next to it, and the three grubenv blocks
// in tandem/ naming group a the default (GRUB's save_env rewrites a file in
// place, it cannot create one).
func GrubESP(tree, arch string, grubCfg []byte) error {
	target, name := "x86_64-efi", "BOOTX64.EFI"
	if arch == "arm64" {
		target, name = "arm64-efi", "BOOTAA64.EFI"
	}
	boot := filepath.Join(tree, "EFI", "BOOT")
	if err := os.MkdirAll(boot, 0o755); err != nil {
		return err
	}
	args := append([]string{"-O", target, "-p", "/EFI/BOOT", "-o", filepath.Join(boot, name)}, GrubModules...)
	if err := Run("grub-mkimage", args...); err != nil {
		return fmt.Errorf("%w (hint: the %s modules are in Debian's grub-efi-%s-bin)", err, target, strings.Replace(arch, "x86_64", "amd64", 1))
	}
	if err := WriteFile(filepath.Join(boot, "grub.cfg"), grubCfg, 0o644); err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(boot, "tandem.cfg"), bootloader.GrubScript, 0o644); err != nil {
		return err
	}
	for _, name := range []string{"primary", "secondary", "trial"} {
		vars := []string{"tandem_default", "a"}
		if name == "trial" {
			vars = []string{"tandem_trial", "", "tandem_trial_left", "0"}
		}
		b, err := grubenv.Block(vars...)
		if err != nil {
			return err
		}
		if err := WriteFile(filepath.Join(tree, "tandem", name+".grubenv"), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// UBootEnvSize is env-size: the size of each of tandem's U-Boot env files.
const UBootEnvSize = 0x4000

// UBootBoot returns tandem_boot of the U-Boot script: it loads the kernel
// (and initramfs) of ${tandem_group} from that group's system partition on
// the device distro boot found the script on, and boots it with U-Boot's
// device tree.
func UBootBoot(c BootConfig) string {
	load := "load ${devtype} ${devnum}:${tandem_part}"
	bootCmd, rd := "booti", "-"
	if c.Arch == "arm" {
		bootCmd = "bootz"
	}
	s := fmt.Sprintf(`if test "${tandem_group}" = b; then setenv tandem_part %d; else setenv tandem_part %d; fi; `, c.SysB, c.SysA)
	if c.Extra != "" {
		s += c.Extra + "; "
	}
	s += fmt.Sprintf(`setenv bootargs "root=%s${tandem_part} tandem.group=${tandem_group} %s"; `, c.Root, c.Cmdline)
	s += fmt.Sprintf("%s ${kernel_addr_r} %s && ", load, c.Kernel)
	if c.Initramfs != "" {
		s += fmt.Sprintf("%s ${ramdisk_addr_r} %s && ", load, c.Initramfs)
		rd = "${ramdisk_addr_r}:${filesize}"
	}
	return s + fmt.Sprintf("%s ${kernel_addr_r} %s ${fdtcontroladdr}", bootCmd, rd)
}

// UBootScript compiles the shipped U-Boot script (bootloader/u-boot/boot.cmd,
// preceded by its settings) with mkimage into out, for arch (arm64 or arm).
func UBootScript(out, arch, bootCmd string) error {
	src, err := bootloader.UBootCmd(bootloader.UBootSettings{
		Groups: []string{"a", "b"}, EnvFile: "uboot.env", EnvFileRedund: "uboot-redund.env", EnvSize: UBootEnvSize, Boot: bootCmd,
	})
	if err != nil {
		return err
	}
	cmd := out + ".cmd"
	if err := os.WriteFile(cmd, src, 0o644); err != nil {
		return err
	}
	defer os.Remove(cmd)
	return Run("mkimage", "-A", arch, "-T", "script", "-C", "none", "-n", "tandem", "-d", cmd, out)
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

// UBootPart fills tree, the FAT boot partition, for the uboot flow:
// boot.scr (UBootScript) and both env files naming group a (equal flags:
// the first file is current).
func UBootPart(tree, arch, bootCmd string) error {
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return err
	}
	if err := UBootScript(filepath.Join(tree, "boot.scr"), arch, bootCmd); err != nil {
		return err
	}
	env, err := UBootEnv("a", UBootEnvSize, 1)
	if err != nil {
		return err
	}
	for _, f := range []string{"uboot.env", "uboot-redund.env"} {
		if err := WriteFile(filepath.Join(tree, f), env, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// SDBootESP fills tree, the EFI system partition, for the systemd-boot
// flow: systemd-boot (efi, a host path) at the removable-media path,
// loader.conf defaulting to group a, and per group an entry
// (loader/entries/tandem-<g>.conf) with a copy of the kernel and initramfs
// (host paths) in /<g>/.
func SDBootESP(tree, efi, kernel, initramfs string, c BootConfig) error {
	if err := CopyFile(efi, filepath.Join(tree, "EFI", "BOOT", "BOOTX64.EFI"), 0o644); err != nil {
		return fmt.Errorf("%w (hint: apt-get install systemd-boot-efi, or set boot.efi-binary)", err)
	}
	if err := WriteFile(filepath.Join(tree, "loader", "loader.conf"), []byte("default tandem-a.conf\ntimeout 0\nconsole-mode keep\n"), 0o644); err != nil {
		return err
	}
	for i, g := range []string{"a", "b"} {
		part := []int{c.SysA, c.SysB}[i]
		entry := fmt.Sprintf("title   system %[1]s\nlinux   /%[1]s/vmlinuz\n", g)
		if initramfs != "" {
			entry += fmt.Sprintf("initrd  /%s/initrd.img\n", g)
			if err := CopyFile(initramfs, filepath.Join(tree, g, "initrd.img"), 0o644); err != nil {
				return err
			}
		}
		entry += fmt.Sprintf("options root=%s%d tandem.group=%s %s\n", c.Root, part, g, c.Cmdline)
		if err := WriteFile(filepath.Join(tree, "loader", "entries", "tandem-"+g+".conf"), []byte(entry), 0o644); err != nil {
			return err
		}
		if err := CopyFile(kernel, filepath.Join(tree, g, "vmlinuz"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes data to p with mode (exactly, whatever the umask),
// making p's directory first.
func WriteFile(p string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// CopyFile copies src to dst as WriteFile writes.
func CopyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return WriteFile(dst, b, mode)
}
