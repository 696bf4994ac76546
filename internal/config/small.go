package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/bounded"

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
	b, err := bounded.ReadFile(path, int64(max))
	if bounded.IsTooLarge(err) {
		return nil, &FileError{path, fmt.Errorf("larger than %d bytes", max)}
	}
	return b, err
}

// LoadSmall reads the small file at path (ReadSmall: at most max bytes)
// and hands its bytes to parse, the file's own decoding and checks; an
// error parse returns is a *FileError naming path. An error opening the
// file is returned as it is, so that errors.Is(err, fs.ErrNotExist) works.
func LoadSmall[T any](path string, max int, parse func([]byte) (T, error)) (T, error) {
	var zero T
	b, err := ReadSmall(path, max)
	if err != nil {
		return zero, err
	}
	v, err := parse(b)
	if err != nil {
		return zero, &FileError{path, err}
	}
	return v, nil
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

// Duration is a TOML string like "30s", "5m" or "12h" in the small files.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration; a negative one is an error.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q: want a duration like 30s, 5m or 12h", b)
	}
	if v < 0 {
		return fmt.Errorf("%q: negative duration", b)
	}
	d.Duration = v
	return nil
}

// MarshalText formats the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// CheckURL checks that s is an absolute http or https URL a client can
// connect to: a scheme, a host, a port from 1 to 65535 if it names one
// ("http://host:" names an empty one), and no user info (credentials go in
// their own keys). key names the setting in the error.
func CheckURL(key, s string) error {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return fmt.Errorf("%s is empty: want an http or https URL", key)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "":
		return fmt.Errorf("%s %q: want an http or https URL", key, s)
	case u.Hostname() == "":
		return fmt.Errorf("%s %q: no host", key, s)
	case u.User != nil:
		return fmt.Errorf("%s %q: no user info in the URL (use the token or certificate settings)", key, s)
	case strings.HasSuffix(u.Host, ":"):
		return fmt.Errorf("%s %q: empty port", key, s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%s %q: port %s: want 1 to 65535", key, s, p)
		}
	}
	return nil
}
