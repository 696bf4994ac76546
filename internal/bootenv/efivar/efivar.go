// Package efivar encodes and decodes the files of Linux's efivarfs
// (/sys/firmware/efi/efivars), as used to talk to systemd-boot through its
// Loader* variables (e.g. LoaderEntryOneShot, LoaderEntryDefault).
//
// A variable is the file "<Name>-<vendor GUID>" whose content is the 32-bit
// attribute mask (little-endian) followed by the raw value. systemd writes
// its variables with NON_VOLATILE|BOOTSERVICE_ACCESS|RUNTIME_ACCESS (0x7) in
// a single write, and writes strings as UTF-16LE followed by one NUL
// character (two zero bytes); writing a zero-length value deletes the
// variable. Non-standard variables are created immutable (chattr +i) by
// efivarfs, so a writer must clear that flag first; that, and the file I/O,
// is left to the caller.
package efivar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf16"
)

// VendorLoader is the vendor GUID of systemd-boot's Loader* variables.
const VendorLoader = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// Attribute bits (UEFI specification, EFI_VARIABLE_*).
const (
	AttrNonVolatile       = 0x1
	AttrBootserviceAccess = 0x2
	AttrRuntimeAccess     = 0x4
	// DefaultAttrs is what systemd uses for its variables.
	DefaultAttrs = AttrNonVolatile | AttrBootserviceAccess | AttrRuntimeAccess
)

// knownAttrs are the attribute bits UEFI 2.10 defines (0x1 to 0x80).
const knownAttrs = 0xff

// MaxSize is the largest efivarfs file (attributes included) Decode accepts.
const MaxSize = 64 << 10

var (
	// ErrFormat reports a file shorter than the attributes or with
	// attribute bits UEFI does not define.
	ErrFormat = errors.New("efivar: invalid variable file")
	// ErrTooLarge reports a file larger than MaxSize.
	ErrTooLarge = errors.New("efivar: variable file too large")
	// ErrString reports a value that is not a UTF-16LE string.
	ErrString = errors.New("efivar: invalid UTF-16 string")
)

// FileName returns the efivarfs file name of the variable name with the
// given vendor GUID, e.g. "LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f".
func FileName(name, vendor string) string {
	return name + "-" + vendor
}

// Encode returns the efivarfs file content for attrs and value.
func Encode(attrs uint32, value []byte) []byte {
	b := make([]byte, 4, 4+len(value))
	binary.LittleEndian.PutUint32(b, attrs)
	return append(b, value...)
}

// Decode splits efivarfs file content into attributes and value. The value
// shares b's memory.
func Decode(b []byte) (attrs uint32, value []byte, err error) {
	if len(b) > MaxSize {
		return 0, nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(b), MaxSize)
	}
	if len(b) < 4 {
		return 0, nil, fmt.Errorf("%w: %d bytes, attributes need 4", ErrFormat, len(b))
	}
	attrs = binary.LittleEndian.Uint32(b)
	if attrs&^knownAttrs != 0 {
		return 0, nil, fmt.Errorf("%w: unknown attribute bits %#x", ErrFormat, attrs&^knownAttrs)
	}
	return attrs, b[4:], nil
}

// EncodeString returns s as UTF-16LE with a terminating NUL character, as
// systemd stores strings. Invalid UTF-8 in s is encoded as U+FFFD. s should
// not contain NUL: DecodeString rejects a NUL before the terminator.
func EncodeString(s string) []byte {
	u := make([]uint16, 0, len(s)+1)
	for _, r := range s {
		u = utf16.AppendRune(u, r)
	}
	u = append(u, 0)
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// DecodeString decodes a UTF-16LE value. A single terminating NUL character
// is removed if present (it may be missing). It returns ErrString for an odd
// length, an unpaired surrogate or a NUL before the end.
func DecodeString(value []byte) (string, error) {
	if len(value)%2 != 0 {
		return "", fmt.Errorf("%w: odd length %d", ErrString, len(value))
	}
	u := make([]uint16, len(value)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(value[2*i:])
	}
	if len(u) > 0 && u[len(u)-1] == 0 {
		u = u[:len(u)-1]
	}
	rs := make([]rune, 0, len(u))
	for i := 0; i < len(u); i++ {
		c := rune(u[i])
		switch {
		case c == 0:
			return "", fmt.Errorf("%w: NUL at character %d", ErrString, i)
		case utf16.IsSurrogate(c):
			if i+1 == len(u) {
				return "", fmt.Errorf("%w: unpaired surrogate %#04x at character %d", ErrString, c, i)
			}
			r := utf16.DecodeRune(c, rune(u[i+1]))
			if r == '\uFFFD' {
				return "", fmt.Errorf("%w: unpaired surrogate %#04x at character %d", ErrString, c, i)
			}
			rs = append(rs, r)
			i++
		default:
			rs = append(rs, c)
		}
	}
	return string(rs), nil
}
