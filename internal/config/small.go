package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// The small TOML files beside system.toml — a fleet adapter's, the
// watcher's — share the reading, the strict decoding and the error below.

// FileError is an unusable configuration file other than system.toml; it
// wraps ErrInvalid (the command line's exit code 3) and the problem.
type FileError struct {
	File string
	Err  error
}

func (e *FileError) Error() string { return e.File + ": " + e.Err.Error() }

// Unwrap returns ErrInvalid and the problem.
func (e *FileError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// ReadSmall reads the file at path, which must not be larger than max
// bytes (a larger one is a *FileError). An error opening it is returned
// as it is, so that errors.Is(err, fs.ErrNotExist) works.
func ReadSmall(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > max {
		return nil, &FileError{path, fmt.Errorf("larger than %d bytes", max)}
	}
	return b, nil
}

// DecodeStrict decodes data into v strictly (a key v has no field for is an
// error), for the small TOML files of the fleet adapters and the watcher.
// Its errors are one line that names the line: "line 3: unknown key a.b".
func DecodeStrict(data []byte, v any) error {
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case errors.As(err, &strict) && len(strict.Errors) > 0:
		e := strict.Errors[0]
		line, _ := e.Position()
		return fmt.Errorf("line %d: unknown key %s", line, strings.Join(e.Key(), "."))
	case errors.As(err, &de):
		line, _ := de.Position()
		return fmt.Errorf("line %d: %s", line, strings.TrimPrefix(de.Error(), "toml: "))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "toml: "))
}
