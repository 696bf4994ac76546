package grubenv

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that every block Parse accepts re-encodes to exactly the
// same bytes and parses again to the same environment.
func FuzzParse(f *testing.F) {
	f.Add(block(warning + "a=1\nb=x\\\\y\\\nz\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			return
		}
		out, err := e.Encode(len(b))
		if err != nil {
			t.Fatalf("Encode of a parsed block: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("Encode(Parse(b)) != b\n got %q\nwant %q", out, b)
		}
		e2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Encode(Parse(b))): %v", err)
		}
		if !sameEnv(e, e2) {
			t.Fatalf("Parse(Encode(e)) = %+v, want %+v", e2.lines, e.lines)
		}
	})
}

// FuzzSet checks that an environment built with Set and Delete survives
// Encode and Parse unchanged.
func FuzzSet(f *testing.F) {
	f.Add("a", "1", "b", "x\\y\nz", "a")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2, del string) {
		var e Env
		want := map[string]string{}
		for _, v := range []kv{{n1, v1}, {n2, v2}} {
			if err := e.Set(v.name, v.value); err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Set error %v is not ErrInvalid", err)
				}
				continue
			}
			want[v.name] = v.value
		}
		e.Delete(del)
		delete(want, del)
		for n, v := range want {
			if got, ok := e.Get(n); !ok || got != v {
				t.Fatalf("Get(%q) = %q, %v; want %q", n, got, ok, v)
			}
		}
		b, err := e.Encode(BlockSize)
		if errors.Is(err, ErrTooLarge) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		e2, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(Encode(e)): %v\n%q", err, b)
		}
		if !sameEnv(&e, e2) {
			t.Fatalf("Parse(Encode(e)) = %+v, want %+v", e2.lines, e.lines)
		}
		if !reflect.DeepEqual(e.Names(), e2.Names()) {
			t.Fatalf("names %q, want %q", e2.Names(), e.Names())
		}
	})
}
