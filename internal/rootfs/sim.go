package rootfs

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"syscall"
)

// CutMode says what survives a simulated power cut.
type CutMode int

const (
	// CutDrop loses everything that was not made durable: file data written
	// since the file's last fsync, and creations, renames and removals in a
	// directory since that directory's last fsync. The operation at the cut
	// point does not happen. This is the worst case for a missing fsync.
	CutDrop CutMode = iota
	// CutTear is CutDrop, except that when the cut point is a write, the
	// first half of that write reaches the file's durable content (a torn
	// in-place write).
	CutTear
	// CutKeep keeps everything done before the cut point (like kill -9 on a
	// file system that never loses acknowledged writes); a write at the cut
	// point lands half.
	CutKeep
)

var cutModeNames = map[CutMode]string{CutDrop: "drop", CutTear: "tear", CutKeep: "keep"}

func (m CutMode) String() string { return cutModeNames[m] }

// ParseCutMode parses "drop", "tear" or "keep".
func ParseCutMode(s string) (CutMode, error) {
	for m, n := range cutModeNames {
		if n == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown power-cut mode %q (want drop, tear or keep)", s)
}

// SimOptions configure the simulated file layer.
type SimOptions struct {
	// CutAt is the 1-based cut point at which the power fails; 0 never cuts.
	// Cut points are, in order of occurrence: every file write, file fsync,
	// directory fsync, rename and removal, and the moments just before and
	// just after an external program runs.
	CutAt int
	Mode  CutMode
	// SyncDirs are device paths of directories that behave like efivarfs:
	// every write is one atomic, immediately durable variable update; files
	// are immutable until ClearImmutable; rename is not supported.
	SyncDirs []string
	// FATDirs are device paths of directories on a FAT file system (a boot
	// partition). There a rename over an existing name is durable only once
	// the renamed file is fsynced under its new name: Linux's vfat updates
	// that name's directory entry (start cluster, size) when the moved inode
	// is written back, not at the directory fsync, while the replaced file's
	// clusters are freed at the next flush of the FAT. So a rename followed
	// by any other fsync on that FAT (the directory's, another file's) before
	// the renamed file's own fsync leaves the name pointing at freed
	// clusters: a cut (modes drop and tear) then loses it.
	FATDirs []string
}

// Sim is the file layer of a simulated device. It writes through to the host
// directory (so other processes see the files) and keeps enough undo state to
// turn the host directory into what a disk would hold after a power cut.
type Sim struct {
	root string
	opts SimOptions

	points  int
	cutErr  error
	inodes  map[string]*inode            // device path → tracked file at that name now
	dirs    map[string]map[string]*inode // dir → name → durable file (nil: no entry) for names changed since the dir's last fsync
	cleared map[string]bool              // sync-dir files whose immutable attribute was cleared
	// dangling are FAT names renamed over and not fsynced since (FATDirs);
	// doomed ones saw another fsync meanwhile and are lost at a cut.
	dangling, doomed map[string]bool
}

type inode struct {
	name    string // current device path ("" once removed)
	durable []byte // content as of the last fsync (or first sight)
}

// NewSim returns a simulated file layer rooted at root.
func NewSim(root string, opts SimOptions) *Sim {
	return &Sim{root: root, opts: opts, inodes: map[string]*inode{},
		dirs: map[string]map[string]*inode{}, cleared: map[string]bool{},
		dangling: map[string]bool{}, doomed: map[string]bool{}}
}

// Points returns the number of cut points passed so far.
func (s *Sim) Points() int { return s.points }

// Cut reports the power-cut error, or nil while the power is on.
func (s *Sim) Cut() error { return s.cutErr }

func (s *Sim) Path(name string) string { return Join(s.root, name) }

func (s *Sim) ReadFile(name string) ([]byte, error) {
	if s.cutErr != nil {
		return nil, s.cutErr
	}
	return os.ReadFile(s.Path(name))
}

func (s *Sim) Stat(name string) (fs.FileInfo, error) {
	if s.cutErr != nil {
		return nil, s.cutErr
	}
	return os.Stat(s.Path(name))
}

func (s *Sim) MkdirAll(name string, perm fs.FileMode) error {
	if s.cutErr != nil {
		return s.cutErr
	}
	return os.MkdirAll(s.Path(name), perm)
}

func (s *Sim) fat(name string) bool {
	for _, d := range s.opts.FATDirs {
		if Under(name, d) {
			return true
		}
	}
	return false
}

// fatFlush models an fsync on a FAT: it flushes the FAT, so the clusters of
// files replaced by a rename are free on disk while their names still point
// there (except self, the file being fsynced, whose entry is written too).
func (s *Sim) fatFlush(name, self string) {
	if !s.fat(name) {
		return
	}
	for n := range s.dangling {
		if n != self {
			s.doomed[n] = true
			delete(s.dangling, n)
		}
	}
}

func (s *Sim) syncDir(name string) bool {
	for _, d := range s.opts.SyncDirs {
		if Under(name, d) && path.Clean(name) != path.Clean(d) {
			return true
		}
	}
	return false
}

// point passes one cut point; at the chosen one it cuts the power.
func (s *Sim) point(desc string, tear func()) error {
	if s.cutErr != nil {
		return s.cutErr
	}
	s.points++
	if s.points != s.opts.CutAt {
		return nil
	}
	s.cutErr = fmt.Errorf("%w at cut point %d (%s)", ErrPowerCut, s.points, desc)
	if s.opts.Mode != CutKeep {
		s.restore()
	}
	if tear != nil && s.opts.Mode != CutDrop {
		tear()
	}
	return s.cutErr
}

// PowerOff cuts the power now, after the last operation, as if the next
// cut point were reached: unsynced state is lost (per the mode). It is how a
// test proves that an operation made everything it did durable.
func (s *Sim) PowerOff() error {
	if s.cutErr != nil {
		return s.cutErr
	}
	s.cutErr = fmt.Errorf("%w after cut point %d (power off)", ErrPowerCut, s.points)
	if s.opts.Mode != CutKeep {
		s.restore()
	}
	return nil
}

// track starts tracking the file at name (if any) with its present content as durable.
func (s *Sim) track(name string) *inode {
	name = path.Clean(name)
	if ino, ok := s.inodes[name]; ok {
		return ino
	}
	b, err := os.ReadFile(s.Path(name))
	if err != nil {
		return nil
	}
	ino := &inode{name: name, durable: b}
	s.inodes[name] = ino
	return ino
}

// record remembers the durable directory entry of name before its first change.
func (s *Sim) record(name string) {
	name = path.Clean(name)
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	ents := s.dirs[dir]
	if ents == nil {
		ents = map[string]*inode{}
		s.dirs[dir] = ents
	}
	if _, ok := ents[base]; !ok {
		ents[base] = s.inodes[name]
	}
}

func (s *Sim) durableEntry(name string) (ino *inode, changed bool) {
	dir, base := path.Split(name)
	ino, changed = s.dirs[path.Clean(dir)][base]
	return ino, changed
}

// restore rewrites the host directory to its durable state.
func (s *Sim) restore() {
	for name, ino := range s.inodes {
		if _, changed := s.durableEntry(name); !changed {
			_ = os.WriteFile(s.Path(name), ino.durable, 0o644)
		}
	}
	for dir, ents := range s.dirs {
		for base, ino := range ents {
			p := s.Path(path.Join(dir, base))
			if ino == nil {
				_ = os.Remove(p)
			} else {
				_ = os.WriteFile(p, ino.durable, 0o644)
			}
		}
	}
	for name := range s.doomed {
		_ = os.Remove(s.Path(name))
	}
}

func (s *Sim) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if s.cutErr != nil {
		return nil, s.cutErr
	}
	name = path.Clean(name)
	_, statErr := os.Stat(s.Path(name))
	exists := statErr == nil
	if s.syncDir(name) {
		if exists && !s.cleared[name] {
			return nil, &fs.PathError{Op: "open", Path: s.Path(name), Err: syscall.EPERM}
		}
		if !exists && flag&os.O_CREATE == 0 {
			return nil, &fs.PathError{Op: "open", Path: s.Path(name), Err: fs.ErrNotExist}
		}
		return &varFile{s: s, name: name}, nil
	}
	if exists {
		s.track(name)
	} else if flag&os.O_CREATE != 0 {
		s.record(name)
		s.inodes[name] = &inode{name: name, durable: []byte{}}
	}
	f, err := os.OpenFile(s.Path(name), flag, perm)
	if err != nil {
		return nil, err
	}
	return &simFile{s: s, f: f, ino: s.inodes[name]}, nil
}

