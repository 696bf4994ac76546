package rootfs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// Atomic is the new content of a file, written to a temporary file in the
// same directory and put in place by Commit with the same steps as
// WriteAtomic (fsync, rename, fsync under the new name, fsync the
// directory), so that a crash at any instant leaves the old file or the
// complete new one, and a name Commit reported is durable. It streams: the
// content need not fit in memory (a bundle), unlike WriteAtomic's.
type Atomic struct {
	fsys      FS
	f         File
	name, tmp string
	done      bool
}

// CreateAtomic starts replacing the file name (a device path of fsys). The
// temporary file has a random name and is created exclusively, so it never
// follows a symlink or clobbers another writer's file; it gets exactly perm
// (the umask does not apply) where the file layer can set it (the host's).
// Write the content, then Commit; Abort (or a failed Commit) removes the
// temporary file.
func CreateAtomic(fsys FS, name string, perm fs.FileMode) (*Atomic, error) {
	dir, base := path.Split(path.Clean(name))
	for range 10 {
		var r [6]byte
		if _, err := rand.Read(r[:]); err != nil {
			return nil, err
		}
		tmp := path.Join(dir, "."+base+".tandem-"+hex.EncodeToString(r[:]))
		f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
		a := &Atomic{fsys: fsys, f: f, name: name, tmp: tmp}
		if c, ok := f.(interface{ Chmod(fs.FileMode) error }); ok {
			if err := c.Chmod(perm); err != nil {
				a.Abort()
				return nil, fmt.Errorf("write %s: %w", tmp, err)
			}
		}
		return a, nil
	}
	return nil, fmt.Errorf("write %s: no free temporary name in %s", name, dir)
}

// CreateHostFile is CreateAtomic for a path of the machine tandem runs on
// (a bundle or channel file on a build host), relative to the working
// directory or absolute.
func CreateHostFile(name string, perm fs.FileMode) (*Atomic, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, err
	}
	return CreateAtomic(NewOS(""), filepath.ToSlash(abs), perm)
}

// WriteHostFile replaces the host file name with data, atomically and
// durably (CreateHostFile, Write, Commit).
func WriteHostFile(name string, data []byte, perm fs.FileMode) error {
	a, err := CreateHostFile(name, perm)
	if err != nil {
		return err
	}
	if _, err := a.Write(data); err != nil {
		a.Abort()
		return err
	}
	return a.Commit()
}

// Write writes to the temporary file.
func (a *Atomic) Write(p []byte) (int, error) {
	n, err := a.f.Write(p)
	if err != nil {
		err = fmt.Errorf("write %s: %w", a.tmp, err)
	}
	return n, err
}

// Commit puts the written content in place: fsync and close the temporary
// file, rename it over the name, fsync the file under its new name (for
// vfat, see WriteAtomic) and fsync the directory. On an error the temporary
// file is removed (unless the power was cut: a dead device does nothing).
func (a *Atomic) Commit() error {
	err := a.commit()
	if err != nil && !errors.Is(err, ErrPowerCut) {
		a.Abort()
	}
	a.done = true
	return err
}

func (a *Atomic) commit() error {
	if err := a.f.Sync(); err != nil {
		a.f.Close()
		return fmt.Errorf("sync %s: %w", a.tmp, err)
	}
	if err := a.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", a.tmp, err)
	}
	if err := a.fsys.Rename(a.tmp, a.name); err != nil {
		return fmt.Errorf("rename %s: %w", a.tmp, err)
	}
	if err := syncFile(a.fsys, a.name); err != nil {
		return err
	}
	if err := a.fsys.SyncDir(path.Dir(a.name)); err != nil {
		return fmt.Errorf("sync directory of %s: %w", a.name, err)
	}
	return nil
}

// Abort drops the new content: the temporary file is closed and removed and
// the file keeps its old content. It does nothing after Commit.
func (a *Atomic) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.f.Close()
	_ = a.fsys.Remove(a.tmp)
}
