package device

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// SlotPath returns the host path of a block, file or directory slot.
func (d *Device) SlotPath(s config.Slot) (string, error) {
	name, err := d.slotName(s)
	if err != nil {
		return "", err
	}
	return d.FS.Path(name), nil
}

// OpenSlot opens a block or file slot for writing (a file slot is created
// when missing) through the device's file layer, so that on a simulated
// device every write and fsync of slot data is a power-cut point that a cut
// can tear (docs/simulator.md).
func (d *Device) OpenSlot(s config.Slot) (rootfs.File, error) {
	name, err := d.slotName(s)
	if err != nil {
		return nil, err
	}
	flag := os.O_WRONLY
	if s.Type == config.SlotFile {
		flag |= os.O_CREATE
	}
	return d.FS.OpenFile(name, flag, 0o644)
}

// slotName returns the device path of a block, file or directory slot.
func (d *Device) slotName(s config.Slot) (string, error) {
	switch {
	case s.Path != "":
		return s.Path, nil
	case s.Device != "":
		return s.Device, nil
	case s.Partition != 0:
		return d.partitionDevice(s.Partition)
	}
	return "", fmt.Errorf("slot of type %s has no path", s.Type)
}

// PartitionDevice returns the device path of partition n of the root disk
// (tandem init uses it to find a data partition given by number).
func (d *Device) PartitionDevice(n int) (string, error) { return d.partitionDevice(n) }

// partitionDevice finds partition n of the root disk (root-disk from the
// configuration, else the disk that holds the root file system) in sysfs and
// returns its device path.
func (d *Device) partitionDevice(n int) (string, error) {
	disk, err := d.rootDiskName()
	if err != nil {
		return "", err
	}
	sys := rootfs.Join(d.Root, "/sys/class/block/"+disk)
	ents, err := os.ReadDir(sys)
	if err != nil {
		return "", fmt.Errorf("partition %d of %s: %w", n, disk, err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sys, e.Name(), "partition"))
		if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(n) {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", fmt.Errorf("disk %s has no partition %d", disk, n)
}

// rootDiskName returns the kernel name of the root disk (e.g. "mmcblk0").
func (d *Device) rootDiskName() (string, error) {
	if d.Config.RootDisk != "" {
		return filepath.Base(d.Config.RootDisk), nil
	}
	b, err := readSmall(rootfs.Join(d.Root, "/proc/self/mountinfo"))
	if err != nil {
		return "", fmt.Errorf("root disk: %w", err)
	}
	majmin, _ := rootMount(b)
	if majmin == "" {
		return "", fmt.Errorf("root disk: no root mount; set root-disk in the configuration")
	}
	link, err := filepath.EvalSymlinks(rootfs.Join(d.Root, "/sys/dev/block/"+majmin))
	if err != nil {
		return "", fmt.Errorf("root disk of device %s: %w; set root-disk in the configuration", majmin, err)
	}
	if _, err := os.Stat(filepath.Join(link, "partition")); err != nil {
		return "", fmt.Errorf("the root file system (device %s) is not on a partition; set root-disk in the configuration", majmin)
	}
	return filepath.Base(filepath.Dir(link)), nil
}

// GroupVersion returns the installed version of group g and its source.
func (d *Device) GroupVersion(g string) (string, string) {
	st, err := d.LoadState()
	if err != nil {
		st = &State{}
	}
	active, _ := d.ActiveGroup()
	return d.version(g, active, st)
}
