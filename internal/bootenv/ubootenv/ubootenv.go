// Package ubootenv reads and writes U-Boot environment images, as stored in
// flash, on an eMMC partition or in a file and as handled by U-Boot itself,
// by libubootenv's fw_printenv/fw_setenv and by mkenvimage.
//
// # Layout
//
// An image has a fixed size (CONFIG_ENV_SIZE; the third field of a
// fw_env.config line). Single layout:
//
//	offset 0: CRC32 (IEEE, little-endian) of the data area
//	offset 4: data area, to the end of the image
//
// Redundant layout (two copies, each with this layout):
//
//	offset 0: CRC32 (IEEE, little-endian) of the data area
//	offset 4: flag byte (not covered by the CRC)
//	offset 5: data area, to the end of the image
//
// The data area holds "name=value\x00" entries followed by an empty entry
// ("\x00"), then padding up to the end. The CRC covers the whole data area,
// padding included. The padding is not otherwise interpreted and differs
// between writers: U-Boot's env export zero-fills, mkenvimage fills with 0xff
// unless given -p, and fw_setenv from libubootenv 0.3.2 does not initialise it
// at all (its buffer is reused heap memory, so stale bytes appear after the
// terminator). Decode therefore ignores everything after the terminating empty
// entry; Encode zero-fills like U-Boot, and EncodePad takes the fill byte
// (0xff to reproduce mkenvimage byte for byte). Only little-endian CRCs are
// supported (mkenvimage -b is not).
//
// # Flags
//
// With redundant copies each save goes to the other copy, whose flag becomes
// the current copy's flag plus one (U-Boot's env_export; libubootenv for
// files, block devices, NAND and UBI; mkenvimage -r always writes 1). The copy to use is chosen as in
// U-Boot's env_import_redund and libubootenv's libuboot_load: a copy counts
// only if its CRC is good; of two good copies, 0 beats 255 and 255 beats 0
// (the counter wrapped), otherwise the larger flag wins, and equal flags pick
// copy 0. This is not general serial-number arithmetic: 200 beats 0.
// (U-Boot's NOR "boolean" flags, 1 active / 0 obsolete, are a different
// scheme and are not supported here.)
//
// # Names and values
//
// Names must be non-empty and may not contain '=' or NUL. They also may not
// start with '#', space or tab, because U-Boot's himport_r skips leading
// blanks and treats such an entry as a comment. Values may not contain NUL.
// An empty value is stored as "name=" (fw_setenv does the same); note that
// U-Boot's importer treats "name=" as "delete name". Backslashes are stored
// as is, as fw_setenv and mkenvimage do; U-Boot's importer reads a backslash
// as an escape for the next character, so avoid them in values that U-Boot
// must read. The special ".flags" variable is an ordinary variable here.
package ubootenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
)

const (
	// MinSize is the smallest image size: a redundant header and a one-byte
	// data area holding just the terminator.
	MinSize = 6
	// MaxSize is the largest image size Decode and Encode accept.
	MaxSize = 4 << 20
)

var (
	// ErrCRC reports an image whose CRC does not match its data area.
	ErrCRC = errors.New("ubootenv: bad crc")
	// ErrFormat reports an image with a good CRC but invalid content.
	ErrFormat = errors.New("ubootenv: invalid environment data")
	// ErrTooLarge reports variables that do not fit in the image size.
	ErrTooLarge = errors.New("ubootenv: variables do not fit in image")
	// ErrNoValidCopy reports that neither redundant copy has a good CRC.
	ErrNoValidCopy = errors.New("ubootenv: no valid environment copy")
	// ErrSize reports an image size outside [MinSize, MaxSize] or two
	// redundant copies of different sizes.
	ErrSize = errors.New("ubootenv: invalid image size")
	// ErrInvalid reports a name or value that cannot be stored.
	ErrInvalid = errors.New("ubootenv: invalid variable")
)

type variable struct{ name, value string }

// Env is an ordered set of variables. The zero value is an empty environment
// ready to use.
type Env struct {
	vars []variable
}

// Get returns the value of the variable name and whether it is set.
func (e *Env) Get(name string) (string, bool) {
	if i := e.index(name); i >= 0 {
		return e.vars[i].value, true
	}
	return "", false
}

// Set sets name to value. An existing variable keeps its position; a new one
// is appended.
func (e *Env) Set(name, value string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("%w: value of %q contains NUL", ErrInvalid, name)
	}
	if i := e.index(name); i >= 0 {
		e.vars[i].value = value
		return nil
	}
	e.vars = append(e.vars, variable{name, value})
	return nil
}

// Delete removes the variable name if it is set.
func (e *Env) Delete(name string) {
	if i := e.index(name); i >= 0 {
		e.vars = append(e.vars[:i], e.vars[i+1:]...)
	}
}

// Map returns the variables as a map of name to value.
func (e *Env) Map() map[string]string {
	m := map[string]string{}
	for _, n := range e.Names() {
		m[n], _ = e.Get(n)
	}
	return m
}

// Names returns the variable names in order.
func (e *Env) Names() []string {
	names := make([]string, len(e.vars))
	for i, v := range e.vars {
		names[i] = v.name
	}
	return names
}

