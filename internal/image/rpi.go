package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootenv/autoboot"
)

// RPiConfigSize is the size of an rpi-tryboot image's config partition
// (FAT16 holding autoboot.txt).
const RPiConfigSize = 16 * MiB

// rpiRequired are the firmware files an rpi-tryboot boot partition must
// have (Raspberry Pi 4 family; the Pi 5 ignores them), besides config.txt,
// the kernel and initramfs it names and a device tree.
var rpiRequired = []string{"config.txt", "start4.elf", "fixup4.dat"}

// rpiParts writes the partitions' images of an rpi-tryboot disk under work:
// the config partition with autoboot.txt (group a's boot partition the
// default, b's the one to try), a boot partition per group with the
// firmware directory's files and that group's cmdline.txt, the system
// partitions and the data partition.
func (j *job) rpiParts(work string, t *tree, sys string) ([]Partition, error) {
	s := j.s
	src, name, err := j.firmware(t)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if err := checkFirmware(src, name, s.Boot.Arch); err != nil {
		return nil, err
	}
	base, err := src.ReadFile("cmdline.txt")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("boot firmware %s: %w", name, err)
	}
	imgs := map[string]string{}
	for _, g := range []struct {
		name string
		sys  int
	}{{"a", RPiPartSysA}, {"b", RPiPartSysB}} {
		dir := filepath.Join(work, "boot-"+g.name)
		if err := copyFAT(src, name, dir); err != nil {
			return nil, err
		}
		line := RPiCmdline(string(base), fmt.Sprint(s.Disk.PartitionPrefix, g.sys), g.name, s.Boot.Cmdline)
		if err := WriteFile(filepath.Join(dir, "cmdline.txt"), []byte(line+"\n"), 0o644); err != nil {
			return nil, err
		}
		imgs[g.name] = filepath.Join(work, "boot-"+g.name+".vfat")
		if err := VFAT(imgs[g.name], s.Disk.boot, "BOOT-"+strings.ToUpper(g.name), dir); err != nil {
			return nil, fmt.Errorf("boot partition %s: %w", g.name, err)
		}
	}
	cfgDir := filepath.Join(work, "config")
	if err := WriteFile(filepath.Join(cfgDir, "autoboot.txt"), autoboot.New(RPiPartBootA, RPiPartBootB).Bytes(), 0o644); err != nil {
		return nil, err
	}
	cfgImg := filepath.Join(work, "config.vfat")
	if err := VFAT(cfgImg, RPiConfigSize, "CONFIG", cfgDir); err != nil {
		return nil, fmt.Errorf("config partition: %w", err)
	}
	j.progress(fmt.Sprintf("boot partitions: autoboot.txt (a = %d, try b = %d) and %d MiB FAT32 per group from %s", RPiPartBootA, RPiPartBootB, s.Disk.boot/MiB, name))
	dataImg, err := j.data(work)
	if err != nil {
		return nil, fmt.Errorf("data partition: %w", err)
	}
	return []Partition{
		{Label: "config", Type: TypeMBRFAT32, Size: RPiConfigSize, Image: cfgImg},
		{Label: "boot-a", Type: TypeMBRFAT32, Size: s.Disk.boot, Image: imgs["a"]},
		{Label: "boot-b", Type: TypeMBRFAT32, Size: s.Disk.boot, Image: j.spare(imgs["b"])},
		{Label: "system-a", Type: TypeMBRLinux, Size: s.Disk.system, Image: sys},
		{Label: "system-b", Type: TypeMBRLinux, Size: s.Disk.system, Image: j.spare(sys)},
		{Label: "data", Type: TypeMBRLinux, Size: s.Disk.data, Image: dataImg},
	}, nil
}

// firmware opens the firmware directory: boot.firmware-dir on the host, else
// boot.firmware in the root file system. name is what errors call it.
func (j *job) firmware(t *tree) (r *os.Root, name string, err error) {
	b := j.s.Boot
	if b.FirmwareDir != "" {
		r, err = os.OpenRoot(b.FirmwareDir)
		if err != nil {
			return nil, "", fmt.Errorf("boot.firmware-dir: %w", err)
		}
		return r, b.FirmwareDir, nil
	}
	r, err = t.root.OpenRoot(strings.TrimPrefix(b.Firmware, "/"))
	if err != nil {
		return nil, "", fmt.Errorf("boot.firmware: %s is not a directory of the root file system (hint: install Debian's raspi-firmware into it, or set boot.firmware-dir)", b.Firmware)
	}
	return r, b.Firmware, nil
}

// checkFirmware reports, in one line, the files of the firmware directory
// that the Raspberry Pi firmware needs and that are missing: rpiRequired,
// the kernels and initramfs files config.txt names (kernel=, else the
// firmware's default for arch; initramfs NAME) and a device tree (*.dtb).
func checkFirmware(r *os.Root, name, arch string) error {
	var missing []string
	has := func(f string) bool {
		fi, err := r.Stat(f)
		return err == nil && fi.Mode().IsRegular()
	}
	for _, f := range rpiRequired {
		if !has(f) {
			missing = append(missing, f)
		}
	}
	cfg, _ := r.ReadFile("config.txt")
	kernels, initrds := configFiles(cfg)
	if len(kernels) == 0 {
		kernels = []string{map[string]string{"arm64": "kernel8.img", "arm": "kernel7l.img"}[arch]}
	}
	for _, f := range append(kernels, initrds...) {
		if !has(f) && !slices.Contains(missing, f) {
			missing = append(missing, f)
		}
	}
	dtbs, _ := fs.Glob(r.FS(), "*.dtb")
	if len(dtbs) == 0 {
		missing = append(missing, "a device tree (*.dtb)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("boot firmware %s: missing %s (hint: Debian's raspi-firmware and linux-image-%s packages install them there; or set boot.firmware-dir)",
			name, strings.Join(missing, ", "), arch)
	}
	return nil
}

// configFiles returns the files config.txt names: kernel=NAME and
// initramfs NAME lines, in any section.
func configFiles(cfg []byte) (kernels, initrds []string) {
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if k, ok := strings.CutPrefix(l, "kernel="); ok && strings.TrimSpace(k) != "" {
			kernels = append(kernels, strings.TrimSpace(k))
		}
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "initramfs" {
			initrds = append(initrds, f[1])
		}
	}
	return kernels, initrds
}

// copyFAT copies the regular files and directories of r into the host
// directory dir (a FAT partition's tree). A symbolic link is an error: FAT
// cannot hold it, and following it could leave the tree.
func copyFAT(r *os.Root, name, dir string) error {
	return fs.WalkDir(r.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type().IsRegular():
			b, err := r.ReadFile(p)
			if err != nil {
				return err
			}
			return WriteFile(dst, b, 0o644)
		}
		return fmt.Errorf("boot firmware %s: %s is not a regular file or directory (a FAT partition cannot hold it)", name, p)
	})
}

// RPiCmdline returns a group's cmdline.txt line: the firmware directory's
// cmdline.txt (base) without its root= and tandem.group= parameters, then
// root=<root>, rootwait (unless base has it), tandem.group=<group> and
// extra.
func RPiCmdline(base, root, group, extra string) string {
	var out []string
	for _, a := range strings.Fields(base) {
		if !strings.HasPrefix(a, "root=") && !strings.HasPrefix(a, "tandem.group=") {
			out = append(out, a)
		}
	}
	out = append(out, "root="+root)
	if !slices.Contains(out, "rootwait") {
		out = append(out, "rootwait")
	}
	out = append(out, "tandem.group="+group)
	return strings.Join(append(out, strings.Fields(extra)...), " ")
}
