package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/tandem-ota/tandem/internal/rootfs"
	"golang.org/x/sys/unix"
)

// ErrNoSpace: the data partition cannot hold the snapshot a trial needs.
var ErrNoSpace = errors.New("the data partition lacks space for the trial's state snapshot")

// SnapshotMargin is added to a snapshot's size, on top of a tenth of it,
// when checking the free space of the data partition (directories, the
// journal, and the file system's own reserve).
const SnapshotMargin = 4 << 20

// FreeFunc returns the bytes free to an unprivileged writer of the file
// system holding the host path dir.
type FreeFunc func(dir string) (int64, error)

// Statfs is the FreeFunc of the real system (and of the simulator, whose data
// partition is a folder: its file system's free space).
func Statfs(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil // Bsize is int32 on 32-bit arm
}

// SpaceNeed is what a trial's snapshot needs on the data partition.
type SpaceNeed struct {
	// Reflink: the data partition shares extents (btrfs, xfs with
	// reflink=1), so the snapshot clones files instead of copying them.
	Reflink bool
	// Snapshot is the bytes the snapshot of the committed state's
	// non-shared paths takes: a copy of them, or with Reflink their
	// metadata only (a block per file and directory).
	Snapshot int64
	Need     int64 // Snapshot plus the margin
	Free     int64 // bytes free on the data partition
}

// CheckTrialSpace refuses (ErrNoSpace) a trial whose snapshot would not
// fit in the free space of the data partition with a margin: a copy of the
// committed generation's non-shared paths, each file and directory counted
// in whole 4 KiB blocks — or, where the data partition takes reflinks (a
// clone of its journal is tried), one block per file and directory, the
// metadata of the clones (what the trial then rewrites is not counted). It
// checks nothing when no state is managed or the data partition holds no
// layout yet (nothing to copy). free nil is Statfs.
func CheckTrialSpace(fsys rootfs.FS, dataDir string, free FreeFunc) (*SpaceNeed, error) {
	c, err := Load(fsys)
	if err != nil {
		return nil, err
	}
	if c.Data == nil {
		return nil, nil
	}
	s := &Store{FS: fsys, Mount: c.Data.Mount}
	l, err := s.Load()
	if errors.Is(err, ErrNoLayout) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	n := &SpaceNeed{Reflink: reflinks(s.host(s.dir()), s.host(s.journal()))}
	for _, p := range c.WithDataDir(dataDir) {
		if !p.Shared {
			n.Snapshot += copyCost(s.host(s.GenPath(l.Committed.Gen, p.Path)), n.Reflink)
		}
	}
	n.Need = n.Snapshot + n.Snapshot/10 + SnapshotMargin
	if free == nil {
		free = Statfs
	}
	if n.Free, err = free(s.host(c.Data.Mount)); err != nil {
		return nil, fmt.Errorf("free space of the data partition %s: %w", c.Data.Mount, err)
	}
	what := "state"
	if n.Reflink {
		what = "a reflinked snapshot's metadata"
	}
	if n.Free < n.Need {
		return n, fmt.Errorf("%w: it needs %s (%s %s and a margin), %s is free on %s; free space there or mark large paths shared = true in %s",
			ErrNoSpace, mib(n.Need), what, mib(n.Snapshot), mib(n.Free), c.Data.Mount, ConfigDir)
	}
	return n, nil
}

// block is the allocation unit assumed for a copy: every file and directory
// takes at least one, and a file's size is rounded up to a whole number.
const block = 4096

// copyCost estimates the bytes a snapshot of the tree at host path root
// takes on the data partition: each entry rounded up to whole blocks, so
// that many small files are not counted as a few bytes; with reflink, one
// block per entry (a clone shares the data).
func copyCost(root string, reflink bool) int64 {
	var n int64
	_ = walk(root, func(_ string, fi fs.FileInfo) {
		size := int64(0)
		if fi.Mode().IsRegular() && !reflink {
			size = fi.Size()
		}
		n += max((size+block-1)/block, 1) * block
	})
	return n
}

// reflinks reports whether the file system of host directory dir clones
// files: it tries to clone the file src into a temporary file in dir.
func reflinks(dir, src string) bool {
	in, err := os.Open(src)
	if err != nil {
		return false
	}
	defer in.Close()
	tmp := filepath.Join(dir, ".reflink-probe")
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return false
	}
	defer os.Remove(tmp)
	defer out.Close()
	return clone(out, in) == nil
}

// mib formats n bytes in MiB with one decimal.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
