package device

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/tandem-ota/tandem/internal/filetrust"
	"golang.org/x/sys/unix"
)

// LockFile is the device path of the lock that serialises tandem processes
// that change the device. It lives on the /run tmpfs: a lock never outlives a boot.
const LockFile = "/run/tandem/lock"

// Lock takes the device lock, so that no two tandem processes change the
// boot state or the slots at once. It fails at once when another process
// holds it. The lock is released by unlock or when the process ends.
func (d *Device) Lock() (unlock func(), err error) {
	return d.LockPath(LockFile, "another tandem process is changing the device")
}

// LockPath takes the lock at the device path name the way Lock takes the
// device lock; busy says who holds it in the error when another process does.
//
// Whoever can open a lock file can flock it and so block every tandem
// command, so the lock is the owner's alone: its directory is created mode
// 0700 and must not be writable by others, the file is created mode 0600
// (never through a symlink), and an existing lock that another user owns or
// that grants any permission to group or others is refused (ErrRefused):
// another process may already hold it open. The directory must pass
// filetrust.Check.
func (d *Device) LockPath(name, busy string) (unlock func(), err error) {
	p := d.FS.Path(name)
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if _, err := filetrust.Check(dir); err != nil {
		return nil, fmt.Errorf("%w: lock directory: %w", ErrRefused, err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	fi, err := f.Stat()
	if err == nil {
		err = checkLock(p, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (lock %s)", ErrRefused, busy, p)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}

// checkLock refuses a lock file at host path p that others could open (and
// so hold): not a regular file, owned by another user than tandem's, or
// with any permission for group or others.
func checkLock(p string, fi fs.FileInfo) error {
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: lock %s is a %s; remove it and run tandem again", ErrRefused, p, fi.Mode().Type())
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("%w: lock %s has mode %04o, so other users can open it and hold the lock; remove it and run tandem again (it is recreated mode 0600; chmod is not enough: another process may hold it open already)",
			ErrRefused, p, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: lock %s is owned by uid %d, not by tandem's uid %d; remove it and run tandem again",
			ErrRefused, p, st.Uid, os.Geteuid())
	}
	return nil
}
