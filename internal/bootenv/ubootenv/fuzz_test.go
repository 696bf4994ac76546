package ubootenv

import (
	"errors"
	"reflect"
	"testing"
)

func sameEnv(a, b *Env) bool {
	return reflect.DeepEqual(vars(a), vars(b))
}

// FuzzDecode checks that every image Decode accepts re-encodes (at the same
// size, layout and flag) to an image that decodes to the same environment.
func FuzzDecode(f *testing.F) {
	f.Add(image(32, false, 0, "a=1\x00b=x y\x00\x00", 0xff), false)
	f.Add(image(32, true, 255, "a=1\x00\x00", 0), true)
	f.Fuzz(func(t *testing.T, img []byte, redundant bool) {
		e, flag, err := Decode(img, redundant)
		if err != nil {
			return
		}
		if !redundant && flag != 0 {
			t.Fatalf("single image decoded with flag %d", flag)
		}
		out, err := Encode(e, len(img), redundant, flag)
		if err != nil {
			t.Fatalf("Encode of a decoded image: %v", err)
		}
		e2, flag2, err := Decode(out, redundant)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(img))): %v", err)
		}
		if !sameEnv(e, e2) || flag != flag2 {
			t.Fatalf("round trip: %q flag %d, want %q flag %d", vars(e2), flag2, vars(e), flag)
		}
	})
}

// FuzzSelectRedundant checks that the chosen copy is a copy with a good CRC,
// decodes to the returned environment, and that re-encoding it yields the
// same choice.
func FuzzSelectRedundant(f *testing.F) {
	f.Add(image(32, true, 1, "v=a\x00\x00", 0), image(32, true, 2, "v=b\x00\x00", 0))
	f.Add(image(32, true, 255, "v=a\x00\x00", 0), image(32, true, 0, "v=b\x00\x00", 0xff))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		index, e, flag, err := SelectRedundant(a, b)
		if err != nil {
			if index != -1 || e != nil {
				t.Fatalf("error %v with index %d, env %v", err, index, e)
			}
			return
		}
		chosen, other := a, b
		if index == 1 {
			chosen, other = b, a
		}
		e2, flag2, err := Decode(chosen, true)
		if err != nil || !sameEnv(e, e2) || flag != flag2 {
			t.Fatalf("chosen copy %d decodes to %v, %d, %v", index, e2, flag2, err)
		}
		if crcOK(other, true) && (newer(other[4], flag) || index == 1 && other[4] == flag) {
			t.Fatalf("copy %d (flag %d) chosen over valid copy with flag %d", index, flag, other[4])
		}
		out, err := Encode(e, len(a), true, flag)
		if err != nil {
			t.Fatal(err)
		}
		index3, e3, flag3, err := SelectRedundant(out, out)
		if err != nil || index3 != 0 || flag3 != flag || !sameEnv(e, e3) {
			t.Fatalf("re-encoded copy: %d, %v, %d, %v", index3, e3, flag3, err)
		}
	})
}

// FuzzSet checks that an environment built with Set and Delete survives
// Encode and Decode unchanged.
func FuzzSet(f *testing.F) {
	f.Add("a", "1", "b", "x y\nz", "a", true, byte(9))
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2, del string, redundant bool, flag byte) {
		var e Env
		for _, v := range []kv{{n1, v1}, {n2, v2}} {
			if err := e.Set(v.name, v.value); err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Set error %v is not ErrInvalid", err)
			}
		}
		e.Delete(del)
		img, err := Encode(&e, 256, redundant, flag)
		if errors.Is(err, ErrTooLarge) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		e2, flag2, err := Decode(img, redundant)
		if err != nil {
			t.Fatalf("Decode(Encode(e)): %v", err)
		}
		if !redundant {
			flag = 0
		}
		if !sameEnv(&e, e2) || flag2 != flag {
			t.Fatalf("round trip: %q flag %d, want %q flag %d", vars(e2), flag2, vars(&e), flag)
		}
	})
}
