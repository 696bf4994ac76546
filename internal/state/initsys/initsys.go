// Package initsys is `tandem init`: the first process of the root file
// system. It mounts the kernel's file systems, finds, checks and mounts the
// data partition, runs the state mount plan (internal/state) with real
// mounts — an overlay over the read-only root, bind mounts of the
// persistent paths — switches to the overlay as the new root and execs the
// real init, PID 1 preserved.
//
// It never leaves a device unbootable because of state: any failure of the
// state part undoes its mounts, boots with a discarded overlay (or none) and
// records the failure in state.BootReportPath, which `tandem state info`
// shows. Every step is logged to /dev/kmsg (else stderr) with the prefix
// "tandem-init: ".
package initsys

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tandem-ota/tandem/internal/bounded"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/state"
)

// Name is the program name (argv[0]) under which tandem runs as init:
// install tandem (or a link to it) as /usr/sbin/tandem-init and boot with
// init=/usr/sbin/tandem-init.
const Name = "tandem-init"

// DefaultInit is the real init that tandem init execs when neither
// Options.Init nor `tandem.init=` on the kernel command line names one.
const DefaultInit = "/sbin/init"

// CmdlineInit is the kernel command line parameter that names the real init.
const CmdlineInit = "tandem.init"

// CmdlinePause is the real-boot tests' power-cut hook (the kernel command
// line's form of TANDEM_TEST_PAUSE_AT, rootfs.WithPause): init stops
// before the chosen write of the state transitions so that the test can
// cut the power there. It never changes what is written.
const CmdlinePause = "tandem.test_pause_at"

// fallbackInits are tried, in order, when the configured init cannot be
// executed (the kernel's own list).
var fallbackInits = []string{"/sbin/init", "/etc/init", "/bin/init", "/bin/sh"}

// Options configure one run of the init sequence.
type Options struct {
	// Root is the host path of the read-only system ("/" on a device; a
	// directory in tests).
	Root string
	// Init is the device path of the real init ("": tandem.init= on the
	// kernel command line, else DefaultInit).
	Init string
	// Args are passed to the real init after its name.
	Args []string
	// KernelFS mounts /proc, /sys, /dev and /run under Root where they are
	// not mounted yet (true for PID 1; tests may mount their own).
	KernelFS bool
	// ToolRoot is where fsck and mkfs are looked for ("": Root).
	ToolRoot string
	// Log receives the log lines ("": /dev/kmsg under Root, else stderr).
	Log io.Writer
}

// logger writes one "tandem-init: " line per Write (one kernel log record each).
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logger) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, "tandem-init: "+strings.TrimSpace(fmt.Sprintf(format, args...))+"\n")
}

func (o *Options) logger() *logger {
	if o.Log != nil {
		return &logger{w: o.Log}
	}
	if f, err := os.OpenFile(rootfs.Join(o.Root, "/dev/kmsg"), os.O_WRONLY, 0); err == nil {
		return &logger{w: f}
	}
	return &logger{w: os.Stderr}
}

