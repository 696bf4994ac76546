package directio

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// file writes n pseudo-random bytes to a new file and returns its path and
// content.
func file(t *testing.T, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)})
	r.Read(b)
	p := filepath.Join(t.TempDir(), "slot.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// readAll reads r with reads of step bytes.
func readAll(t *testing.T, r io.Reader, step int) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, step)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestReaderReadsEveryByte(t *testing.T) {
	for _, n := range []int{0, 1, Align - 1, Align, Align + 1, BlockSize - 1, BlockSize, BlockSize + 1, 3*BlockSize + 123} {
		p, want := file(t, n)
		for _, step := range []int{1000, BlockSize, 3 * BlockSize} {
			r, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			got := readAll(t, r, step)
			if !bytes.Equal(got, want) {
				t.Fatalf("%d bytes read %d at a time: got %d bytes, not the file's", n, step, len(got))
			}
			if n, err := r.Read(make([]byte, 10)); n != 0 || err != io.EOF {
				t.Fatalf("after the end: %d, %v", n, err)
			}
			r.Close()
		}
	}
}

// A file system that refuses a direct read (here: a read whose length is
// not aligned) is read through the page cache from where the reader was.
func TestReaderFallsBackToThePageCache(t *testing.T) {
	p, want := file(t, 5*Align+17)
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Direct() {
		noDirect(t, p)
	}
	r.buf = r.buf[:Align-1] // a direct read of Align-1 bytes is refused (EINVAL)
	got := readAll(t, r, 100)
	if r.Direct() {
		t.Fatal("the reader still reads with direct I/O after EINVAL")
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, not the file's %d", len(got), len(want))
	}
}

// noDirect skips a test that needs direct I/O where the temporary
// directory's file system has none; CI's has it, so there the test fails.
func noDirect(t *testing.T, p string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("the file system of %s has no direct I/O", p)
	}
	t.Skipf("the file system of %s has no direct I/O", p)
}
