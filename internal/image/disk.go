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
func Disk(out string, parts []Partition) error {
	var script strings.Builder
	script.WriteString("label: gpt\nunit: sectors\n")
	start := int64(MiB)
	for _, p := range parts {
		if p.Size%MiB != 0 || p.Size <= 0 {
			return fmt.Errorf("partition %s: size %d is not a positive multiple of 1 MiB", p.Label, p.Size)
		}
		fmt.Fprintf(&script, "start=%d, size=%d, type=%s, name=%q\n", start/512, p.Size/512, p.Type, p.Label)
		start += p.Size
	}
	total := start + MiB // room for the backup GPT
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
	off := int64(MiB)
	for _, p := range parts {
		if p.Image != "" {
			if err := copyAt(f, p.Image, off, p.Size); err != nil {
				return fmt.Errorf("partition %s: %w", p.Label, err)
			}
		}
		off += p.Size
	}
	return f.Sync()
}

// ReadPartition copies partition n (1-based) of the disk image to out.
func ReadPartition(disk string, parts []Partition, n int, out string) error {
	off := int64(MiB)
	for i := 0; i < n-1; i++ {
		off += parts[i].Size
	}
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
