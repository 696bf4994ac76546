// Package bls reads what systemd-boot reads on the ESP, by the Boot Loader
// Specification and systemd-boot's own rules: the names of type #1 entry
// files with a boot counter ("+LEFT[-DONE]" before ".conf"), the key-value
// lines of an entry and of loader/loader.conf, the version comparison of the
// UAPI version format specification, the menu order (entries without tries
// left last, then sort-key, machine-id and version, then the entry id,
// newest first) and the glob patterns that select the default entry.
//
// Both the systemd-boot flow and the simulator's model of systemd-boot use
// it; docs/boot-flows.md gives the rules. Entry files and loader.conf are
// untrusted input: they are read with a size limit (MaxFile).
package bls

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// MaxFile bounds an entry file or loader.conf.
const MaxFile = 64 << 10

// Ext is the file name extension of a type #1 entry.
const Ext = ".conf"

// ErrTooLarge is returned for a file larger than MaxFile.
var ErrTooLarge = errors.New("larger than 64 KiB")

// Name is the file name of a type #1 entry with its boot counter.
type Name struct {
	File string // the file name, e.g. "tandem-7-b+2-1.conf"
	Stem string // the name without the counter and ".conf", e.g. "tandem-7-b"
	// Left and Done are the counter's tries left and tries done; both are
	// -1 when the name has no counter (a good entry). Left 0 is a bad entry.
	Left, Done int
}

// maxCount is the largest counter value systemd-boot accepts (INT_MAX).
const maxCount = 1<<31 - 1

// ParseName reads an entry file name as systemd-boot does: a name that
// ends in ".conf" (any case) is an entry; its counter is the text after the
// last "+" when that is digits, optionally "-" and digits, and then exactly
// ".conf". Any other "+" text is part of the stem.
func ParseName(file string) (Name, bool) {
	if len(file) <= len(Ext) || !strings.EqualFold(file[len(file)-len(Ext):], Ext) {
		return Name{}, false
	}
	n := Name{File: file, Stem: file[:len(file)-len(Ext)], Left: -1, Done: -1}
	plus := strings.LastIndexByte(file, '+')
	if plus < 0 {
		return n, true
	}
	rest := file[plus+1:]
	left, rest, ok := number(rest)
	if !ok {
		return n, true
	}
	done := 0
	if strings.HasPrefix(rest, "-") {
		if done, rest, ok = number(rest[1:]); !ok {
			return n, true
		}
	}
	if rest != Ext {
		return n, true
	}
	n.Stem, n.Left, n.Done = file[:plus], left, done
	return n, true
}

// number parses the leading decimal digits of s (at least one, at most maxCount).
func number(s string) (int, string, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, s, false
	}
	v, err := strconv.ParseUint(s[:i], 10, 63)
	if err != nil || v > maxCount {
		return 0, s, false
	}
	return int(v), s[i:], true
}

// Counted reports whether the name carries a boot counter.
func (n Name) Counted() bool { return n.Left >= 0 }

// ID is the entry id systemd-boot matches and sorts by: the file name in
// lower case, counter included.
func (n Name) ID() string { return strings.ToLower(n.File) }

// Next is the name systemd-boot renames a counted entry to before it boots
// it: one try less (never below 0), one try more done.
func (n Name) Next() string {
	return CountedName(n.Stem, max(n.Left-1, 0), min(n.Done+1, maxCount))
}

// Good is the name of the entry once it is blessed (systemd-bless-boot good).
func (n Name) Good() string { return n.Stem + Ext }

// Bad is the name of the entry once it is marked bad (systemd-bless-boot bad):
// no tries left, the tries done kept.
func (n Name) Bad() string { return CountedName(n.Stem, 0, max(n.Done, 0)) }

// CountedName returns the file name of an entry with tries left and done
// (done < 0: the short form "+LEFT").
func CountedName(stem string, left, done int) string {
	if done < 0 {
		return fmt.Sprintf("%s+%d%s", stem, left, Ext)
	}
	return fmt.Sprintf("%s+%d-%d%s", stem, left, done, Ext)
}

// Fields are the key-value lines of an entry or of loader.conf.
type Fields []Field

// Field is one key-value line.
type Field struct{ Key, Value string }

