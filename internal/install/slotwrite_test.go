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

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/signature"
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

// repetitive returns n bytes that compress with long matches, some running
// to a chunk's end (where the decoder's fast copies write past the match),
// between stretches of random bytes that are stored raw.
func repetitive(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	pat := make([]byte, 3000)
	for i := range pat {
		pat[i] = byte(r.IntN(256))
	}
	out := make([]byte, 0, n)
	for len(out) < n {
		switch r.IntN(5) {
		case 0: // incompressible
			for range 1 + r.IntN(300000) {
				out = append(out, byte(r.Uint32()))
			}
		default: // a run of the pattern with a few bytes changed
			at := len(out)
			for range 1 + r.IntN(40) {
				out = append(out, pat[r.IntN(100):]...)
			}
			for range r.IntN(8) {
				out[at+r.IntN(len(out)-at)] ^= byte(1 + r.IntN(255))
			}
		}
	}
	return out[:n]
}

// The bundle reader decodes compressed chunks straight into the writer's
// blocks (slotWriter.Dest): whatever the chunk sizes — many small chunks
// per block, chunks that end exactly at a block's end, chunks across two
// blocks, raw chunks between compressed ones, a last chunk of a few bytes —
// the slot gets exactly the image, and most of it was found in place.
func TestSlotWriterDecodesInPlace(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4)) // four decoders
	for _, tc := range []struct {
		name    string
		chunker bundle.ChunkerType
		size    int
	}{
		{"fixed 4 KiB + 17", bundle.ChunkerFixed, 4096 + 17},
		{"fixed 64 KiB (block ends)", bundle.ChunkerFixed, 64 << 10},
		{"fixed 200000", bundle.ChunkerFixed, 200000},
		{"content-defined 16 KiB", bundle.ChunkerBuzhash, 16 << 10},
		{"content-defined 64 KiB", bundle.ChunkerBuzhash, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := repetitive(6*writeBlock+13, uint64(tc.size))
			var b bytes.Buffer
			meta := bundle.Header{Compatible: "test", Version: "1.0.0", Created: 1}
			specs := []bundle.PayloadSpec{{Name: "system", Kind: bundle.KindSlot, Target: "system",
				Chunker: tc.chunker, ChunkSize: tc.size, Source: bytes.NewReader(img)}}
			if _, err := bundle.Write(&b, meta, specs, bundle.Options{Workers: 2, TempDir: t.TempDir()}); err != nil {
				t.Fatal(err)
			}
			br, err := bundle.NewReader(&b)
			if err != nil {
				t.Fatal(err)
			}
			if err := br.Verify(func(*bundle.Header, bundle.Hash, []signature.Signature) error { return nil }); err != nil {
				t.Fatal(err)
			}
			pr, err := br.NextPayload()
			if err != nil {
				t.Fatal(err)
			}
			var raw, compressed int
			for _, e := range pr.Entries {
				if e.Compressed() {
					compressed++
				} else {
					raw++
				}
			}
			if raw == 0 || compressed == 0 {
				t.Fatalf("%d raw and %d compressed chunks: the test needs both", raw, compressed)
			}
			p := filepath.Join(t.TempDir(), "slot.img")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sw := newSlotWriter(f)
			if err := sw.writeAll(pr, func(int) {}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, img) {
				i := 0
				for i < min(len(got), len(img)) && got[i] == img[i] {
					i++
				}
				t.Fatalf("the slot differs from the image at byte %d (%d bytes written, %d in the image)", i, len(got), len(img))
			}
			if sw.placed < int64(len(img))/4 {
				t.Fatalf("%d of %d bytes were decoded in place", sw.placed, len(img))
			}
			t.Logf("%d chunks (%d raw), %d of %d bytes decoded in place", len(pr.Entries), raw, sw.placed, len(img))
		})
	}
}
