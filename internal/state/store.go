package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"syscall"

	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Store is the state layout on a mounted data partition, reached through
// the file layer (so that a simulated device counts, and can cut, every
// write, fsync, rename and removal of a transition).
type Store struct {
	FS rootfs.FS
	// Mount is the device path where the data partition is mounted.
	Mount string
	// KeepOnReset are shared paths a factory reset carries over to the
	// clean state: tandem's own data directory (its slot database says
	// what the slots hold, which a reset does not change).
	KeepOnReset []string
	// NoReflink makes snapshots and seeds copy every file, even where the
	// file system could share its extents (for measurements and tests).
	NoReflink bool

	cloned, copied int // files cloned (reflinked) and copied so far
}

func (s *Store) dir() string             { return path.Join(s.Mount, LayoutDir) }
func (s *Store) journal() string         { return path.Join(s.dir(), JournalFile) }
func (s *Store) gen(id int) string       { return path.Join(s.dir(), genName(id)) }
func (s *Store) host(name string) string { return s.FS.Path(name) }

// GenPath returns the device path of persistent path p in generation id.
func (s *Store) GenPath(id int, p string) string { return path.Join(s.gen(id), p) }

// Load reads the journal. ErrNoLayout when the partition has none.
func (s *Store) Load() (Layout, error) {
	b, err := s.FS.ReadFile(s.journal())
	if rootfs.IsNotExist(err) {
		return Layout{}, ErrNoLayout
	}
	if err != nil {
		return Layout{}, err
	}
	l, err := ParseLayout(b)
	if err != nil {
		return l, fmt.Errorf("%s: %w", s.journal(), err)
	}
	return l, nil
}

// write replaces the journal atomically: the commit point of every
// transition.
func (s *Store) write(l Layout) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return rootfs.WriteAtomic(s.FS, s.journal(), append(b, '\n'), 0o600)
}

// Format creates the layout on an empty data partition: two empty
// generations, then the journal. A cut before the journal's rename leaves
// no layout (the next boot formats again); after it, a complete one.
func (s *Store) Format() (Layout, error) {
	l := NewLayout()
	if err := s.mkdirs(s.dir(), s.Mount); err != nil {
		return l, err
	}
	for _, id := range []int{l.Committed.Gen, l.Shared} {
		if err := s.newGen(id); err != nil {
			return l, err
		}
	}
	return l, s.write(l)
}

// RequestReset records a factory reset for the next boot.
func (s *Store) RequestReset(keepBackup bool) (Layout, error) {
	l, err := s.Load()
	if err != nil {
		return l, err
	}
	l = l.withReset(keepBackup)
	return l, s.write(l)
}

// CancelReset drops a pending reset (nothing to do when none).
func (s *Store) CancelReset() (Layout, error) {
	l, err := s.Load()
	if err != nil || l.Reset == nil {
		return l, err
	}
	l = l.clone()
	l.Reset = nil
	return l, s.write(l)
}

// ApplyReset performs a pending reset: new empty generations, then the
// journal that names them (and the old state as backup, if asked); the old
// state becomes garbage. A cut at any point leaves the old state with the
// reset still pending, or the clean state.
func (s *Store) ApplyReset(l Layout) (Layout, error) {
	n := l.afterReset()
	for _, id := range []int{n.Committed.Gen, n.Shared} {
		if err := s.newGen(id); err != nil {
			return l, err
		}
	}
	for _, p := range s.KeepOnReset {
		src := s.GenPath(l.Shared, p)
		if _, err := os.Lstat(s.host(src)); err != nil {
			continue
		}
		dst := s.GenPath(n.Shared, p)
		if err := s.mkdirs(path.Dir(dst), s.gen(n.Shared)); err != nil {
			return l, err
		}
		if err := s.copyTree(src, dst); err != nil {
			return l, fmt.Errorf("keep %s: %w", p, err)
		}
	}
	if err := s.write(n); err != nil {
		return l, err
	}
	return n, s.Collect(n)
}

// Snapshot gives group a copy of the committed state as its trial state
// (shared paths are not copied: the shared generation serves both). The
// copy is made in full and durable under a new generation id before the
// journal names it; each file is a reflink (a clone sharing the data) where
// the file system takes them, else a copy (writeFrom).
func (s *Store) Snapshot(l Layout, group string) (Layout, error) {
	n, err := l.afterSnapshot(group)
	if err != nil {
		return l, err
	}
	if err := s.clear(n.Trial.Gen); err != nil {
		return l, err
	}
	if err := s.copyTree(s.gen(l.Committed.Gen), s.gen(n.Trial.Gen)); err != nil {
		return l, fmt.Errorf("snapshot for group %s: %w", group, err)
	}
	if err := s.write(n); err != nil {
		return l, err
	}
	return n, nil
}

