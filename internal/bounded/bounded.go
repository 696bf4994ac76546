// Package bounded reads files tandem does not control (configuration,
// /proc, trust files, a fleet client's tree) with an explicit size limit:
// a file over the limit is refused, never read whole.
package bounded

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// TooLargeError says that a file holds more than the limit allows.
type TooLargeError struct {
	Path  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: larger than %d bytes", e.Path, e.Limit)
}

// IsTooLarge reports whether err is (or wraps) a *TooLargeError.
func IsTooLarge(err error) bool {
	var t *TooLargeError
	return errors.As(err, &t)
}

// ReadFile reads the file at path, refusing one of more than limit bytes
// with a *TooLargeError. An error opening the file is returned as is (so
// that os.IsNotExist and friends work); a read error names the path.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, path, limit)
}

// Read reads r to its end, refusing more than limit bytes with a
// *TooLargeError naming name.
func Read(r io.Reader, name string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, &TooLargeError{Path: name, Limit: limit}
	}
	return b, nil
}