func (s *Sim) Rename(oldname, newname string) error {
	oldname, newname = path.Clean(oldname), path.Clean(newname)
	if s.syncDir(oldname) || s.syncDir(newname) {
		if s.cutErr != nil {
			return s.cutErr
		}
		return &os.LinkError{Op: "rename", Old: s.Path(oldname), New: s.Path(newname), Err: syscall.EPERM}
	}
	if err := s.point("rename "+oldname+" "+newname, nil); err != nil {
		return err
	}
	ino := s.track(oldname)
	if s.track(newname) != nil && s.fat(newname) {
		s.dangling[newname] = true
	}
	delete(s.dangling, oldname)
	delete(s.doomed, oldname)
	s.record(oldname)
	s.record(newname)
	if err := os.Rename(s.Path(oldname), s.Path(newname)); err != nil {
		return err
	}
	delete(s.inodes, oldname)
	if ino != nil {
		ino.name = newname
		s.inodes[newname] = ino
	}
	return nil
}

func (s *Sim) Remove(name string) error {
	name = path.Clean(name)
	if s.syncDir(name) {
		if s.cutErr != nil {
			return s.cutErr
		}
		if _, err := os.Stat(s.Path(name)); err == nil && !s.cleared[name] {
			return &fs.PathError{Op: "remove", Path: s.Path(name), Err: syscall.EPERM}
		}
		if err := s.point("remove "+name, nil); err != nil {
			return err
		}
		return os.Remove(s.Path(name))
	}
	if err := s.point("remove "+name, nil); err != nil {
		return err
	}
	if ino := s.track(name); ino != nil {
		ino.name = ""
	}
	s.record(name)
	if err := os.Remove(s.Path(name)); err != nil {
		return err
	}
	delete(s.inodes, name)
	return nil
}

