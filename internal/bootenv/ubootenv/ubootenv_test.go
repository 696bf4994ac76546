package ubootenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"
)

// image builds an image of size bytes from raw data, padded with pad, with
// a correct CRC.
func image(size int, redundant bool, flag byte, data string, pad byte) []byte {
	h := headerSize(redundant)
	img := make([]byte, size)
	copy(img[h:], data)
	for i := h + len(data); i < size; i++ {
		img[i] = pad
	}
	if redundant {
		img[4] = flag
	}
	binary.LittleEndian.PutUint32(img, crc32.ChecksumIEEE(img[h:]))
	return img
}

type kv struct{ name, value string }

func vars(e *Env) []kv {
	out := []kv{}
	for _, n := range e.Names() {
		v, _ := e.Get(n)
		out = append(out, kv{n, v})
	}
	return out
}

func build(t testing.TB, vs []kv) *Env {
	t.Helper()
	var e Env
	for _, v := range vs {
		if err := e.Set(v.name, v.value); err != nil {
			t.Fatal(err)
		}
	}
	return &e
}

func TestDecode(t *testing.T) {
	corrupt := image(64, false, 0, "a=1\x00\x00", 0)
	corrupt[10] ^= 1
	tests := []struct {
		name      string
		img       []byte
		redundant bool
		want      []kv
		flag      byte
		err       error
	}{
		{"empty", image(64, false, 0, "\x00", 0), false, []kv{}, 0, nil},
		{"single", image(64, false, 0, "a=1\x00b=x y=z\x00\x00", 0), false, []kv{{"a", "1"}, {"b", "x y=z"}}, 0, nil},
		{"ff padding", image(64, false, 0, "a=1\x00\x00", 0xff), false, []kv{{"a", "1"}}, 0, nil},
		{"stale bytes after terminator", image(64, false, 0, "a=1\x00\x00junk=1\x00", 0x55), false, []kv{{"a", "1"}}, 0, nil},
		{"redundant", image(64, true, 7, "a=1\x00\x00", 0), true, []kv{{"a", "1"}}, 7, nil},
		{"empty value and newline", image(64, false, 0, "a=\x00b=l1\nl2\x00\x00", 0), false, []kv{{"a", ""}, {"b", "l1\nl2"}}, 0, nil},
		{"terminator is last byte", image(10, false, 0, "a=1\x00\x00", 0), false, []kv{{"a", "1"}}, 0, nil},
		{"minimum redundant", image(MinSize, true, 1, "\x00", 0), true, []kv{}, 1, nil},

		{"bad crc", corrupt, false, nil, 0, ErrCRC},
		{"redundant read as single", image(64, true, 7, "a=1\x00\x00", 0), false, nil, 0, ErrCRC},
		{"too small", []byte{0, 0, 0, 0, 0}, false, nil, 0, ErrSize},
		{"too large", make([]byte, MaxSize+1), false, nil, 0, ErrSize},
		{"no terminator", image(9, false, 0, "a=1\x00b", 'b'), false, nil, 0, ErrFormat},
		{"entry fills area", image(8, false, 0, "a=1\x00", 0xff), false, nil, 0, ErrFormat},
		{"no equals", image(64, false, 0, "abc\x00\x00", 0), false, nil, 0, ErrFormat},
		{"empty name", image(64, false, 0, "=1\x00\x00", 0), false, nil, 0, ErrFormat},
		{"comment name", image(64, false, 0, "#a=1\x00\x00", 0), false, nil, 0, ErrFormat},
		{"blank name", image(64, false, 0, " a=1\x00\x00", 0), false, nil, 0, ErrFormat},
		{"duplicate", image(64, false, 0, "a=1\x00a=2\x00\x00", 0), false, nil, 0, ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, flag, err := Decode(tt.img, tt.redundant)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Decode error = %v, want %v", err, tt.err)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "ubootenv: ") {
					t.Errorf("error %q lacks package prefix", err)
				}
				return
			}
			if got := vars(e); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("vars = %q, want %q", got, tt.want)
			}
			if flag != tt.flag {
				t.Errorf("flag = %d, want %d", flag, tt.flag)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		name      string
		vars      []kv
		size      int
		redundant bool
		flag, pad byte
		want      []byte
		err       error
	}{
		{"empty", nil, 16, false, 0, 0, image(16, false, 0, "\x00", 0), nil},
		{"single", []kv{{"b", "2"}, {"a", "1"}}, 32, false, 9, 0, image(32, false, 0, "b=2\x00a=1\x00\x00", 0), nil},
		{"redundant", []kv{{"a", "1"}}, 32, true, 9, 0, image(32, true, 9, "a=1\x00\x00", 0), nil},
		{"pad ff", []kv{{"a", "1"}}, 32, true, 1, 0xff, image(32, true, 1, "a=1\x00\x00", 0xff), nil},
		{"exactly full", []kv{{"a", "1"}}, 9, false, 0, 0xff, image(9, false, 0, "a=1\x00\x00", 0), nil},
		{"one byte short", []kv{{"a", "1"}}, 9, true, 0, 0, nil, ErrTooLarge},
		{"size too small", nil, MinSize - 1, false, 0, 0, nil, ErrSize},
		{"size too large", nil, MaxSize + 1, false, 0, 0, nil, ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EncodePad(build(t, tt.vars), tt.size, tt.redundant, tt.flag, tt.pad)
			if !errors.Is(err, tt.err) {
				t.Fatalf("EncodePad error = %v, want %v", err, tt.err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("EncodePad =\n%q\nwant\n%q", got, tt.want)
			}
			if tt.pad == 0 {
				got, err := Encode(build(t, tt.vars), tt.size, tt.redundant, tt.flag)
				if !errors.Is(err, tt.err) || !bytes.Equal(got, tt.want) {
					t.Errorf("Encode = %q, %v; want %q, %v", got, err, tt.want, tt.err)
				}
			}
		})
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		name, value string
		err         error
	}{
		{"a", "1", nil},
		{"bootcmd", "run a; run b\nx\\y", nil},
		{"a", "", nil},
		{".flags", "a:sa", nil},
		{"", "1", ErrInvalid},
		{"a=b", "1", ErrInvalid},
		{"a\x00", "1", ErrInvalid},
		{"#a", "1", ErrInvalid},
		{" a", "1", ErrInvalid},
		{"\ta", "1", ErrInvalid},
		{"a", "x\x00", ErrInvalid},
	}
	for _, tt := range tests {
		var e Env
		if err := e.Set(tt.name, tt.value); !errors.Is(err, tt.err) {
			t.Errorf("Set(%q, %q) = %v, want %v", tt.name, tt.value, err, tt.err)
		}
	}
}

