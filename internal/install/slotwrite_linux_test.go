package install

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// A direct slot writer holds one P more than the scheduler had while it
// writes, each writer its own, and gives it back when closed; a writer
// through the page cache holds none.
func TestSlotWriterHoldsProc(t *testing.T) {
	dir := t.TempDir()
	p := runtime.GOMAXPROCS(0)
	open := func(name string) *os.File {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	a := newSlotWriter(open("a"))
	if !a.direct {
		t.Skipf("no direct I/O on %s", dir)
	}
	if got := runtime.GOMAXPROCS(0); got != p+1 {
		t.Fatalf("GOMAXPROCS %d while one direct writer runs, want %d", got, p+1)
	}
	b := newSlotWriter(open("b"))
	m := newSlotWriter(&memFile{})
	if got := runtime.GOMAXPROCS(0); got != p+2 {
		t.Fatalf("GOMAXPROCS %d while two direct writers run, want %d", got, p+2)
	}
	data := randomBytes(2*writeBlock+5, 9)
	for _, w := range []*slotWriter{a, m, b} {
		if err := writePieces(t, w, data, 9); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != p+1 {
		t.Fatalf("GOMAXPROCS %d after one direct writer closed, want %d", got, p+1)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != p {
		t.Fatalf("GOMAXPROCS %d after both closed, want %d as before", got, p)
	}
	for _, name := range []string{"a", "b"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("slot %s differs", name)
		}
	}
}

// writeDirect's raw system calls write what they are given and report the
// kernel's refusal as a File's Write would: the error names the file and
// is the errno (EINVAL, on which the slot writer turns direct I/O off).
func TestWriteDirect(t *testing.T) {
	name := filepath.Join(t.TempDir(), "slot.img")
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := setDirect(f, true); err != nil {
		t.Skipf("no direct I/O: %v", err)
	}
	block := alignedBlock()[:writeBlock]
	copy(block, randomBytes(writeBlock, 11))
	if n, err := writeDirect(f, block); n != writeBlock || err != nil {
		t.Fatalf("aligned block: %d, %v", n, err)
	}
	n, err := writeDirect(f, alignedBlock()[1:directAlign+1]) // memory off the alignment
	if n != 0 || !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), name) {
		t.Fatalf("unaligned memory: %d, %v; want 0 and EINVAL naming %s", n, err, name)
	}
	if got, err := os.ReadFile(name); err != nil || !bytes.Equal(got, block) {
		t.Fatalf("file after the writes: %d bytes, %v; want the aligned block", len(got), err)
	}

	ro, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := writeDirect(ro, block); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("read-only file: %v, want EBADF", err)
	}
}