func (s *Sim) SyncDir(name string) error {
	if err := s.point("fsync directory "+name, nil); err != nil {
		return err
	}
	// The model is the durability: no real fsync (it only slows tests).
	if _, err := os.Stat(s.Path(name)); err != nil {
		return err
	}
	delete(s.dirs, path.Clean(name))
	s.fatFlush(path.Join(name, "x"), "")
	return nil
}

func (s *Sim) ClearImmutable(name string) error {
	if s.cutErr != nil {
		return s.cutErr
	}
	name = path.Clean(name)
	if _, err := os.Stat(s.Path(name)); err != nil {
		return err
	}
	if s.syncDir(name) {
		s.cleared[name] = true
	}
	return nil
}

func (s *Sim) Run(cmd *exec.Cmd) error {
	if err := s.point("before running "+cmd.Path, nil); err != nil {
		return err
	}
	if err := cmd.Run(); err != nil {
		return err
	}
	return s.point("after running "+cmd.Path, nil)
}

// simFile is a file written through to the host, tracked for undo.
type simFile struct {
	s   *Sim
	f   *os.File
	ino *inode
}

func (f *simFile) Write(p []byte) (int, error) {
	off, err := f.f.Seek(0, 1)
	if err != nil {
		return 0, err
	}
	n, err := f.WriteAt(p, off)
	if err == nil {
		_, err = f.f.Seek(int64(n), 1)
	}
	return n, err
}

func (f *simFile) WriteAt(p []byte, off int64) (int, error) {
	tear := func() {
		if f.ino == nil || f.ino.name == "" {
			return
		}
		if ino, changed := f.s.durableEntry(f.ino.name); changed && ino != f.ino && f.s.opts.Mode != CutKeep {
			return // the name this file has now is not durable: the torn data is unreachable
		}
		_, _ = f.f.WriteAt(p[:len(p)/2], off)
	}
	if err := f.s.point(fmt.Sprintf("write %d bytes at %d to %s", len(p), off, f.name()), tear); err != nil {
		return 0, err
	}
	return f.f.WriteAt(p, off)
}

func (f *simFile) name() string {
	if f.ino != nil && f.ino.name != "" {
		return f.ino.name
	}
	return f.f.Name()
}

func (f *simFile) Sync() error {
	if err := f.s.point("fsync "+f.name(), nil); err != nil {
		return err
	}
	if f.ino != nil && f.ino.name != "" {
		b, err := os.ReadFile(f.s.Path(f.ino.name))
		if err != nil {
			return err
		}
		f.ino.durable = b
		f.s.fatFlush(f.ino.name, f.ino.name)
		if f.s.dangling[f.ino.name] || f.s.doomed[f.ino.name] {
			// vfat writes the moved inode's directory entry now: the name is durable.
			delete(f.s.dangling, f.ino.name)
			delete(f.s.doomed, f.ino.name)
			dir, base := path.Split(f.ino.name)
			dir = path.Clean(dir)
			if f.s.dirs[dir] == nil {
				f.s.dirs[dir] = map[string]*inode{}
			}
			f.s.dirs[dir][base] = f.ino
		}
	}
	return nil
}

// Truncate is a cut point; the new size is durable at the next fsync.
func (f *simFile) Truncate(size int64) error {
	if err := f.s.point(fmt.Sprintf("truncate %s to %d bytes", f.name(), size), nil); err != nil {
		return err
	}
	return f.f.Truncate(size)
}

func (f *simFile) Close() error { return f.f.Close() }

// varFile is a variable of an efivarfs-like directory: each write replaces
// the whole variable atomically and durably.
type varFile struct {
	s    *Sim
	name string
}

func (v *varFile) Write(p []byte) (int, error) {
	if err := v.s.point("write variable "+v.name, nil); err != nil {
		return 0, err
	}
	if err := os.WriteFile(v.s.Path(v.name), p, 0o644); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (v *varFile) WriteAt(p []byte, off int64) (int, error) {
	return 0, &fs.PathError{Op: "write", Path: v.s.Path(v.name), Err: syscall.EINVAL}
}

func (v *varFile) Truncate(int64) error {
	return &fs.PathError{Op: "truncate", Path: v.s.Path(v.name), Err: syscall.EINVAL}
}

func (v *varFile) Sync() error { return v.s.cutErr }

func (v *varFile) Close() error {
	delete(v.s.cleared, v.name) // a variable is immutable again once written
	return nil
}
