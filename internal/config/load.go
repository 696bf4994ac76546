// Package config loads tandem's system configuration, /etc/tandem/system.toml.
//
// Loading is strict: the file is limited to MaxFileSize, unknown keys and
// wrong types are errors, and the result is validated after defaults are
// applied, so that the rest of tandem can trust every field of a Config.
// Every error is one line that names the file and, when the problem has a
// place in the file, its line and column (see Error). The reference for the
// file format is docs/configuration.md.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// MaxFileSize is the largest configuration file Load and Parse accept.
const MaxFileSize = 1 << 20

// MaxKeys is the largest number of keys (table headers and keys, counted
// once each) a file may hold. Real files hold a few hundred; the bound keeps
// the decoder, whose duplicate-key check is quadratic in the keys of one
// table, fast on any file within MaxFileSize.
const MaxKeys = 10000

// Load reads, decodes, defaults and validates the configuration at path
// (DefaultPath when empty) under the root prefix root ("" or "/" for the
// running system). The returned Config has File set to the host path read.
//
// A file that cannot be read gives an *Error that wraps the *fs.PathError
// (errors.Is(err, fs.ErrNotExist) works); every other error wraps ErrInvalid.
func Load(root, path string) (*Config, error) {
	if path == "" {
		path = DefaultPath
	}
	file := hostPath(root, path)
	data, err := readFile(file)
	if err != nil {
		return nil, err
	}
	return Parse(file, data)
}

// hostPath places the device path under the root prefix.
func hostPath(root, path string) string {
	if root == "" || root == "/" {
		return path
	}
	return filepath.Join(root, path)
}

// readFile reads at most MaxFileSize bytes of file.
func readFile(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, readError(file, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, readError(file, err)
	}
	if len(data) > MaxFileSize {
		return nil, tooLarge(file)
	}
	return data, nil
}

// readError names the file once: "<file>: no such file or directory".
func readError(file string, err error) *Error {
	msg := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) {
		msg = pe.Err.Error()
	}
	return &Error{File: file, Msg: msg, errs: []error{err}}
}

func tooLarge(file string) *Error {
	return invalid(file, place{}, fmt.Sprintf("file is larger than the limit of %d bytes (1 MiB)", MaxFileSize), "", nil)
}

// Parse decodes, defaults and validates a configuration held in data; file
// names it in errors and becomes Config.File. Every error wraps ErrInvalid.
func Parse(file string, data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, tooLarge(file)
	}
	ix := buildIndex(data)
	if len(ix.order) > MaxKeys {
		return nil, invalid(file, ix.key(ix.order[MaxKeys]...), fmt.Sprintf("too many keys: the limit is %d", MaxKeys), "", nil)
	}
	cfg := &Config{}
	if err := decode(data, cfg); err != nil {
		return nil, decodeError(file, ix, err)
	}
	c := &checker{file: file, ix: ix, cfg: cfg}
	if err := c.run(); err != nil {
		return nil, err
	}
	cfg.File = file
	return cfg, nil
}

func decode(data []byte, cfg *Config) error {
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(cfg)
}

// decodeError turns a go-toml error into a one-line *Error.
func decodeError(file string, ix *index, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		return unknownKeyError(file, ix, strict)
	}
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return invalid(file, place{}, strings.TrimPrefix(err.Error(), "toml: "), "", err)
	}
	line, col := de.Position()
	path := ix.byOffset[ix.offset(line, col)]
	if path == nil {
		path = de.Key()
	}
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	return invalid(file, place{line: line, col: col}, decodeMessage(msg, path), "", err)
}

// decodeMessage words a go-toml message: type mismatches in TOML terms and
// with the full key, syntax errors as such.
func decodeMessage(msg string, path []string) string {
	switch {
	case typeMismatch.MatchString(msg):
		return displayPath(path) + ": " + typeMessage(msg)
	case strings.HasPrefix(msg, "cannot ") && len(path) > 0:
		return displayPath(path) + ": " + msg
	default:
		return "invalid TOML: " + msg
	}
}

// unknownKeyError reports the first unknown key in the file. go-toml's
// strict mode says that there is one; the index knows its full path, also
// inside inline tables, where go-toml's key is partial.
func unknownKeyError(file string, ix *index, strict *toml.StrictMissingError) error {
	if path := firstUnknownKey(ix); path != nil {
		return invalid(file, ix.key(path...), unknownKeyMessage(path), "", strict)
	}
	if len(strict.Errors) == 0 {
		return invalid(file, place{}, "unknown key", "", strict)
	}
	e := &strict.Errors[0]
	line, col := e.Position()
	return invalid(file, place{line: line, col: col}, unknownKeyMessage(e.Key()), "", strict)
}

// typeMismatch matches go-toml's message for a value of the wrong type.
var typeMismatch = regexp.MustCompile(`^cannot decode TOML (.+) into (?:struct field \S+ of type )?(.+)$`)

// typeMessage rewrites a go-toml type mismatch in TOML words.
func typeMessage(msg string) string {
	m := typeMismatch.FindStringSubmatch(msg)
	return fmt.Sprintf("expected %s, found %s", tomlType(m[2]), m[1])
}

// tomlType names a Go type of the data model the way the file spells it.
func tomlType(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "int":
		return "an integer"
	case goType == "[]string":
		return "an array of strings"
	case goType == "map[string]string":
		return "a table of strings"
	case goType == "map[string]int":
		return "a table of integers"
	default:
		return "a table"
	}
}

// Keys of each table of the data model, in declaration order.
var (
	configKeys   = tomlKeys(reflect.TypeFor[Config]())
	slotKeys     = tomlKeys(reflect.TypeFor[Slot]())
	groupKeys    = tomlKeys(reflect.TypeFor[Group]())
	bootFlowKeys = tomlKeys(reflect.TypeFor[BootFlow]())
)

func tomlKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// firstUnknownKey returns the first key path, in document order, that the
// data model does not have.
func firstUnknownKey(ix *index) []string {
	for _, path := range ix.order {
		if !knownPath(path) {
			return path
		}
	}
	return nil
}

// knownPath reports whether path is a key of the data model. Names of
// slots, groups and aliases and the keys of partitions and entries are free.
func knownPath(path []string) bool {
	switch {
	case len(path) == 1:
		return slices.Contains(configKeys, path[0])
	case path[0] == "slots":
		return len(path) == 2 || len(path) == 3 && slices.Contains(slotKeys, path[2])
	case path[0] == "groups":
		return len(path) == 2 ||
			len(path) == 3 && slices.Contains(groupKeys, path[2]) ||
			len(path) == 4 && path[2] == "slots"
	case path[0] == "boot-flow":
		return len(path) == 2 && slices.Contains(bootFlowKeys, path[1]) ||
			len(path) == 3 && (path[1] == "partitions" || path[1] == "entries")
	}
	return false
}

// validKeys returns the keys allowed in the table at path, or nil when the
// table's keys are names.
func validKeys(table []string) []string {
	switch {
	case len(table) == 0:
		return configKeys
	case len(table) == 2 && table[0] == "slots":
		return slotKeys
	case len(table) == 2 && table[0] == "groups":
		return groupKeys
	case len(table) == 1 && table[0] == "boot-flow":
		return bootFlowKeys
	}
	return nil
}

func unknownKeyMessage(path []string) string {
	if len(path) == 0 {
		return "unknown key"
	}
	msg := displayPath(path) + ": unknown key"
	if keys := validKeys(path[:len(path)-1]); keys != nil {
		msg += " (valid here: " + strings.Join(keys, ", ") + ")"
	}
	return msg
}