// tool returns the host path of the program name in the usual directories
// of the tool root, "" when it is not there.
func (o *Options) tool(name string) string {
	root := o.ToolRoot
	if root == "" {
		root = o.Root
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := rootfs.Join(root, dir+"/"+name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// cmdlineParam returns the value of key= on the kernel command line under root.
func cmdlineParam(root, key string) string {
	b, err := bounded.ReadFile(rootfs.Join(root, "/proc/cmdline"), 64<<10)
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// probeSize is how much of a partition is read to recognise its file
// system, or to decide that it is blank.
const probeSize = 1 << 20

// fsInfo is what a file system's superblock says about it.
type fsInfo struct {
	Type  string // ext4, xfs, btrfs, f2fs, vfat
	Label string
	// UUID as blkid shows it (UUID= in /etc/fstab): lower-case
	// 8-4-4-4-12 hex, or XXXX-XXXX for vfat's volume serial; "" for f2fs.
	UUID string
	// Size is the bytes the file system spans (0: not read, for f2fs and vfat).
	Size int64
}

// probe says what the device at host path dev holds: a known file system
// and its label; blank (the first MiB all zero bytes, or all 0xff as erased
// flash reads); or neither (an unknown or damaged file system: never
// touched).
func probe(dev string) (fstype, label string, blank bool, err error) {
	fi, blank, err := probeFS(dev)
	return fi.Type, fi.Label, blank, err
}

// probeFS is probe with everything the superblock says.
func probeFS(dev string) (fsInfo, bool, error) {
	f, err := os.Open(dev)
	if err != nil {
		return fsInfo{}, false, err
	}
	defer f.Close()
	buf := make([]byte, probeSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF {
		return fsInfo{}, false, fmt.Errorf("read %s: %w", dev, err)
	}
	buf = buf[:n]
	if fi := superblock(buf); fi.Type != "" {
		return fi, false, nil
	}
	if n == 0 {
		return fsInfo{}, false, fmt.Errorf("%s is empty (no medium?)", dev)
	}
	return fsInfo{}, bytes.Count(buf, []byte{0}) == n || bytes.Count(buf, []byte{0xff}) == n, nil
}

// superblock recognises the file system whose first bytes are buf.
func superblock(buf []byte) fsInfo {
	n := len(buf)
	le, be := binary.LittleEndian, binary.BigEndian
	cstr := func(b []byte) string { return string(bytes.TrimRight(b, "\x00 ")) }
	switch {
	case n >= 1400 && le.Uint16(buf[1080:]) == 0xef53:
		sb := buf[1024:]
		blocks := uint64(le.Uint32(sb[4:]))
		if le.Uint32(sb[0x60:])&0x80 != 0 { // INCOMPAT_64BIT
			blocks |= uint64(le.Uint32(sb[0x150:])) << 32
		}
		return fsInfo{Type: "ext4", Label: cstr(sb[120:136]), UUID: uuid(sb[104:120]), Size: int64(blocks) << (10 + min(le.Uint32(sb[24:]), 6))}
	case n >= 120 && string(buf[:4]) == "XFSB":
		return fsInfo{Type: "xfs", Label: cstr(buf[108:120]), UUID: uuid(buf[32:48]), Size: int64(be.Uint64(buf[8:]) * uint64(be.Uint32(buf[4:])))}
	case n >= 65536+555 && string(buf[65536+64:65536+72]) == "_BHRfS_M":
		sb := buf[65536:]
		return fsInfo{Type: "btrfs", Label: cstr(sb[299:555]), UUID: uuid(sb[32:48]), Size: int64(le.Uint64(sb[0x70:]))}
	case n >= 1028 && le.Uint32(buf[1024:]) == 0xf2f52010:
		return fsInfo{Type: "f2fs"}
	case n >= 512 && buf[510] == 0x55 && buf[511] == 0xaa && string(buf[82:87]) == "FAT32":
		return fsInfo{Type: "vfat", Label: cstr(buf[71:82]), UUID: fatSerial(le.Uint32(buf[67:]))}
	case n >= 512 && buf[510] == 0x55 && buf[511] == 0xaa && string(buf[54:57]) == "FAT":
		return fsInfo{Type: "vfat", Label: cstr(buf[43:54]), UUID: fatSerial(le.Uint32(buf[39:]))}
	}
	return fsInfo{}
}

// uuid formats 16 bytes as a UUID (byte order as stored, as blkid shows
// ext4, xfs and btrfs UUIDs).
func uuid(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// fatSerial formats a FAT volume serial number as blkid does (UUID=ABCD-1234).
func fatSerial(v uint32) string { return fmt.Sprintf("%04X-%04X", v>>16, v&0xffff) }

// findData returns the device path of the data partition: the configured
// device; partition N of the root disk (sysfs); or, by label, the one block
// device whose GPT partition name (PARTNAME in sysfs) or file-system label
// (ext4, xfs, btrfs, vfat superblock, read here; not f2fs) is the label —
// /dev/disk/by-label is used first when present (udev has usually not run
// yet). Two matches are an error, never a guess.
func findData(o *Options, d *device.Device, dp *state.DataPartition) (string, error) {
	switch {
	case dp.Device != "":
		if _, err := os.Stat(rootfs.Join(o.Root, dp.Device)); err != nil {
			return "", fmt.Errorf("data partition %s: %w", dp.Device, err)
		}
		return dp.Device, nil
	case dp.Partition != 0:
		return d.PartitionDevice(dp.Partition)
	}
	return findLabel(o, dp.Label)
}

// findLabel returns the device path of the one block device whose GPT
// partition name or file-system label is label.
func findLabel(o *Options, label string) (string, error) {
	if p, err := filepath.EvalSymlinks(rootfs.Join(o.Root, "/dev/disk/by-label/"+label)); err == nil {
		return "/dev/" + filepath.Base(p), nil
	}
	sys := rootfs.Join(o.Root, "/sys/class/block")
	ents, err := os.ReadDir(sys)
	if err != nil {
		return "", fmt.Errorf("find the block device labelled %q: %w", label, err)
	}
	var found []string
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "ram") {
			continue
		}
		if b, err := bounded.ReadFile(filepath.Join(sys, name, "size"), 64); err != nil || strings.TrimSpace(string(b)) == "0" {
			continue
		}
		uevent, _ := bounded.ReadFile(filepath.Join(sys, name, "uevent"), 4<<10)
		match := strings.Contains("\n"+string(uevent), "\nPARTNAME="+label+"\n")
		if !match {
			_, got, _, err := probe(rootfs.Join(o.Root, "/dev/"+name))
			match = err == nil && got == label
		}
		if match {
			found = append(found, "/dev/"+name)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("no block device has the partition or file-system label %q", label)
	}
	return "", fmt.Errorf("the label %q is on %d devices (%s): name the device by its path instead", label, len(found), strings.Join(found, ", "))
}
