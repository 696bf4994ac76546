package autoboot

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse checks that Bytes reproduces every accepted file (adding at most
// a final newline) and that the result parses to the same file again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(canonical))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		out := p.Bytes()
		if !bytes.Equal(out, b) && !bytes.Equal(out, append(bytes.Clone(b), '\n')) {
			t.Fatalf("Bytes(Parse(b)) = %q, want %q", out, b)
		}
		if len(out) > MaxSize {
			t.Fatalf("Bytes is %d bytes, over MaxSize", len(out))
		}
		p2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Bytes(Parse(b))): %v", err)
		}
		if out2 := p2.Bytes(); !bytes.Equal(out2, out) {
			t.Fatalf("second round trip %q, want %q", out2, out)
		}
	})
}

// FuzzSet checks that a setting made with Set reads back with Get, both
// directly and after Bytes and Parse, and that partitions set through the
// API survive the same round trip.
func FuzzSet(f *testing.F) {
	f.Add("tryboot", "boot_partition", "3", 2, 3)
	f.Fuzz(func(t *testing.T, section, key, value string, all, try int) {
		file := New(all, try)
		before := file.Bytes()
		err := file.Set(section, key, value)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Set error %v is neither ErrInvalid nor ErrTooLarge", err)
			}
			if !bytes.Equal(file.Bytes(), before) {
				t.Fatalf("failed Set changed the file")
			}
			return
		}
		if v, ok := file.Get(section, key); !ok || v != value {
			t.Fatalf("Get = %q, %v; want %q", v, ok, value)
		}
		p, err := Parse(file.Bytes())
		if err != nil {
			t.Fatalf("Parse(Bytes()): %v\n%q", err, file.Bytes())
		}
		if v, ok := p.Get(section, key); !ok || v != value {
			t.Fatalf("after round trip Get = %q, %v; want %q", v, ok, value)
		}
		if !bytes.Equal(p.Bytes(), file.Bytes()) {
			t.Fatalf("round trip Bytes %q, want %q", p.Bytes(), file.Bytes())
		}
		a1, t1, err1 := file.Partitions()
		a2, t2, err2 := p.Partitions()
		if a1 != a2 || t1 != t2 || (err1 == nil) != (err2 == nil) {
			t.Fatalf("Partitions differ: %d %d %v vs %d %d %v", a1, t1, err1, a2, t2, err2)
		}
		if section == "" && key != "boot_partition" && all >= 1 && all <= 63 && try >= 1 && try <= 63 {
			if a1 != all || t1 != try || err1 != nil {
				t.Fatalf("Partitions = %d, %d, %v; want %d, %d", a1, t1, err1, all, try)
			}
		}
	})
}