// Commit makes the trial's state the committed state; the old committed
// generation is garbage.
func (s *Store) Commit(l Layout) (Layout, error) { return s.finishTrial(l, l.afterCommit) }

// Rollback drops the trial's state; the committed state is untouched.
func (s *Store) Rollback(l Layout) (Layout, error) { return s.finishTrial(l, l.afterRollback) }

// finishTrial ends the trial of l as next says: the journal is switched in
// one atomic write, then the generations it no longer names are removed.
func (s *Store) finishTrial(l Layout, next func() (Layout, error)) (Layout, error) {
	n, err := next()
	if err != nil {
		return l, err
	}
	if err := s.write(n); err != nil {
		return l, err
	}
	return n, s.Collect(n)
}

// Adopt records that the committed state belongs to group.
func (s *Store) Adopt(l Layout, group string) (Layout, error) {
	n := l.afterAdopt(group)
	if n == l {
		return l, nil
	}
	return n, s.write(n)
}

// Collect removes the generations the journal does not name (left by a
// transition, or by one a power cut interrupted before its journal write).
func (s *Store) Collect(l Layout) error {
	ents, err := os.ReadDir(s.host(path.Join(s.dir(), GenDir)))
	if err != nil {
		if rootfs.IsNotExist(err) {
			return nil
		}
		return err
	}
	keep := l.Referenced()
	for _, e := range ents {
		id, err := strconv.Atoi(e.Name())
		if err == nil && slices.Contains(keep, id) {
			continue
		}
		if err := s.removeAll(path.Join(s.dir(), GenDir, e.Name())); err != nil {
			return fmt.Errorf("remove unused state %s: %w", e.Name(), err)
		}
	}
	return nil
}

// Seed makes persistent path p exist in generation id: when it is absent,
// it is copied from the system image (imageRoot, a host directory: what the
// read-only system holds at p), or created empty when the image has none.
// The copy is made under a temporary name and renamed into place, so a cut
// never leaves a half-seeded path that a later boot would take as seeded.
func (s *Store) Seed(id int, p Path, imageRoot string) error {
	dst := s.GenPath(id, p.Path)
	if _, err := os.Lstat(s.host(dst)); err == nil {
		return nil
	}
	tmp := path.Join(s.gen(id), ".seed-"+strconv.Itoa(os.Getpid()))
	if err := s.removeAll(tmp); err != nil {
		return err
	}
	src := rootfs.Join(imageRoot, p.Path)
	fi, err := os.Lstat(src)
	switch {
	case err == nil && (fi.IsDir() == (p.Kind == KindDirectory)):
		if err := s.copyTree(src, tmp, true); err != nil {
			return fmt.Errorf("seed %s: %w", p.Path, err)
		}
	case p.Kind == KindDirectory:
		if err := s.mkdirs(tmp, s.gen(id)); err != nil {
			return err
		}
	default:
		if err := s.writeFile(tmp, nil, 0o644); err != nil {
			return err
		}
		if err := s.FS.SyncDir(s.gen(id)); err != nil {
			return err
		}
	}
	if err := s.mkdirs(path.Dir(dst), s.gen(id)); err != nil {
		return err
	}
	if err := s.FS.Rename(tmp, dst); err != nil {
		return fmt.Errorf("seed %s: %w", p.Path, err)
	}
	if err := s.FS.SyncDir(path.Dir(dst)); err != nil {
		return err
	}
	return s.FS.SyncDir(s.gen(id))
}

// Size returns the bytes held by persistent path p in generation id (0 when absent).
func (s *Store) Size(id int, p string) int64 {
	var n int64
	_ = walk(s.host(s.GenPath(id, p)), func(_ string, fi fs.FileInfo) {
		if fi.Mode().IsRegular() {
			n += fi.Size()
		}
	})
	return n
}

// newGen creates the empty directory of generation id, durably, removing
// any garbage left under that id by an interrupted transition.
func (s *Store) newGen(id int) error {
	if err := s.clear(id); err != nil {
		return err
	}
	return s.mkdirs(s.gen(id), s.Mount)
}

func (s *Store) clear(id int) error { return s.removeAll(s.gen(id)) }

