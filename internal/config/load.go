// Package config loads tandem's system configuration, /etc/tandem/system.toml.
//
// Loading is strict: the file is limited to MaxFileSize, unknown keys and
// wrong types are errors, and the result is validated after defaults are
// applied, so that the rest of tandem can trust every field of a Config.
// Every error is one line that names the file and, when the problem has a
// place in the file, its line and column (see Error). The reference for the
// file format is docs/configuration.md.
//
// LoadSmall (ReadSmall, then the file's parse), DecodeStrict and FileError serve the
// smaller TOML files of the fleet adapters and the watcher the same way.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/tandem-ota/tandem/internal/bounded"
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
// Besides Parse's checks, Load resolves the slot paths and devices on the
// system under root (symbolic links, with absolute targets taken under root;
// hard links and device numbers) and refuses two slots that reach the same
// file or device, or a slot inside a directory slot, that way.
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
	if root == "" {
		root = "/"
	}
	return parse(file, data, root)
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
	data, err := bounded.ReadFile(file, MaxFileSize)
	switch {
	case bounded.IsTooLarge(err):
		return nil, tooLarge(file)
	case err != nil:
		return nil, readError(file, err)
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
// It reads no other file: slot paths are compared as written (Load also
// compares them as the system resolves them).
func Parse(file string, data []byte) (*Config, error) { return parse(file, data, "") }

// parse is Parse; a non-empty root also checks the slots against the
// file system under root.
func parse(file string, data []byte, root string) (*Config, error) {
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
	c := &checker{file: file, ix: ix, cfg: cfg, root: root}
	if err := c.run(); err != nil {
		return nil, err
	}
	cfg.File = file
	return cfg, nil
}
