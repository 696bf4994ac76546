// Package filetrust decides whether a file is one that root may run or load
// as trusted: a hook program, a trusted public key or certificate. Such a
// file, and the directory it sits in, must be writable by nobody but root
// and the user tandem runs as; otherwise any local user who can write it
// could run code as root or make the device accept their bundles.
//
// The rules (docs/hooks.md, docs/signing.md):
//
//   - the file is owned by root (uid 0) or by the user running tandem;
//   - it is not writable by its group or by others;
//   - the directory it is in is owned by root or that user, and is not
//     writable by its group or others unless it has the sticky bit (as /tmp
//     has: there, only a file's owner can remove or rename it);
//   - a symbolic link is followed, and the rules apply to the link itself
//     (its owner and directory: whoever may change a link chooses the file),
//     to every link on the way and to the file it ends at.
//
// Directories further up are not checked.
package filetrust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrUntrusted is the class of every refusal of Check.
var ErrUntrusted = errors.New("not trusted")

// maxLinks bounds the symbolic links Check follows (as the kernel's 40).
const maxLinks = 40

// Check applies the rules of the package documentation to the host path
// name and returns the path of the file it ends at (after symbolic links).
// An error wraps ErrUntrusted (or the error of a failed Lstat) and is one
// line naming the path that breaks a rule and how.
func Check(name string) (string, error) {
	p := name
	for range maxLinks {
		fi, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		if err := owner(p, fi); err != nil {
			return "", err
		}
		if err := dir(filepath.Dir(p)); err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if perm := fi.Mode().Perm(); perm&0o022 != 0 {
				return "", fmt.Errorf("%w: %s is writable by its group or others (mode %04o); chmod go-w it", ErrUntrusted, p, perm)
			}
			return p, nil
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	return "", fmt.Errorf("%w: %s: more than %d symbolic links", ErrUntrusted, name, maxLinks)
}

// owner checks that fi (of path p) belongs to root or the running user.
func owner(p string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: %s: no owner information", ErrUntrusted, p)
	}
	if uid := int(st.Uid); uid != 0 && uid != os.Geteuid() {
		return fmt.Errorf("%w: %s is owned by uid %d, not by root or uid %d (tandem's user)", ErrUntrusted, p, uid, os.Geteuid())
	}
	return nil
}

// dir checks the directory a file or link is in.
func dir(d string) error {
	fi, err := os.Stat(d)
	if err != nil {
		return err
	}
	if err := owner(d, fi); err != nil {
		return err
	}
	if perm := fi.Mode(); perm.Perm()&0o022 != 0 && perm&fs.ModeSticky == 0 {
		return fmt.Errorf("%w: directory %s is writable by its group or others (mode %04o); chmod go-w it", ErrUntrusted, d, perm.Perm())
	}
	return nil
}