// mkdirs creates dir (and its parents) and fsyncs each new directory's
// parent up to top, so that the new names are durable.
func (s *Store) mkdirs(dir, top string) error {
	var created []string
	for d := dir; d != top && d != "/" && d != "."; d = path.Dir(d) {
		if _, err := os.Lstat(s.host(d)); err == nil {
			break
		}
		created = append(created, d)
	}
	if err := s.FS.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range created {
		if err := s.FS.SyncDir(path.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies the tree at device path src to the new device path dst
// (host source paths when hostSrc), durably: each file is written and
// fsynced, each directory fsynced after its entries. Regular files,
// directories and symbolic links are copied with their modes (and owners,
// when running as root); other file types are refused.
func (s *Store) copyTree(src, dst string, hostSrc ...bool) error {
	hsrc := src
	if len(hostSrc) == 0 || !hostSrc[0] {
		hsrc = s.host(src)
	}
	fi, err := os.Lstat(hsrc)
	if err != nil {
		return err
	}
	if err := s.copyEntry(hsrc, dst, fi); err != nil {
		return err
	}
	return s.FS.SyncDir(path.Dir(dst))
}

func (s *Store) copyEntry(hsrc, dst string, fi fs.FileInfo) error {
	switch {
	case fi.IsDir():
		if err := s.FS.MkdirAll(dst, fi.Mode().Perm()); err != nil {
			return err
		}
		ents, err := os.ReadDir(hsrc)
		if err != nil {
			return err
		}
		for _, e := range ents {
			efi, err := e.Info()
			if err != nil {
				return err
			}
			if err := s.copyEntry(path.Join(hsrc, e.Name()), path.Join(dst, e.Name()), efi); err != nil {
				return err
			}
		}
		if err := os.Chmod(s.host(dst), fi.Mode().Perm()); err != nil {
			return err
		}
		chown(s.host(dst), fi)
		return s.FS.SyncDir(dst)
	case fi.Mode().IsRegular():
		f, err := os.Open(hsrc)
		if err != nil {
			return err
		}
		defer f.Close()
		return s.writeFrom(dst, f, fi)
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(hsrc)
		if err != nil {
			return err
		}
		// Not a cut point of the file layer; made durable by the directory fsync.
		return os.Symlink(target, s.host(dst))
	}
	return fmt.Errorf("%s: %v files cannot be persistent state", hsrc, fi.Mode().Type())
}

// writeFrom creates dst exclusively with src's bytes and fsyncs it. Where
// the file system shares extents (a reflink: btrfs, xfs with reflink=1) the
// bytes are cloned, not copied: the new file costs metadata only until one
// of the two is written. The order stays: create, content, fsync, and the
// directory fsync by the caller; a cut before the fsync loses the clone as
// it would lose a copy.
func (s *Store) writeFrom(dst string, src *os.File, fi fs.FileInfo) error {
	f, err := s.FS.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if of, ok := f.(*os.File); ok && !s.NoReflink && fi.Size() > 0 && clone(of, src) == nil {
		s.cloned++
	} else if err := s.copyData(f, src); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	chown(s.host(dst), fi)
	return nil
}

// copyData copies r to the new file f.
func (s *Store) copyData(f rootfs.File, r io.Reader) error {
	s.copied++
	buf := make([]byte, 1<<20)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func (s *Store) writeFile(dst string, data []byte, perm fs.FileMode) error {
	f, err := s.FS.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	if len(data) > 0 {
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// removeAll removes the tree at device path name through the file layer
// (each removal a cut point), deepest first, then fsyncs its parent.
func (s *Store) removeAll(name string) error {
	fi, err := os.Lstat(s.host(name))
	if rootfs.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.removeEntry(name, fi); err != nil {
		return err
	}
	return s.FS.SyncDir(path.Dir(name))
}

func (s *Store) removeEntry(name string, fi fs.FileInfo) error {
	if fi.IsDir() {
		ents, err := os.ReadDir(s.host(name))
		if err != nil {
			return err
		}
		for _, e := range ents {
			efi, err := e.Info()
			if err != nil {
				return err
			}
			if err := s.removeEntry(path.Join(name, e.Name()), efi); err != nil {
				return err
			}
		}
	}
	if err := s.FS.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// walk calls fn for every entry of the host tree at root (root included).
func walk(root string, fn func(string, fs.FileInfo)) error {
	fi, err := os.Lstat(root)
	if err != nil {
		return err
	}
	fn(root, fi)
	if !fi.IsDir() {
		return nil
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, e := range ents {
		_ = walk(path.Join(root, e.Name()), fn)
	}
	return nil
}

// chown gives dst the owner of fi's file when running as root.
func chown(dst string, fi fs.FileInfo) {
	if os.Geteuid() != 0 {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		_ = os.Lchown(dst, int(st.Uid), int(st.Gid))
	}
}
