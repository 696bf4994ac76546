package device

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
func (d *Device) LockPath(name, busy string) (unlock func(), err error) {
	p := d.FS.Path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
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