// ParseFields reads key-value lines as systemd-boot does: lines end at "\n"
// or "\r"; leading and trailing blanks (space, tab) are dropped; empty lines,
// lines starting with "#" and lines without a value are skipped; the key
// ends at the first blank, the value starts after the blanks that follow;
// a value in double quotes on a line ending in a double quote is unquoted.
// The text ends at the first NUL, as a C string does.
func ParseFields(b []byte) (Fields, error) {
	if len(b) > MaxFile {
		return nil, ErrTooLarge
	}
	s := string(b)
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	var fs Fields
	for _, line := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		line = strings.Trim(line, " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.IndexAny(line, " \t")
		if i < 0 {
			continue
		}
		key, value := line[:i], strings.TrimLeft(line[i:], " \t")
		if len(value) >= 2 && value[0] == '"' && line[len(line)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		fs = append(fs, Field{key, value})
	}
	return fs, nil
}

// Last returns the value of the last line with key ("" if none).
func (fs Fields) Last(key string) string {
	v := ""
	for _, f := range fs {
		if f.Key == key {
			v = f.Value
		}
	}
	return v
}

// All returns the values of every line with key, in order.
func (fs Fields) All(key string) []string {
	var vs []string
	for _, f := range fs {
		if f.Key == key {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// Entry is a type #1 entry as systemd-boot reads it.
type Entry struct {
	Name
	Title, Version, SortKey, MachineID string
	// Linux or EFI is the program the entry starts (a path on the ESP);
	// an entry with neither is not an entry.
	Linux, EFI string
	Initrd     []string
	Options    string // every options line, joined by one space
}

// ParseEntry reads an entry file's content.
func ParseEntry(n Name, b []byte) (Entry, error) {
	fs, err := ParseFields(b)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Name: n, Title: fs.Last("title"), Version: fs.Last("version"), SortKey: fs.Last("sort-key"),
		MachineID: fs.Last("machine-id"), Initrd: fs.All("initrd"), Options: strings.Join(fs.All("options"), " ")}
	// The last of linux and efi decides what the entry starts.
	for _, f := range fs {
		switch f.Key {
		case "linux":
			e.Linux, e.EFI = f.Value, ""
		case "efi":
			e.EFI, e.Linux = f.Value, ""
		}
	}
	return e, nil
}

// Program returns the program the entry starts ("" when it starts none).
func (e Entry) Program() string { return e.Linux + e.EFI }

// LoaderDefault returns the default entry pattern of loader.conf (lower
// case, "" when it sets none). The last "default" line wins; a value that
// starts with "@" other than "@saved" is ignored, as systemd-boot does.
func LoaderDefault(b []byte) (string, error) {
	fs, err := ParseFields(b)
	if err != nil {
		return "", err
	}
	def := ""
	for _, v := range fs.All("default") {
		if !strings.HasPrefix(v, "@") || strings.EqualFold(v, "@saved") {
			def = v
		}
	}
	return strings.ToLower(def), nil
}

// Match reports whether an entry id matches a default pattern (both lower
// case): "*" matches any run of characters, "?" one character, and "[…]" a
// class, as systemd-boot's efi_fnmatch does. An invalid pattern matches
// nothing.
func Match(pattern, id string) bool {
	ok, err := path.Match(pattern, id)
	return err == nil && ok
}

// Compare orders two entries as systemd-boot's menu does; a negative result
// puts a first. Entries without tries left go last; then entries with a
// sort-key come first, ordered by sort-key, machine-id and version (newest
// first); then by id, newest first; then, for counted entries with the same
// id, more tries left first, then fewer tries done.
func Compare(a, b Entry) int {
	if r := cmpBool(a.Left == 0, b.Left == 0); r != 0 {
		return r
	}
	if r := cmpBool(a.SortKey == "", b.SortKey == ""); r != 0 {
		return r
	}
	if a.SortKey != "" {
		if r := strings.Compare(a.SortKey, b.SortKey); r != 0 {
			return r
		}
		if r := strings.Compare(a.MachineID, b.MachineID); r != 0 {
			return r
		}
		if r := -CompareVersions(a.Version, b.Version); r != 0 {
			return r
		}
	}
	if r := -CompareVersions(a.ID(), b.ID()); r != 0 {
		return r
	}
	if a.Left < 0 || b.Left < 0 {
		return 0
	}
	if r := -cmpInt(a.Left, b.Left); r != 0 {
		return r
	}
	return cmpInt(a.Done, b.Done)
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
