package wire

import (
	"errors"
	"testing"
)

var (
	errBad = errors.New("bad")
	errBig = errors.New("big")
)

func TestDecoder(t *testing.T) {
	d := &Decoder{B: []byte{1, 2, 0, 3, 0, 0, 0, 2, 0, 'h', 'i'}, Malformed: errBad, TooLarge: errBig}
	if v := d.U8(); v != 1 {
		t.Fatalf("U8 = %d", v)
	}
	if v := d.U16(); v != 2 {
		t.Fatalf("U16 = %d", v)
	}
	if v := d.U32(); v != 3 {
		t.Fatalf("U32 = %d", v)
	}
	if s := d.Str(2); s != "hi" || d.Err != nil || d.Off != len(d.B) {
		t.Fatalf("Str = %q, err %v, off %d", s, d.Err, d.Off)
	}
	if v := d.U64(); v != 0 || !errors.Is(d.Err, errBad) {
		t.Fatalf("U64 past the end = %d, err %v; want errBad", v, d.Err)
	}
}

// The first error sticks, and each kind wraps its sentinel.
func TestErrors(t *testing.T) {
	for name, c := range map[string]struct {
		b    []byte
		read func(*Decoder)
		want error
	}{
		"reserved":     {[]byte{0, 1}, func(d *Decoder) { d.Zero(2, "r") }, errBad},
		"string limit": {[]byte{3, 0, 'a', 'b', 'c'}, func(d *Decoder) { d.Str(2) }, errBig},
		"negative":     {[]byte{1}, func(d *Decoder) { d.Take(-1) }, errBad},
		"sticks":       {[]byte{3, 0}, func(d *Decoder) { d.Str(2); d.Fail("later") }, errBig},
	} {
		d := &Decoder{B: c.b, Malformed: errBad, TooLarge: errBig}
		c.read(d)
		if !errors.Is(d.Err, c.want) {
			t.Errorf("%s: err %v, want %v", name, d.Err, c.want)
		}
		if d.Take(0) != nil {
			t.Errorf("%s: Take after an error returned bytes", name)
		}
	}
}
