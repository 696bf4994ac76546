package install

import (
	"errors"
	"io"
	"os"
	"syscall"
	"unsafe"

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

// writeDirect writes b to f, a slot setDirect turned direct I/O on for, at
// its offset, in raw system calls: the goroutine keeps its P while the
// device works (see holdProc). It returns what a File's Write would; a
// file of another layer is written with its Write.
func writeDirect(f rootfs.File, b []byte) (int, error) {
	of, ok := f.(*os.File)
	if !ok {
		return f.Write(b)
	}
	rc, err := of.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		for n < len(b) && werr == nil {
			m, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[n])), uintptr(len(b)-n))
			switch {
			case e == syscall.EINTR:
			case e != 0:
				werr = e
			case m == 0:
				werr = io.ErrShortWrite
			default:
				n += int(m)
			}
		}
		return true
	}); err != nil {
		return n, err
	}
	if werr != nil {
		return n, &os.PathError{Op: "write", Path: of.Name(), Err: werr}
	}
	return n, nil
}
