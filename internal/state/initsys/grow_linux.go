package initsys

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"unsafe"

	"github.com/tandem-ota/tandem/internal/gpt"
	"golang.org/x/sys/unix"
)

// growSlack is how much smaller than its partition a file system may be
// before tandem init grows it (ext4 leaves off a last block group too
// small to hold its own metadata).
const growSlack = 4 << 20

// growPartition grows the data partition (m.dev) to the end of its disk,
// [data-partition] grow = true: when it is the last partition of a GPT disk
// with at least a MiB after it, the table is rewritten crash-safely
// (gpt.Grow: the backup at the disk's end first, then the primary) and the
// kernel told with BLKPG_RESIZE_PARTITION (BLKRRPART fails while another
// partition of the disk, the root, is mounted). It only ever grows, and a
// failure is logged and leaves the partition as it was: the boot goes on.
func (m *mounter) growPartition() {
	if err := m.growPart(); err != nil {
		m.log.printf("grow %s: %v; the partition keeps its size", m.dev, err)
		m.grown = append(m.grown, fmt.Sprintf("grow %s failed: %v", m.dev, err))
	}
}

func (m *mounter) growPart() error {
	real, err := filepath.EvalSymlinks(m.host(m.dev))
	if err != nil {
		return err
	}
	name := filepath.Base(real)
	partNo, err := sysInt(m.o, name, "partition")
	if err != nil {
		return fmt.Errorf("not a partition of a disk (no /sys/class/block/%s/partition): nothing to grow", name)
	}
	sysDir, err := filepath.EvalSymlinks(m.host("/sys/class/block/" + name))
	if err != nil {
		return err
	}
	disk := "/dev/" + filepath.Base(filepath.Dir(sysDir))
	f, err := os.OpenFile(m.host(disk), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil {
		return fmt.Errorf("sector size of %s: %w", disk, err)
	}
	t, err := gpt.Read(f, size, ss)
	if err != nil {
		return fmt.Errorf("%s: %w (only GPT disks are grown)", disk, err)
	}
	ws, newLast, err := t.Grow(int(partNo))
	if err != nil {
		return fmt.Errorf("%s: %w", disk, err)
	}
	e := t.Partition(int(partNo))
	if ws != nil {
		mbr := make([]byte, 512)
		if _, err := f.ReadAt(mbr, 0); err == nil {
			if w := t.ProtectiveMBR(mbr); w != nil {
				ws = append(ws, *w)
			}
		}
		if err := gpt.Apply(f, ws); err != nil {
			return fmt.Errorf("%s: %w", disk, err)
		}
		msg := fmt.Sprintf("grew partition %d of %s to the end of the disk: %s to %s",
			partNo, disk, mibs(int64(e.Last-e.First+1)*int64(ss)), mibs(int64(newLast-e.First+1)*int64(ss)))
		m.log.printf("%s", msg)
		m.grown = append(m.grown, msg)
	}
	// Tell the kernel when its size is smaller than the table's (now, or
	// after a cut between the table's write and this call at an earlier
	// boot of a kernel that did not read the table).
	want := int64(newLast-e.First+1) * int64(ss)
	if cur, err := sysInt(m.o, name, "size"); err == nil && cur*512 >= want {
		return nil
	}
	p := unix.BlkpgPartition{Start: int64(e.First) * int64(ss), Length: want, Pno: int32(partNo)}
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_RESIZE_PARTITION, Datalen: int32(unsafe.Sizeof(p)), Data: (*byte)(unsafe.Pointer(&p))}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		return fmt.Errorf("tell the kernel the new size of partition %d (BLKPG): %w; it takes effect at the next boot", partNo, errno)
	}
	return nil
}

// growFS grows the mounted data partition's file system to its
// partition's size when it is more than growSlack smaller: ext4 with
// resize2fs, xfs with xfs_growfs, btrfs with `btrfs filesystem resize max`
// (all online, on the mounted file system, each crash-safe by its own
// journal: a cut leaves a smaller file system that the next boot grows
// again), when the tool is in the image. f2fs is not grown (resize.f2fs
// works on an unmounted file system only). Failures are logged; the boot
// goes on.
func (m *mounter) growFS(mount string) {
	fi, _, err := probeFS(m.host(m.dev))
	if err != nil || fi.Size == 0 {
		if fi.Type == "f2fs" {
			m.log.printf("the f2fs file system on %s is not grown (resize.f2fs needs it unmounted)", m.dev)
		}
		return
	}
	f, err := os.Open(m.host(m.dev))
	if err != nil {
		return
	}
	part, err := f.Seek(0, io.SeekEnd)
	f.Close()
	if err != nil || fi.Size+growSlack >= part {
		return
	}
	var tool string
	var args []string
	switch fi.Type {
	case "ext4":
		tool, args = "resize2fs", []string{m.host(m.dev)}
	case "xfs":
		tool, args = "xfs_growfs", []string{m.host(mount)}
	case "btrfs":
		tool, args = "btrfs", []string{"filesystem", "resize", "max", m.host(mount)}
	default:
		return
	}
	path := m.o.tool(tool)
	if path == "" {
		m.log.printf("%s is not present: the %s file system on %s keeps %s of the partition's %s", tool, fi.Type, m.dev, mibs(fi.Size), mibs(part))
		return
	}
	if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
		m.log.printf("grow the %s file system on %s: %v: %s", fi.Type, m.dev, err, oneLine(out))
		m.grown = append(m.grown, fmt.Sprintf("grow the %s file system on %s failed: %v", fi.Type, m.dev, err))
		return
	}
	msg := fmt.Sprintf("grew the %s file system on %s from %s to its partition's %s", fi.Type, m.dev, mibs(fi.Size), mibs(part))
	m.log.printf("%s", msg)
	m.grown = append(m.grown, msg)
}

func mibs(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }
