package state

import (
	"os"

	"golang.org/x/sys/unix"
)

// clone makes dst share src's extents (FICLONE). It fails, and the caller
// copies, where the file system cannot (ext4, f2fs, tmpfs, xfs without
// reflink=1) or the two are on different file systems.
func clone(dst, src *os.File) error { return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) }
