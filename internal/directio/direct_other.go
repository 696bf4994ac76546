//go:build !linux

package directio

import (
	"errors"
	"os"
)

// open: direct I/O is used on Linux only; elsewhere files are read through
// the page cache.
func open(path string) (*os.File, bool, error) {
	f, err := os.Open(path)
	return f, false, err
}

// SetDirect: direct I/O is used on Linux only.
func SetDirect(_ *os.File, on bool) error {
	if on {
		return errors.New("direct I/O is used on Linux only")
	}
	return nil
}
