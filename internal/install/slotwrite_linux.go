package install

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/tandem-ota/tandem/internal/rootfs"
)

// setDirect turns direct I/O (O_DIRECT) on or off for a slot opened by the
// real file layer: a regular file or a block device. Anything else (a
// simulated device's file, a character device) is left as it is, with an
// error when on was asked.
func setDirect(f rootfs.File, on bool) error {
	of, ok := f.(*os.File)
	if !ok {
		if !on {
			return nil
		}
		return errors.New("not a file of the real file layer")
	}
	if on {
		fi, err := of.Stat()
		if err != nil {
			return err
		}
		if t := fi.Mode().Type(); t != 0 && t != os.ModeDevice {
			return errors.New("neither a regular file nor a block device")
		}
	}
	rc, err := of.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		var fl int
		if fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0); ferr != nil {
			return
		}
		if on {
			fl |= unix.O_DIRECT
		} else {
			fl &^= unix.O_DIRECT
		}
		_, ferr = unix.FcntlInt(fd, unix.F_SETFL, fl)
	}); err != nil {
		return err
	}
	return ferr
}