func (e *Env) index(name string) int {
	for i, v := range e.vars {
		if v.name == name {
			return i
		}
	}
	return -1
}

func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalid)
	case strings.ContainsAny(name, "=\x00"):
		return fmt.Errorf("%w: name %q contains '=' or NUL", ErrInvalid, name)
	case strings.ContainsRune("# \t", rune(name[0])):
		return fmt.Errorf("%w: name %q starts with '#' or a blank", ErrInvalid, name)
	}
	return nil
}

func headerSize(redundant bool) int {
	if redundant {
		return 5
	}
	return 4
}

func checkSize(n int) error {
	if n < MinSize || n > MaxSize {
		return fmt.Errorf("%w: %d bytes (want %d to %d)", ErrSize, n, MinSize, MaxSize)
	}
	return nil
}

// crcOK reports whether the CRC of img matches its data area.
func crcOK(img []byte, redundant bool) bool {
	return binary.LittleEndian.Uint32(img) == crc32.ChecksumIEEE(img[headerSize(redundant):])
}

// Decode checks the CRC of an image and parses its variables. flag is the
// flag byte of a redundant image and 0 for a single one.
func Decode(img []byte, redundant bool) (env *Env, flag byte, err error) {
	if err := checkSize(len(img)); err != nil {
		return nil, 0, err
	}
	if !crcOK(img, redundant) {
		return nil, 0, ErrCRC
	}
	if redundant {
		flag = img[4]
	}
	env, err = parseData(img[headerSize(redundant):])
	if err != nil {
		return nil, 0, err
	}
	return env, flag, nil
}

func parseData(data []byte) (*Env, error) {
	e := &Env{}
	seen := map[string]bool{}
	for p := 0; ; {
		n := bytes.IndexByte(data[p:], 0)
		if n < 0 {
			return nil, fmt.Errorf("%w: no terminator after offset %d", ErrFormat, p)
		}
		if n == 0 {
			return e, nil
		}
		entry := string(data[p : p+n])
		name, value, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("%w: entry at offset %d has no '='", ErrFormat, p)
		}
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("%w: entry at offset %d: %v", ErrFormat, p, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: duplicate variable %q", ErrFormat, name)
		}
		seen[name] = true
		e.vars = append(e.vars, variable{name, value})
		p += n + 1
	}
}

// Encode returns an image of the given size holding env, zero-padded as
// U-Boot's own env export does. flag is written only in the redundant
// layout. It returns ErrSize for an unsupported size and ErrTooLarge if the
// variables do not fit.
func Encode(env *Env, size int, redundant bool, flag byte) ([]byte, error) {
	return EncodePad(env, size, redundant, flag, 0)
}

// EncodePad is Encode with pad as the fill byte after the terminator.
// EncodePad(env, size, redundant, 1, 0xff) is byte-identical to
// `mkenvimage -s size [-r]` for the same variables in the same order.
func EncodePad(env *Env, size int, redundant bool, flag, pad byte) ([]byte, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	h := headerSize(redundant)
	img := make([]byte, h, size)
	for _, v := range env.vars {
		img = append(img, v.name...)
		img = append(img, '=')
		img = append(img, v.value...)
		img = append(img, 0)
	}
	img = append(img, 0)
	if len(img) > size {
		return nil, fmt.Errorf("%w: need %d bytes, image has %d", ErrTooLarge, len(img), size)
	}
	for len(img) < size {
		img = append(img, pad)
	}
	if redundant {
		img[4] = flag
	}
	binary.LittleEndian.PutUint32(img, crc32.ChecksumIEEE(img[h:]))
	return img, nil
}

// NextFlag returns the flag for the copy written after a copy with flag f.
func NextFlag(f byte) byte { return f + 1 }

// newer reports whether flag b is newer than flag a under U-Boot's rule.
func newer(b, a byte) bool {
	switch {
	case a == 0xff && b == 0:
		return true
	case b == 0xff && a == 0:
		return false
	}
	return b > a
}

// SelectRedundant picks the current copy of a redundant environment from its
// two copies a (index 0) and b (index 1) by U-Boot's rule (see the package
// documentation) and decodes it. It returns ErrNoValidCopy if neither CRC is
// good. If the chosen copy has a good CRC but invalid content, it returns
// that ErrFormat error rather than falling back to the other copy, because
// U-Boot would not fall back either.
func SelectRedundant(a, b []byte) (index int, env *Env, flag byte, err error) {
	// Each copy is judged alone: a missing, short or torn copy is just not
	// valid, as U-Boot and libubootenv treat it.
	valid := func(img []byte) bool { return checkSize(len(img)) == nil && crcOK(img, true) }
	okA, okB := valid(a), valid(b)
	switch {
	case !okA && !okB:
		return -1, nil, 0, ErrNoValidCopy
	case okA && okB:
		if newer(b[4], a[4]) {
			index = 1
		}
	case okB:
		index = 1
	}
	env, flag, err = Decode([][]byte{a, b}[index], true)
	if err != nil {
		return -1, nil, 0, fmt.Errorf("%w (copy %d)", err, index)
	}
	return index, env, flag, nil
}
