package patch

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/tandem-ota/tandem/internal/bundle"
)

// pair makes a source and a new image that differ as an updated file
// system does: blocks moved, bytes flipped, new data inserted.
func pair(seed uint64, size int) (old, nw []byte) {
	r := rand.New(rand.NewPCG(seed, 1))
	old = make([]byte, size)
	for i := range old {
		// compressible, not trivial
		old[i] = byte(r.IntN(16)) + 'a'
	}
	nw = append([]byte(nil), old[:size/3]...)
	ins := make([]byte, 5000)
	for i := range ins {
		ins[i] = byte(r.Uint32())
	}
	nw = append(nw, ins...)
	nw = append(nw, old[size/2:]...)
	nw = append(nw, old[size/3:size/2]...)
	for i := 100; i < len(nw); i += 512 {
		nw[i] ^= 0x20
	}
	return old, nw
}

// scattered returns a source of size bytes and a new image of about size
// bytes made of pieces of 2 to 34 KiB taken from all over it, each changed
// a little: the shape of a kernel and package upgrade, where the decoder
// jumps between source offsets at almost every instruction.
func scattered(seed uint64, size int) (old, nw []byte) {
	r := rand.New(rand.NewPCG(seed, 1))
	old = make([]byte, size)
	for i := range old {
		old[i] = byte(r.IntN(16)) + 'a'
	}
	for len(nw) < size {
		off, n := r.IntN(size-40<<10), 2<<10+r.IntN(32<<10)
		nw = append(nw, old[off:off+n]...)
	}
	for i := 100; i < len(nw); i += 512 {
		nw[i] ^= 0x20
	}
	return old, nw
}

// countingReader counts the bytes and calls of ReadAt.
type countingReader struct {
	r            io.ReaderAt
	bytes, calls int64
}

func (c *countingReader) ReadAt(b []byte, off int64) (int, error) {
	c.bytes += int64(len(b))
	c.calls++
	return c.r.ReadAt(b, off)
}

