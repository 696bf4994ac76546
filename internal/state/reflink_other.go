//go:build !linux

package state

import (
	"errors"
	"os"
)

// clone is not available: every file is copied.
func clone(dst, src *os.File) error { return errors.New("reflinks are a Linux feature here") }
