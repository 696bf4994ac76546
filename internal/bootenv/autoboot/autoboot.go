// Package autoboot reads and writes the Raspberry Pi autoboot.txt file, which
// the bootloader reads from the first FAT partition to choose the boot
// partition, and which with tryboot_a_b=1 implements A/B booting:
//
//	[all]
//	tryboot_a_b=1
//	boot_partition=2
//	[tryboot]
//	boot_partition=3
//
// The Raspberry Pi documentation limits autoboot.txt to 512 bytes and lists
// the [all], [none] and [tryboot] filters; MaxSize is therefore 512, and Parse
// and Set refuse anything larger so that the firmware never sees a truncated
// file.
//
// Parsing is line based and strict. A line is one of:
//
//   - blank (only spaces and tabs) or a comment (first non-blank byte '#'),
//     kept verbatim;
//   - a section header "[name]" with no surrounding blanks, kept verbatim, so
//     filters this package does not know (e.g. [pi4], [gpio4=1]) survive;
//   - "key=value" with a key of ASCII letters, digits and '_' and no blanks
//     around the '='; the value is the rest of the line, verbatim.
//
// Lines before the first header belong to the section named "". A section
// name may appear only once, and a key only once per section. Control
// characters other than tab (including '\r' and NUL) are rejected. Bytes
// always ends the last line with a newline; otherwise it reproduces the
// parsed text exactly.
package autoboot

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxSize is the largest autoboot.txt this package reads or writes.
const MaxSize = 512

var (
	// ErrTooLarge reports content larger than MaxSize.
	ErrTooLarge = errors.New("autoboot: file larger than 512 bytes")
	// ErrSyntax reports a line that cannot be parsed or a duplicate
	// section or key.
	ErrSyntax = errors.New("autoboot: syntax error")
	// ErrInvalid reports a section, key or value that Set cannot store.
	ErrInvalid = errors.New("autoboot: invalid setting")
	// ErrPartition reports a missing or out-of-range boot_partition.
	ErrPartition = errors.New("autoboot: invalid boot_partition")
)

// line is a blank line, a comment (key empty, raw verbatim) or a setting.
type line struct {
	raw        string
	key, value string
}

// group is a section header and the lines under it.
type group struct {
	name  string // "" for the lines before the first header
	lines []line
}

// File is a parsed autoboot.txt. The zero value is an empty file.
type File struct {
	groups []group // groups[0] is the unnamed preamble
}

// New returns the canonical A/B file: boot from allPartition normally and
// from tryPartition when the tryboot flag is set.
func New(allPartition, tryPartition int) *File {
	return &File{groups: []group{
		{},
		{name: "all", lines: []line{setting("tryboot_a_b", "1"), setting("boot_partition", strconv.Itoa(allPartition))}},
		{name: "tryboot", lines: []line{setting("boot_partition", strconv.Itoa(tryPartition))}},
	}}
}

func setting(key, value string) line {
	return line{raw: key + "=" + value, key: key, value: value}
}

// Parse parses the content of an autoboot.txt.
func Parse(b []byte) (*File, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	text := strings.TrimSuffix(string(b), "\n")
	f := &File{groups: []group{{}}}
	if len(b) == 0 {
		return f, nil
	}
	for i, raw := range strings.Split(text, "\n") {
		if err := f.parseLine(raw); err != nil {
			return nil, fmt.Errorf("%w: line %d: %s", ErrSyntax, i+1, err)
		}
	}
	if n := len(f.Bytes()); n > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes with final newline", ErrTooLarge, n)
	}
	return f, nil
}