// The decoder reads the source bytes the instructions use, not a window
// around each: on a scattered pair it reads about as much source as it
// writes output (a 1 MiB window a jump read 30 times as much).
func TestApplyReadsSourceOnce(t *testing.T) {
	old, nw := scattered(9, 8<<20)
	entries := fixedEntries(nw, 64<<10)
	b, err := buildSection(old, nw, nil, entries, 0)
	if err != nil {
		t.Fatal(err)
	}
	src := &countingReader{r: bytes.NewReader(old)}
	var out []byte
	err = ApplySection(&b.Section, entries, bytes.NewReader(bytes.Join(b.stored, nil)), src, func(_ int, c []byte) error {
		out = append(out, c...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, nw) {
		t.Fatal("output differs from the new image")
	}
	t.Logf("%d bytes of output: %d source bytes read in %d calls", len(nw), src.bytes, src.calls)
	if src.bytes > int64(len(nw))*3/2 {
		t.Errorf("read %d source bytes for %d bytes of output", src.bytes, len(nw))
	}
}

// fixedEntries cuts n bytes into chunks of size c (the last shorter).
func fixedEntries(data []byte, c int) []bundle.Entry {
	var es []bundle.Entry
	for off := 0; off < len(data); off += c {
		end := min(off+c, len(data))
		es = append(es, bundle.Entry{Digest: sha256.Sum256(data[off:end]), Size: uint32(end - off), StoredSize: uint32(end - off)})
	}
	return es
}

func applyAll(t *testing.T, b *built, entries []bundle.Entry, old []byte) []byte {
	t.Helper()
	data := bytes.Join(b.stored, nil)
	var out []byte
	err := ApplySection(&b.Section, entries, bytes.NewReader(data), bytes.NewReader(old), func(i int, c []byte) error {
		if sha256.Sum256(c) != entries[i].Digest {
			t.Errorf("chunk %d: wrong content", i)
		}
		out = append(out, c...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		old, nw []byte
		chunk   int
	}{
		{"moved-flipped", nil, nil, 64 << 10},
		{"identical", bytes.Repeat([]byte("abc"), 100000), bytes.Repeat([]byte("abc"), 100000), 4096},
		{"empty-source", nil, []byte("completely new content of a slot"), 64},
		{"unrelated", bytes.Repeat([]byte{1}, 70000), bytes.Repeat([]byte{2, 3}, 90000), 8192},
		{"small-segments", nil, nil, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, nw := tc.old, tc.nw
			if tc.nw == nil && tc.old == nil && tc.name != "empty-source" {
				old, nw = pair(7, 3<<20+12345)
				if tc.name == "small-segments" {
					old, nw = pair(8, 9<<20)
				}
			}
			entries := fixedEntries(nw, tc.chunk)
			b, err := buildSection(old, nw, nil, entries, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := applyAll(t, b, entries, old); !bytes.Equal(got, nw) {
				t.Fatalf("output differs from the new image (%d vs %d bytes)", len(got), len(nw))
			}
			var n int
			for _, s := range b.stored {
				n += len(s)
			}
			t.Logf("%d → %d bytes: patch %d bytes in %d segments", len(old), len(nw), n, len(b.Segments))
			if tc.name == "moved-flipped" && n > 40000 {
				t.Errorf("patch of %d bytes for 5000 new bytes and one flip per 512 bytes", n)
			}
		})
	}
}

func TestWrongSource(t *testing.T) {
	old, nw := pair(3, 1<<20)
	entries := fixedEntries(nw, 64<<10)
	b, err := buildSection(old, nw, nil, entries, 0)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), old...)
	bad[len(bad)/2] ^= 1
	data := bytes.Join(b.stored, nil)
	wrong := 0
	err = ApplySection(&b.Section, entries, bytes.NewReader(data), bytes.NewReader(bad), func(i int, c []byte) error {
		if sha256.Sum256(c) != entries[i].Digest {
			wrong++
		}
		return nil
	})
	if err != nil || wrong == 0 {
		t.Fatalf("a modified source: err %v, %d wrong chunks (want some, caught by their digests)", err, wrong)
	}
}

func TestTamperedSegment(t *testing.T) {
	old, nw := pair(4, 1<<20)
	entries := fixedEntries(nw, 64<<10)
	b, err := buildSection(old, nw, nil, entries, 0)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Join(b.stored, nil)
	data[len(data)/2] ^= 1
	err = ApplySection(&b.Section, entries, bytes.NewReader(data), bytes.NewReader(old), func(int, []byte) error { return nil })
	if !errors.Is(err, ErrDigest) {
		t.Fatalf("tampered segment: %v, want ErrDigest", err)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h := &Header{Created: 1700000000, FromVersion: "1.0.0", Sections: []Section{{Payload: 1, Name: "system", Size: 10, SourceSize: 20,
		Segments: []Segment{{FirstChunk: 0, Chunks: 2, StoredSize: 5, RawSize: 9, Flags: FlagZstd}, {FirstChunk: 2, Chunks: 1, Offset: 5, StoredSize: 3, RawSize: 3}}}}}
	b, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := got.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatal("header changed in a round trip")
	}
	for _, bad := range []func(h *Header){
		func(h *Header) { h.Sections[0].Segments[1].Offset = 6 },
		func(h *Header) { h.Sections[0].Segments[1].FirstChunk = 3 },
		func(h *Header) { h.Sections[0].Segments[1].StoredSize = 2 },
		func(h *Header) { h.Sections[0].Segments[0].Flags = 4 },
		func(h *Header) { h.Sections = nil },
		func(h *Header) { h.FromVersion = "a\nb" },
	} {
		c := *h
		c.Sections = append([]Section(nil), h.Sections...)
		if len(c.Sections) > 0 {
			c.Sections[0].Segments = append([]Segment(nil), h.Sections[0].Segments...)
		}
		bad(&c)
		if _, err := c.Marshal(); !errors.Is(err, ErrFormat) {
			t.Errorf("%+v: %v, want ErrFormat", c, err)
		}
	}
}

func TestAddBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 40 {
		a, d := make([]byte, n), make([]byte, n)
		for i := range a {
			a[i], d[i] = byte(r.Uint32()), byte(r.Uint32())
		}
		want := make([]byte, n)
		for i := range a {
			want[i] = a[i] + d[i]
		}
		addBytes(a, d)
		if !bytes.Equal(a, want) {
			t.Fatalf("n=%d: %x, want %x", n, a, want)
		}
	}
}

func TestTableRoundTrip(t *testing.T) {
	old, _ := pair(9, 2<<20)
	n := len(old)
	nw := append(append(append(append([]byte(nil), old[:n/3]...), "some new bytes"...), old[n/2:]...), old[n/3:n/2]...)
	p := &bundle.Payload{Chunker: bundle.ChunkerBuzhash, ChunkMin: 4 << 10, ChunkAvg: 16 << 10, ChunkMax: 64 << 10}
	src, _, _, err := SourceChunks(bytes.NewReader(old), p)
	if err != nil {
		t.Fatal(err)
	}
	entries, _, _, err := SourceChunks(bytes.NewReader(nw), p)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for i := range entries {
		entries[i].StoredSize = entries[i].Size - uint32(i%7)
		want = bundle.MarshalEntry(want, &entries[i])
	}
	raw := encodeTable(src, entries)
	got, err := ExpandTable(raw, src, uint32(len(entries)))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("table round trip: %v", err)
	}
	t.Logf("%d entries: table %d bytes, compact %d", len(entries), len(want), len(raw))
	if len(raw) >= len(want)/2 {
		t.Errorf("compact table of %d bytes for a %d-byte table", len(raw), len(want))
	}
	if _, err := ExpandTable(raw, src[:len(src)/2], uint32(len(entries))); err == nil {
		t.Error("a shorter source: no error")
	}
}