func TestOrder(t *testing.T) {
	e := build(t, []kv{{"c", "c"}, {"a", "a"}, {"b", "b"}})
	if err := e.Set("a", "changed"); err != nil {
		t.Fatal(err)
	}
	e.Delete("c")
	e.Delete("missing")
	want := []kv{{"a", "changed"}, {"b", "b"}}
	if got := vars(e); !reflect.DeepEqual(got, want) {
		t.Fatalf("vars = %q, want %q", got, want)
	}
}

func TestNewer(t *testing.T) {
	tests := []struct {
		b, a byte
		want bool
	}{
		{1, 0, true}, {0, 1, false}, {5, 5, false},
		{0, 255, true}, {255, 0, false},
		{200, 0, true}, {0, 200, false},
		{255, 254, true}, {NextFlag(255), 255, true},
	}
	for _, tt := range tests {
		if got := newer(tt.b, tt.a); got != tt.want {
			t.Errorf("newer(%d, %d) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
	if NextFlag(255) != 0 || NextFlag(7) != 8 {
		t.Error("NextFlag does not wrap like a byte counter")
	}
}

func TestSelectRedundant(t *testing.T) {
	copyWith := func(flag byte, v string) []byte {
		return image(64, true, flag, "v="+v+"\x00\x00", 0)
	}
	torn := func(img []byte) []byte {
		img = bytes.Clone(img)
		for i := len(img) / 2; i < len(img); i++ {
			img[i] = 0xa5
		}
		img[6] = 'X'
		return img
	}
	badFormat := image(64, true, 9, "novalue\x00\x00", 0)
	tests := []struct {
		name  string
		a, b  []byte
		index int
		value string
		flag  byte
		err   error
	}{
		{"b newer", copyWith(1, "a"), copyWith(2, "b"), 1, "b", 2, nil},
		{"a newer", copyWith(3, "a"), copyWith(2, "b"), 0, "a", 3, nil},
		{"tie picks 0", copyWith(4, "a"), copyWith(4, "b"), 0, "a", 4, nil},
		{"wrap b", copyWith(255, "a"), copyWith(0, "b"), 1, "b", 0, nil},
		{"wrap a", copyWith(0, "a"), copyWith(255, "b"), 0, "a", 0, nil},
		{"no serial arithmetic", copyWith(0, "a"), copyWith(200, "b"), 1, "b", 200, nil},
		{"b torn", copyWith(1, "a"), torn(copyWith(2, "b")), 0, "a", 1, nil},
		{"a torn", torn(copyWith(9, "a")), copyWith(2, "b"), 1, "b", 2, nil},
		{"both torn", torn(copyWith(1, "a")), torn(copyWith(2, "b")), -1, "", 0, ErrNoValidCopy},
		{"newer copy malformed", copyWith(1, "a"), badFormat, -1, "", 0, ErrFormat},
		{"short copy is invalid", copyWith(1, "a"), copyWith(2, "b")[:63], 0, "a", 1, nil},
		{"missing copy is invalid", nil, copyWith(2, "b"), 1, "b", 2, nil},
		{"too small", []byte{1}, []byte{1}, -1, "", 0, ErrNoValidCopy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			index, env, flag, err := SelectRedundant(tt.a, tt.b)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if index != tt.index || flag != tt.flag {
				t.Errorf("index, flag = %d, %d; want %d, %d", index, flag, tt.index, tt.flag)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "ubootenv: ") {
					t.Errorf("error %q lacks package prefix", err)
				}
				return
			}
			if v, _ := env.Get("v"); v != tt.value {
				t.Errorf("v = %q, want %q", v, tt.value)
			}
		})
	}
}

// TestDecodeManyVariables decodes a MaxSize image packed with short
// variables; duplicate detection must stay linear.
func TestDecodeManyVariables(t *testing.T) {
	var data []byte
	n := 0
	for len(data) < MaxSize-64 {
		data = fmt.Appendf(data, "%x=\x00", n)
		n++
	}
	e, _, err := Decode(image(MaxSize, true, 0, string(data)+"\x00", 0), true)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(e.Names()); got != n {
		t.Errorf("decoded %d variables, want %d", got, n)
	}
}
