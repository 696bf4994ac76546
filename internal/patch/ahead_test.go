package patch

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// aheadHasher hands on every byte in order, in reads of any size, and its
// hash is the whole's once Read returned io.EOF.
func TestAheadHasher(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, aheadSize - 1, aheadSize, aheadSize + 1, 3*aheadSize + 7, 7 * aheadSize} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		h := sha256.New()
		a := newAheadHasher(iotest.HalfReader(bytes.NewReader(data)), h)
		var got []byte
		buf := make([]byte, 200000)
		for {
			m, err := a.Read(buf[:1+r.IntN(len(buf)-1)])
			got = append(got, buf[:m]...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%d bytes: %v", n, err)
			}
		}
		a.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: read %d bytes that differ", n, len(got))
		}
		if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("%d bytes: the hash is not the whole's", n)
		}
	}
}

// A read error reaches Read after the bytes before it.
func TestAheadHasherError(t *testing.T) {
	boom := errors.New("disk on fire")
	data := bytes.Repeat([]byte{7}, 2*aheadSize+5)
	a := newAheadHasher(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)), sha256.New())
	got, err := io.ReadAll(a)
	a.Close()
	if !errors.Is(err, boom) || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v; want %d and %v", len(got), err, len(data), boom)
	}

	// Close while the goroutine waits to hand on a block: it ends (else
	// Close would not return).
	a = newAheadHasher(infinite{}, sha256.New())
	if _, err := io.ReadFull(a, make([]byte, aheadSize/2)); err != nil {
		t.Fatal(err)
	}
	a.Close()
}

type infinite struct{}

func (infinite) Read(p []byte) (int, error) { return len(p), nil }
