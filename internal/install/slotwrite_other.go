//go:build !linux

package install

import (
	"errors"

	"github.com/tandem-ota/tandem/internal/rootfs"
)

// setDirect: direct I/O is used on Linux only; elsewhere slots are written
// through the page cache.
func setDirect(_ rootfs.File, on bool) error {
	if on {
		return errors.New("direct I/O is used on Linux only")
	}
	return nil
}

// writeDirect is not used: setDirect never turns direct I/O on here.
func writeDirect(f rootfs.File, b []byte) (int, error) { return f.Write(b) }
