// Package wire decodes the little-endian fields of tandem's binary headers
// (bundles, patches): fixed-size integers, reserved fields that must be zero
// and length-prefixed strings. The first error sticks: after it every read
// returns zero values, so a parser reads on and checks Err once.
package wire

import (
	"encoding/binary"
	"fmt"
)

// Decoder reads fields from B at Off.
type Decoder struct {
	B   []byte
	Off int
	// Err is the first error; it wraps Malformed or TooLarge.
	Err error
	// Malformed and TooLarge are the format's sentinel errors.
	Malformed, TooLarge error
}

// Fail records a malformed field at the current offset.
func (d *Decoder) Fail(format string, args ...any) { d.record(d.Malformed, format, args...) }

// Over records a field above one of the format's limits.
func (d *Decoder) Over(format string, args ...any) { d.record(d.TooLarge, format, args...) }

func (d *Decoder) record(kind error, format string, args ...any) {
	if d.Err == nil {
		d.Err = fmt.Errorf("%w: %s at offset %d", kind, fmt.Sprintf(format, args...), d.Off)
	}
}

// Take returns the next n bytes (nil after an error or past the end).
func (d *Decoder) Take(n int) []byte {
	if d.Err != nil {
		return nil
	}
	if n < 0 || n > len(d.B)-d.Off {
		d.Fail("field of %d bytes runs past the header end", n)
		return nil
	}
	v := d.B[d.Off : d.Off+n]
	d.Off += n
	return v
}

// U8 reads one byte.
func (d *Decoder) U8() uint8 {
	if v := d.Take(1); v != nil {
		return v[0]
	}
	return 0
}

// U16 reads a little-endian uint16.
func (d *Decoder) U16() uint16 {
	if v := d.Take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

// U32 reads a little-endian uint32.
func (d *Decoder) U32() uint32 {
	if v := d.Take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

// U64 reads a little-endian uint64.
func (d *Decoder) U64() uint64 {
	if v := d.Take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

// Zero reads an n-byte reserved field, which must be all zero bytes.
func (d *Decoder) Zero(n int, what string) {
	for _, c := range d.Take(n) {
		if c != 0 {
			d.Fail("reserved field %s is not zero", what)
			return
		}
	}
}

// Str reads a string with a uint16 length of at most limit bytes.
func (d *Decoder) Str(limit int) string {
	n := int(d.U16())
	if n > limit {
		d.Over("string of %d bytes (limit %d)", n, limit)
		return ""
	}
	return string(d.Take(n))
}
