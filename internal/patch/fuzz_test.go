package patch

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/tandem-ota/tandem/internal/bundle"
)

// FuzzApplier feeds arbitrary raw segment bytes to the decoder: it must
// refuse or produce exactly the segment's output, reading only within the
// source, never panic or allocate beyond the raw size.
func FuzzApplier(f *testing.F) {
	old, nw := pair(11, 200000)
	entries := fixedEntries(nw, 16<<10)
	b, err := buildSection(old, nw, nil, entries, 0)
	if err != nil {
		f.Fatal(err)
	}
	for k, g := range b.Segments {
		raw, err := decodeRaw(g, b.stored[k], nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, uint32(SegmentOutput(g, entries)))
	}
	f.Add([]byte{1, 0, 5, 0, 1, 2, 3, 4, 5}, uint32(5))
	f.Fuzz(func(t *testing.T, raw []byte, out uint32) {
		out %= 1 << 20
		a, err := NewApplier(raw, uint64(out), bytes.NewReader(old), int64(len(old)))
		if err != nil {
			return
		}
		dst := make([]byte, out)
		for len(dst) > 0 {
			n := min(len(dst), 777)
			if err := a.Read(dst[:n]); err != nil {
				t.Fatalf("a checked segment failed to apply: %v", err)
			}
			dst = dst[n:]
		}
		if err := a.Read(make([]byte, 1)); err == nil {
			t.Fatal("the segment produced more than its output")
		}
	})
}

// FuzzHeader: ParseHeader accepts only headers Marshal reproduces byte for
// byte, and ReadHead never reads past its limits.
func FuzzHeader(f *testing.F) {
	h := &Header{Created: 1, FromVersion: "1.0", Sections: []Section{{Name: "system", Size: 3, SourceSize: 2,
		Segments: []Segment{{Chunks: 1, StoredSize: 4, RawSize: 4}}}}}
	hb, err := h.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hb)
	var sig bytes.Buffer
	if _, err := Write(&sig, h, [][]byte{[]byte("abcd")}, nil); err != nil {
		f.Fatal(err)
	}
	f.Add(sig.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := ParseHeader(b); err == nil {
			again, err := h.Marshal()
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("accepted a header Marshal does not reproduce: %v", err)
			}
			es := make([]bundle.Entry, 3)
			for i := range es {
				es[i] = bundle.Entry{Digest: sha256.Sum256(nil), Size: 1}
			}
			for i := range h.Sections {
				_ = h.Sections[i].Check(&bundle.Payload{Name: h.Sections[i].Name, Size: h.Sections[i].Size}, es)
			}
		}
		if hd, err := ReadHead(bytes.NewReader(b)); err == nil && hd.DataOffset > int64(len(b)) {
			t.Fatalf("data offset %d beyond the %d bytes read", hd.DataOffset, len(b))
		}
	})
}

// FuzzExpandTable: a compact table either fails or expands to exactly
// chunks entries.
func FuzzExpandTable(f *testing.F) {
	src := []bundle.Entry{{Size: 10}, {Size: 20}, {Size: 30}}
	f.Add(encodeTable(src, []bundle.Entry{{Size: 20, StoredSize: 5}, {Size: 7}}), uint32(2))
	f.Fuzz(func(t *testing.T, raw []byte, chunks uint32) {
		chunks %= 1 << 12
		tb, err := ExpandTable(raw, src, chunks)
		if err == nil && len(tb) != int(chunks)*bundle.EntrySize {
			t.Fatalf("%d table bytes for %d chunks", len(tb), chunks)
		}
	})
}
