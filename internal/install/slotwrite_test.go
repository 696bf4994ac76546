package install

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

// memFile is a slot file that is not an *os.File (as on a simulated
// device): it collects what is written and can fail.
type memFile struct {
	bytes.Buffer
	failAt int   // fail the write that would pass this many bytes (0: never)
	err    error // what that write returns
	first  error // what the first write returns, writing nothing
	writes int
}

func (m *memFile) Write(b []byte) (int, error) {
	m.writes++
	if m.writes == 1 && m.first != nil {
		return 0, m.first
	}
	if m.failAt > 0 && m.Len()+len(b) > m.failAt {
		return 0, m.err
	}
	return m.Buffer.Write(b)
}
func (m *memFile) WriteAt([]byte, int64) (int, error) { return 0, errors.New("not used") }
func (m *memFile) Truncate(int64) error               { return nil }
func (m *memFile) Sync() error                        { return nil }
func (m *memFile) Close() error                       { return nil }

// writePieces writes data through w in pieces of random sizes (up to a
// chunk's maximum, 256 KiB).
func writePieces(t *testing.T, w *slotWriter, data []byte, seed uint64) error {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	for len(data) > 0 {
		n := min(len(data), r.IntN(256<<10)+1)
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Sizes around the alignment and the block size land byte for byte in a
// real file (direct I/O where the file system has it, the unaligned tail
// through the page cache) and in a file of another layer.
func TestSlotWriterSizes(t *testing.T) {
	dir := t.TempDir()
	for i, n := range []int{0, 1, directAlign - 1, directAlign, directAlign + 1, writeBlock - 1, writeBlock,
		writeBlock + 1, 2*writeBlock + directAlign, 2*writeBlock + 3*directAlign + 123} {
		data := randomBytes(n, uint64(i))
		name := filepath.Join(dir, "slot.img")
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		w := newSlotWriter(f)
		direct := w.direct
		if err := writePieces(t, w, data, uint64(i)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%d bytes (direct I/O %v): the file differs", n, direct)
		}
		if i == 0 && runtime.GOOS == "linux" {
			t.Logf("direct I/O on %s: %v", dir, direct)
		}

		m := &memFile{}
		w = newSlotWriter(m)
		if w.direct {
			t.Fatal("direct I/O on a file of another layer")
		}
		if err := writePieces(t, w, data, uint64(i)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.Bytes(), data) {
			t.Fatalf("%d bytes, another layer: the file differs", n)
		}
	}
}

// A failed write is reported by a later Write or by Close, never lost, and
// nothing after it is written.
func TestSlotWriterError(t *testing.T) {
	boom := errors.New("disk on fire")
	m := &memFile{failAt: writeBlock + 10, err: boom}
	w := newSlotWriter(m)
	data := randomBytes(5*writeBlock, 3)
	werr := writePieces(t, w, data, 3)
	cerr := w.Close()
	if !errors.Is(cerr, boom) || (werr != nil && !errors.Is(werr, boom)) {
		t.Fatalf("Write: %v, Close: %v; want %v", werr, cerr, boom)
	}
	if m.Len() != writeBlock || !bytes.Equal(m.Bytes(), data[:writeBlock]) {
		t.Fatalf("%d bytes written before the failure, want the first block", m.Len())
	}
	if m.writes != 2 {
		t.Fatalf("%d writes, want 2 (none after the failure)", m.writes)
	}
}

// A slot that refuses a direct write (EINVAL) gets the block again through
// the page cache, and the rest of the image too.
func TestSlotWriterDirectRefused(t *testing.T) {
	m := &memFile{first: syscall.EINVAL}
	w := newSlotWriter(m)
	w.direct = true // as if O_DIRECT had been turned on
	data := randomBytes(3*writeBlock+17, 4)
	if err := writePieces(t, w, data, 4); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.direct {
		t.Fatal("still direct after EINVAL")
	}
	if !bytes.Equal(m.Bytes(), data) {
		t.Fatalf("%d bytes, want the image written through the page cache", m.Len())
	}
}
