// Package rootfs is tandem's view of the device's files. Every device path
// resolves under a root prefix, so a whole device can be simulated in a
// directory without privileges, and every write that changes what boots goes
// through the small FS interface below, so that a simulated device can cut the
// power at any write, fsync or rename (see Sim).
package rootfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrPowerCut is returned by every operation of a simulated device once its
// power was cut (see Sim). Callers pass it up unchanged.
var ErrPowerCut = errors.New("simulated power cut")

// File is an open file for writing.
type File interface {
	io.Writer
	io.WriterAt
	// Truncate changes the size of the file (a file slot that takes its
	// payload's size).
	Truncate(size int64) error
	Sync() error
	Close() error
}

// FS is the file layer. Names are device paths (absolute, slash separated);
// the implementation maps them under its root. Reads have no side effects;
// every mutating call is a possible power-cut point on a simulated device.
type FS interface {
	// Path returns the host path of a device path.
	Path(name string) string
	ReadFile(name string) ([]byte, error)
	Stat(name string) (fs.FileInfo, error)
	// OpenFile opens for writing (flag as for os.OpenFile).
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	MkdirAll(name string, perm fs.FileMode) error
	// SyncDir makes the directory's entries (creations, renames, removals) durable.
	SyncDir(name string) error
	// ClearImmutable clears the immutable inode attribute where the file
	// system has one (efivarfs sets it on every variable); no-op elsewhere.
	ClearImmutable(name string) error
	// Run runs an external program that changes device state (fw_setenv, a
	// boot controller). It is a cut point before and after the program.
	Run(cmd *exec.Cmd) error
}

// Join maps device path name under root. It never leaves root: ".." elements
// are resolved against "/" first.
func Join(root, name string) string {
	clean := path.Clean("/" + name)
	if root == "" || root == "/" {
		return clean
	}
	return filepath.Join(root, filepath.FromSlash(clean))
}

// OS is the real file layer under a root prefix.
type OS struct{ Root string }

// NewOS returns the real file layer rooted at root ("" or "/" for the real system).
func NewOS(root string) *OS { return &OS{Root: root} }

func (o *OS) Path(name string) string               { return Join(o.Root, name) }
func (o *OS) ReadFile(name string) ([]byte, error)  { return os.ReadFile(o.Path(name)) }
func (o *OS) Stat(name string) (fs.FileInfo, error) { return os.Stat(o.Path(name)) }
func (o *OS) Remove(name string) error              { return os.Remove(o.Path(name)) }
func (o *OS) Run(cmd *exec.Cmd) error               { return cmd.Run() }
func (o *OS) Rename(oldname, newname string) error {
	return os.Rename(o.Path(oldname), o.Path(newname))
}
func (o *OS) MkdirAll(name string, perm fs.FileMode) error {
	return os.MkdirAll(o.Path(name), perm)
}
func (o *OS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	return os.OpenFile(o.Path(name), flag, perm)
}
func (o *OS) SyncDir(name string) error { return syncDir(o.Path(name)) }
func (o *OS) ClearImmutable(name string) error {
	return clearImmutable(o.Path(name))
}

func syncDir(host string) error {
	d, err := os.Open(host)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// WriteAtomic replaces the file name with data so that after a crash at any
// instant the name holds either the old or the new content (given a file
// system with atomic rename): write name+".new", fsync it, rename it over
// name, fsync the file again under its new name, fsync the directory (the
// steps of Atomic.Commit, which streams content of any size).
//
// The second file fsync is for vfat: Linux's vfat rename attaches the moved
// inode to the old name's directory entry but only marks the inode dirty,
// and a directory fsync does not write it. The replaced file's clusters are
// freed at once, and the FAT is written by the next fsync, so without this
// step the name's entry on disk points at freed clusters until writeback, and
// a power cut in those seconds (found by the real-boot test) leaves a file
// the kernel and U-Boot cannot read: a commit that was reported done is lost.
//
// name+".new" is created exclusively and never followed: a file or symbolic
// link already there (left by a crash, or planted to make tandem write
// through it) is removed first, never written through.
func WriteAtomic(fsys FS, name string, data []byte, perm fs.FileMode) error {
	tmp := name + ".new"
	const flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL | syscall.O_NOFOLLOW
	f, err := fsys.OpenFile(tmp, flags, perm)
	if errors.Is(err, fs.ErrExist) {
		// Remove unlinks a symbolic link itself, not its target.
		if err = fsys.Remove(tmp); err == nil {
			f, err = fsys.OpenFile(tmp, flags, perm)
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	return (&Atomic{fsys: fsys, f: f, name: name, tmp: tmp}).commit()
}

// syncFile fsyncs the file name (opened read-only).
func syncFile(fsys FS, name string) error {
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return nil
}

// IsNotExist reports whether err says a file is missing.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// Under reports whether device path name is dir or inside it.
func Under(name, dir string) bool {
	name, dir = path.Clean(name), path.Clean(dir)
	return name == dir || strings.HasPrefix(name, dir+"/")
}
