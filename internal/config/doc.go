package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Doc is a small TOML file decoded strictly by DecodeFile. It remembers
// where each key and value is written, so that a check made after decoding
// can name the line and column of the value it refuses (Doc.Errorf).
type Doc struct {
	file string
	ix   *index
}

// DecodeFile decodes data, the content of file, into v strictly: a key v
// has no field for and a value of the wrong type are errors, as is a file
// of more than MaxKeys keys. Every error is an *Error ("file:line:col:
// what") that wraps ErrInvalid, like system.toml's. It is DecodeStrict for
// the files whose errors must name a column (the state configuration).
func DecodeFile(file string, data []byte, v any) (*Doc, error) {
	if len(data) > MaxFileSize {
		return nil, tooLarge(file)
	}
	ix := buildIndex(data)
	if len(ix.order) > MaxKeys {
		return nil, invalid(file, ix.key(ix.order[MaxKeys]...), fmt.Sprintf("too many keys: the limit is %d", MaxKeys), "", nil)
	}
	dec := toml.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) && len(strict.Errors) > 0 {
			e := &strict.Errors[0]
			line, col := e.Position()
			return nil, invalid(file, place{line: line, col: col}, displayPath(e.Key())+": unknown key", "", strict)
		}
		return nil, decodeError(file, ix, err)
	}
	return &Doc{file: file, ix: ix}, nil
}

// File returns the file name the document was decoded as.
func (d *Doc) File() string { return d.file }

// Has reports whether the document writes the key path.
func (d *Doc) Has(path ...string) bool { return d.ix.has(path...) }

// Errorf returns an *Error wrapping ErrInvalid placed at the value of the
// key path (or, if the value is not written, its key or nearest written
// ancestor; no place if none). The message is prefixed with the key as it
// is written in TOML ("persist[1].path: ..."); array elements are named by
// Elem. An empty path gives a message for the whole file.
func (d *Doc) Errorf(path []string, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if len(path) > 0 {
		msg = displayPath(path) + ": " + msg
	}
	return invalid(d.file, d.ix.value(path...), msg, "", nil)
}

// Elem is the path part of array element i (for Doc.Errorf and Doc.Has).
func Elem(i int) string { return elemPart(i) }
