package initsys

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tandem-ota/tandem/internal/bounded"
	"github.com/tandem-ota/tandem/internal/gpt"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// blockDev is one block device of sysfs.
type blockDev struct {
	Name   string // e.g. sda2, mmcblk0p2, loop0
	PartNo int    // partition number, 0 for a whole disk
	Disk   string // the whole disk of a partition ("" for a disk)
}

// blockDevs lists the block devices of sysfs under o.Root (RAM disks and
// empty devices left out).
func blockDevs(o *Options) ([]blockDev, error) {
	sys := rootfs.Join(o.Root, "/sys/class/block")
	ents, err := os.ReadDir(sys)
	if err != nil {
		return nil, err
	}
	var devs []blockDev
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "ram") {
			continue
		}
		if b, err := bounded.ReadFile(filepath.Join(sys, name, "size"), 64); err != nil || strings.TrimSpace(string(b)) == "0" {
			continue
		}
		d := blockDev{Name: name}
		if b, err := bounded.ReadFile(filepath.Join(sys, name, "partition"), 64); err == nil {
			d.PartNo, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			if real, err := filepath.EvalSymlinks(filepath.Join(sys, name)); err == nil {
				d.Disk = filepath.Base(filepath.Dir(real))
			}
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// sysInt reads a number from a sysfs file of block device name.
func sysInt(o *Options, name, file string) (int64, error) {
	b, err := bounded.ReadFile(rootfs.Join(o.Root, "/sys/class/block/"+name+"/"+file), 64)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// readTable reads the GUID partition table of whole disk name (sysfs size
// and logical sector size).
func readTable(o *Options, name string) (*gpt.Table, error) {
	sectors, err := sysInt(o, name, "size") // in 512-byte units, whatever the sector size
	if err != nil {
		return nil, err
	}
	ss, err := sysInt(o, name, "queue/logical_block_size")
	if err != nil {
		ss = 512
	}
	f, err := os.Open(rootfs.Join(o.Root, "/dev/"+name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return gpt.Read(f, sectors*512, int(ss))
}

// mbrPartUUID returns the PARTUUID prefix of an MBR disk ("" when the disk
// has none): its disk signature, as the kernel shows it ("738a4d67"); a
// partition's PARTUUID is the prefix, "-" and its number in two hex digits.
func mbrPartUUID(o *Options, name string) string {
	f, err := os.Open(rootfs.Join(o.Root, "/dev/"+name))
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := io.ReadFull(f, b); err != nil || b[510] != 0x55 || b[511] != 0xaa || b[446+4] == 0xee {
		return ""
	}
	return fmt.Sprintf("%08x", binary.LittleEndian.Uint32(b[440:]))
}

// findSpec returns the device path that an /etc/fstab source names: a
// /dev path, LABEL= or PARTLABEL= (findLabel), UUID= (a file-system UUID
// read from the superblocks of ext4, xfs, btrfs and vfat) or PARTUUID= (a
// GPT partition's unique GUID read from its disk's partition table, or an
// MBR disk's signature and partition number). /dev/disk/by-* links are
// used first when present (udev has usually not run yet). No blkid is
// needed. Two matches are an error, never a guess.
func findSpec(o *Options, spec string) (string, error) {
	key, val, ok := strings.Cut(spec, "=")
	if !ok || val == "" {
		if strings.HasPrefix(spec, "/dev/") {
			return spec, nil
		}
		return "", fmt.Errorf("%q: want a /dev path, LABEL=, PARTLABEL=, UUID= or PARTUUID=", spec)
	}
	val = strings.Trim(val, `"`)
	switch key {
	case "LABEL", "PARTLABEL":
		return findLabel(o, val)
	case "UUID", "PARTUUID":
	default:
		return "", fmt.Errorf("%q: want a /dev path, LABEL=, PARTLABEL=, UUID= or PARTUUID=", spec)
	}
	if p, err := filepath.EvalSymlinks(rootfs.Join(o.Root, "/dev/disk/by-"+strings.ToLower(key)+"/"+val)); err == nil {
		return "/dev/" + filepath.Base(p), nil
	}
	devs, err := blockDevs(o)
	if err != nil {
		return "", fmt.Errorf("find %s: %w", spec, err)
	}
	var found []string
	if key == "UUID" {
		for _, d := range devs {
			if fi, _, err := probeFS(rootfs.Join(o.Root, "/dev/"+d.Name)); err == nil && fi.UUID != "" && strings.EqualFold(fi.UUID, val) {
				found = append(found, "/dev/"+d.Name)
			}
		}
	} else {
		for _, disk := range devs {
			if disk.PartNo != 0 {
				continue
			}
			var partNo int
			if t, err := readTable(o, disk.Name); err == nil {
				for _, e := range t.Entries {
					if strings.EqualFold(gpt.GUIDString(e.GUID), val) {
						partNo = e.Index + 1
					}
				}
			} else if sig := mbrPartUUID(o, disk.Name); sig != "" {
				if p, ok := strings.CutPrefix(strings.ToLower(val), sig+"-"); ok {
					n, err := strconv.ParseUint(p, 16, 8)
					if err == nil {
						partNo = int(n)
					}
				}
			}
			for _, d := range devs {
				if partNo != 0 && d.Disk == disk.Name && d.PartNo == partNo {
					found = append(found, "/dev/"+d.Name)
				}
			}
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("no block device has %s", spec)
	}
	return "", fmt.Errorf("%s is on %d devices (%s): name the device by its path instead", spec, len(found), strings.Join(found, ", "))
}
