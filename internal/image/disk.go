package image

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// GPT partition type GUIDs of the images.
const (
	TypeESP   = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeLinux = "0FC63DAF-8483-4772-8E79-3D69C47D8E4C"
)

// MBR partition types (DiskMBR).
const (
	TypeMBRFAT32    = "c"  // FAT32 (LBA)
	TypeMBRLinux    = "83" // Linux
	typeMBRExtended = "5"
)

// Partition is one GPT partition of a disk image.
type Partition struct {
	Label string // GPT partition name (PARTLABEL)
	Type  string // type GUID
	Size  int64  // bytes, a multiple of 1 MiB
	Image string // file system image copied to the start of the partition ("" leaves it zero)
}

// Disk writes a disk image at out: a GPT (sfdisk on the file) with the
// partitions in order, each starting on a 1 MiB boundary, and each
// partition's image copied in: partition i is number i+1.
func Disk(out string, parts []Partition) error { return writeDisk(out, parts, false) }

// DiskMBR writes a disk image at out with an MBR (DOS) partition table:
// the first three partitions are primary (numbers 1-3), number 4 is an
// extended partition holding the others as logical partitions 5, 6, ...
// (each after a 1 MiB gap for its extended boot record). Types are MBR
// type codes (TypeMBRFAT32, TypeMBRLinux); labels name errors only.
func DiskMBR(out string, parts []Partition) error { return writeDisk(out, parts, true) }

// logical reports whether the i-th (0-based) partition of an MBR disk is a
// logical one, inside the extended partition (number 4).
func logical(i int, mbr bool) bool { return mbr && i >= 3 }

// PartitionNumber returns the number Linux gives the i-th (0-based)
// partition of a disk that Disk (mbr false) or DiskMBR writes.
func PartitionNumber(i int, mbr bool) int {
	if logical(i, mbr) {
		return i + 2 // 4 is the extended partition
	}
	return i + 1
}

// Offsets returns each partition's start in bytes on a disk that Disk
// (mbr false) or DiskMBR writes, and the disk's size.
func Offsets(parts []Partition, mbr bool) (starts []int64, total int64) {
	off := int64(MiB)
	for i, p := range parts {
		if logical(i, mbr) {
			off += MiB // the logical partition's extended boot record
		}
		starts = append(starts, off)
		off += p.Size
	}
	return starts, off + MiB // room for the backup GPT
}

func writeDisk(out string, parts []Partition, mbr bool) error {
	var script strings.Builder
	label := "gpt"
	if mbr {
		label = "dos"
	}
	fmt.Fprintf(&script, "label: %s\nunit: sectors\n", label)
	starts, total := Offsets(parts, mbr)
	for i, p := range parts {
		if p.Size%MiB != 0 || p.Size <= 0 {
			return fmt.Errorf("partition %s: size %d is not a positive multiple of 1 MiB", p.Label, p.Size)
		}
		if mbr && i == 3 {
			ext := starts[3] - MiB
			fmt.Fprintf(&script, "start=%d, size=%d, type=%s\n", ext/512, (total-MiB-ext)/512, typeMBRExtended)
		}
		if mbr {
			fmt.Fprintf(&script, "start=%d, size=%d, type=%s\n", starts[i]/512, p.Size/512, p.Type)
		} else {
			fmt.Fprintf(&script, "start=%d, size=%d, type=%s, name=%q\n", starts[i]/512, p.Size/512, p.Type, p.Label)
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(total); err != nil {
		return err
	}
	if err := runIn(script.String(), "sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", out); err != nil {
		return err
	}
	for i, p := range parts {
		if p.Image != "" {
			if err := copyAt(f, p.Image, starts[i], p.Size); err != nil {
				return fmt.Errorf("partition %s: %w", p.Label, err)
			}
		}
	}
	return f.Sync()
}

// ReadPartition copies partition n (1-based) of a GPT disk image that Disk
// wrote to out.
func ReadPartition(disk string, parts []Partition, n int, out string) error {
	starts, _ := Offsets(parts[:n], false)
	off := starts[n-1]
	in, err := os.Open(disk)
	if err != nil {
		return err
	}
	defer in.Close()
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	defer o.Close()
	if _, err := io.Copy(o, io.NewSectionReader(in, off, parts[n-1].Size)); err != nil {
		return err
	}
	return o.Close()
}

func copyAt(f *os.File, img string, off, max int64) error {
	in, err := os.Open(img)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if st.Size() > max {
		return fmt.Errorf("%s: %d bytes do not fit in %d", img, st.Size(), max)
	}
	_, err = io.Copy(io.NewOffsetWriter(f, off), in)
	return err
}
