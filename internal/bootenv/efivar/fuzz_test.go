package efivar

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode checks that every accepted file re-encodes to the same bytes
// and decodes again to the same attributes and value.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{7, 0, 0, 0, 'a', 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		attrs, value, err := Decode(b)
		if err != nil {
			return
		}
		out := Encode(attrs, value)
		if !bytes.Equal(out, b) {
			t.Fatalf("Encode(Decode(b)) = %v, want %v", out, b)
		}
		attrs2, value2, err := Decode(out)
		if err != nil || attrs2 != attrs || !bytes.Equal(value2, value) {
			t.Fatalf("second Decode = %#x, %v, %v", attrs2, value2, err)
		}
	})
}

// FuzzDecodeString checks that every accepted value round-trips through
// EncodeString, which adds exactly the terminator a value may lack.
func FuzzDecodeString(f *testing.F) {
	f.Add([]byte{'a', 0, 0x3d, 0xd8, 0x00, 0xde, 0, 0})
	f.Fuzz(func(t *testing.T, value []byte) {
		s, err := DecodeString(value)
		if err != nil {
			return
		}
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			t.Fatalf("DecodeString returned %q", s)
		}
		enc := EncodeString(s)
		if !bytes.Equal(enc, value) && !bytes.Equal(enc, append(bytes.Clone(value), 0, 0)) {
			t.Fatalf("EncodeString(DecodeString(v)) = %v, want %v (+ terminator)", enc, value)
		}
		s2, err := DecodeString(enc)
		if err != nil || s2 != s {
			t.Fatalf("DecodeString(EncodeString(s)) = %q, %v; want %q", s2, err, s)
		}
	})
}

// FuzzEncodeString checks that strings without NUL survive EncodeString and
// DecodeString (invalid UTF-8 becoming U+FFFD) and that the file built with
// Encode decodes to the same value.
func FuzzEncodeString(f *testing.F) {
	f.Add("b.conf", uint32(DefaultAttrs))
	f.Fuzz(func(t *testing.T, s string, attrs uint32) {
		enc := EncodeString(s)
		got, err := DecodeString(enc)
		if strings.IndexByte(s, 0) >= 0 {
			if err == nil {
				t.Fatalf("DecodeString accepted an interior NUL: %q", got)
			}
			return
		}
		// Each invalid UTF-8 byte becomes U+FFFD, as in a []rune conversion;
		// valid strings come back unchanged.
		if want := string([]rune(s)); err != nil || got != want {
			t.Fatalf("DecodeString(EncodeString(%q)) = %q, %v; want %q", s, got, err, want)
		}
		a, v, err := Decode(Encode(attrs&knownAttrs, enc))
		if len(enc)+4 > MaxSize {
			return
		}
		if err != nil || a != attrs&knownAttrs || !bytes.Equal(v, enc) {
			t.Fatalf("Decode(Encode) = %#x, %v, %v", a, v, err)
		}
	})
}
