package efivar

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestFileName(t *testing.T) {
	got := FileName("LoaderEntryOneShot", VendorLoader)
	if want := "LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"; got != want {
		t.Errorf("FileName = %q, want %q", got, want)
	}
	if DefaultAttrs != 0x7 {
		t.Errorf("DefaultAttrs = %#x, want 0x7", DefaultAttrs)
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		attrs uint32
		value []byte
		want  []byte
	}{
		{DefaultAttrs, []byte{'a', 0, 0, 0}, []byte{7, 0, 0, 0, 'a', 0, 0, 0}},
		{0x01020304, nil, []byte{4, 3, 2, 1}},
	}
	for _, tt := range tests {
		if got := Encode(tt.attrs, tt.value); !bytes.Equal(got, tt.want) {
			t.Errorf("Encode(%#x, %q) = %v, want %v", tt.attrs, tt.value, got, tt.want)
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		attrs uint32
		value []byte
		err   error
	}{
		{"string", []byte{7, 0, 0, 0, 'a', 0, 0, 0}, 7, []byte{'a', 0, 0, 0}, nil},
		{"empty value", []byte{7, 0, 0, 0}, 7, []byte{}, nil},
		{"all defined bits", []byte{0xff, 0, 0, 0, 1}, 0xff, []byte{1}, nil},
		{"max size", append([]byte{7, 0, 0, 0}, make([]byte, MaxSize-4)...), 7, make([]byte, MaxSize-4), nil},

		{"empty", nil, 0, nil, ErrFormat},
		{"short", []byte{7, 0, 0}, 0, nil, ErrFormat},
		{"unknown bits", []byte{7, 1, 0, 0}, 0, nil, ErrFormat},
		{"too large", make([]byte, MaxSize+1), 0, nil, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs, value, err := Decode(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Decode error = %v, want %v", err, tt.err)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "efivar: ") {
					t.Errorf("error %q lacks package prefix", err)
				}
				return
			}
			if attrs != tt.attrs || !bytes.Equal(value, tt.value) {
				t.Errorf("Decode = %#x, %v; want %#x, %v", attrs, value, tt.attrs, tt.value)
			}
		})
	}
}

func TestEncodeString(t *testing.T) {
	tests := []struct {
		in   string
		want []byte
	}{
		{"", []byte{0, 0}},
		{"a.conf", []byte{'a', 0, '.', 0, 'c', 0, 'o', 0, 'n', 0, 'f', 0, 0, 0}},
		{"é", []byte{0xe9, 0, 0, 0}},
		{"😀", []byte{0x3d, 0xd8, 0x00, 0xde, 0, 0}}, // U+1F600 = D83D DE00
		{"\xff", []byte{0xfd, 0xff, 0, 0}},          // invalid UTF-8 becomes U+FFFD
	}
	for _, tt := range tests {
		if got := EncodeString(tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("EncodeString(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDecodeString(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
		err  error
	}{
		{"terminated", []byte{'a', 0, 'b', 0, 0, 0}, "ab", nil},
		{"unterminated", []byte{'a', 0, 'b', 0}, "ab", nil},
		{"empty", nil, "", nil},
		{"only terminator", []byte{0, 0}, "", nil},
		{"surrogate pair", []byte{0x3d, 0xd8, 0x00, 0xde, 0, 0}, "😀", nil},
		{"bmp", []byte{0xac, 0x20}, "€", nil},

		{"odd length", []byte{'a', 0, 0}, "", ErrString},
		{"lone high surrogate", []byte{0x3d, 0xd8, 0, 0}, "", ErrString},
		{"lone high surrogate at end", []byte{0x3d, 0xd8}, "", ErrString},
		{"lone low surrogate", []byte{0x00, 0xde, 'a', 0}, "", ErrString},
		{"reversed pair", []byte{0x00, 0xde, 0x3d, 0xd8}, "", ErrString},
		{"interior NUL", []byte{'a', 0, 0, 0, 'b', 0}, "", ErrString},
		{"two terminators", []byte{'a', 0, 0, 0, 0, 0}, "", ErrString},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeString(tt.in)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("DecodeString = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// TestSystemdLayout checks a complete LoaderEntryOneShot file as systemd
// (efi_set_variable_string) writes it.
func TestSystemdLayout(t *testing.T) {
	file := Encode(DefaultAttrs, EncodeString("b.conf"))
	want := []byte{7, 0, 0, 0, 'b', 0, '.', 0, 'c', 0, 'o', 0, 'n', 0, 'f', 0, 0, 0}
	if !bytes.Equal(file, want) {
		t.Fatalf("file = %v, want %v", file, want)
	}
	attrs, value, err := Decode(file)
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeString(value)
	if err != nil || attrs != DefaultAttrs || s != "b.conf" {
		t.Errorf("got %#x, %q, %v", attrs, s, err)
	}
}