func (f *File) parseLine(raw string) error {
	if i := strings.IndexFunc(raw, isControl); i >= 0 {
		return fmt.Errorf("control character %q", raw[i])
	}
	trimmed := strings.TrimLeft(raw, " \t")
	cur := &f.groups[len(f.groups)-1]
	switch {
	case trimmed == "" || trimmed[0] == '#':
		cur.lines = append(cur.lines, line{raw: raw})
	case raw[0] == '[':
		name, ok := strings.CutSuffix(raw[1:], "]")
		if !ok {
			return fmt.Errorf("section header %q does not end with ']'", raw)
		}
		if err := checkSection(name); err != nil {
			return err
		}
		if f.group(name) != nil {
			return fmt.Errorf("duplicate section [%s]", name)
		}
		f.groups = append(f.groups, group{name: name})
	default:
		key, value, ok := strings.Cut(raw, "=")
		if !ok {
			return fmt.Errorf("%q is not key=value", raw)
		}
		if err := checkKey(key); err != nil {
			return err
		}
		if cur.index(key) >= 0 {
			return fmt.Errorf("duplicate key %q", key)
		}
		cur.lines = append(cur.lines, line{raw: raw, key: key, value: value})
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

func checkSection(name string) error {
	if name == "" || strings.ContainsAny(name, "[]") || strings.TrimSpace(name) != name || strings.IndexFunc(name, isControl) >= 0 {
		return fmt.Errorf("invalid section name %q", name)
	}
	return nil
}

func checkKey(key string) error {
	if key == "" || strings.IndexFunc(key, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_')
	}) >= 0 {
		return fmt.Errorf("invalid key %q", key)
	}
	return nil
}

func (f *File) group(name string) *group {
	for i := range f.groups {
		if f.groups[i].name == name {
			return &f.groups[i]
		}
	}
	return nil
}

func (g *group) index(key string) int {
	for i, l := range g.lines {
		if l.key == key {
			return i
		}
	}
	return -1
}

// Get returns the value of key in section (without brackets; "" for lines
// before the first header) and whether it is set.
func (f *File) Get(section, key string) (string, bool) {
	if s := f.group(section); s != nil && key != "" {
		if i := s.index(key); i >= 0 {
			return s.lines[i].value, true
		}
	}
	return "", false
}

// Set sets key to value in section, replacing the existing line in place.
// A new key goes after the last setting of its section, a new section at the
// end of the file. It fails with ErrInvalid for a bad section name, key or
// value and with ErrTooLarge if the file would exceed MaxSize; f is then
// unchanged.
func (f *File) Set(section, key, value string) error {
	if section != "" {
		if err := checkSection(section); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	if err := checkKey(key); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if strings.IndexFunc(value, isControl) >= 0 {
		return fmt.Errorf("%w: value %q contains a control character", ErrInvalid, value)
	}
	next := f.clone()
	s := next.group(section)
	if s == nil {
		next.groups = append(next.groups, group{name: section})
		s = &next.groups[len(next.groups)-1]
	}
	if i := s.index(key); i >= 0 {
		s.lines[i] = setting(key, value)
	} else {
		at := 0
		for i, l := range s.lines {
			if l.key != "" {
				at = i + 1
			}
		}
		s.lines = append(s.lines[:at], append([]line{setting(key, value)}, s.lines[at:]...)...)
	}
	if n := len(next.Bytes()); n > MaxSize {
		return fmt.Errorf("%w: would be %d bytes", ErrTooLarge, n)
	}
	*f = *next
	return nil
}

// clone returns a deep copy of f that starts with the unnamed group (which a
// zero File lacks).
func (f *File) clone() *File {
	c := &File{groups: []group{{}}}
	for _, g := range f.groups {
		g.lines = append([]line(nil), g.lines...)
		if g.name == "" {
			c.groups[0] = g
		} else {
			c.groups = append(c.groups, g)
		}
	}
	return c
}

// Bytes returns the file content, each line ending in a newline.
func (f *File) Bytes() []byte {
	var b strings.Builder
	for _, s := range f.groups {
		if s.name != "" {
			b.WriteString("[" + s.name + "]\n")
		}
		for _, l := range s.lines {
			b.WriteString(l.raw + "\n")
		}
	}
	return []byte(b.String())
}

// Partitions returns boot_partition from [all] and from [tryboot] (0 if
// [tryboot] or its boot_partition is missing). Each present value must be a
// decimal number from 1 to 63; [all] must have one.
func (f *File) Partitions() (all, tryboot int, err error) {
	v, ok := f.Get("all", "boot_partition")
	if !ok {
		return 0, 0, fmt.Errorf("%w: missing in [all]", ErrPartition)
	}
	if all, err = partition(v); err != nil {
		return 0, 0, fmt.Errorf("%w in [all]", err)
	}
	if v, ok := f.Get("tryboot", "boot_partition"); ok {
		if tryboot, err = partition(v); err != nil {
			return 0, 0, fmt.Errorf("%w in [tryboot]", err)
		}
	}
	return all, tryboot, nil
}

func partition(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 63 || strconv.Itoa(n) != v {
		return 0, fmt.Errorf("%w: %q is not a number from 1 to 63", ErrPartition, v)
	}
	return n, nil
}
