package bundle

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzParseHeader: the header encoding is canonical, so any header that
// parses must re-encode to exactly the same bytes.
func FuzzParseHeader(f *testing.F) {
	b, _ := makeBundle(f, LevelDefault, true, testPayload{"system", KindSlot, testData(5000, 1)}, testPayload{"x", KindExecute, testData(100, 2)})
	r, _ := NewReader(bytes.NewReader(b))
	f.Add(r.HeaderBytes)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data)
		if err != nil {
			return
		}
		again, err := MarshalHeader(h)
		if err != nil {
			t.Fatalf("a parsed header does not marshal: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("header round trip changed the bytes")
		}
	})
}

// FuzzParseTable: a table that parses re-encodes to the same bytes, and its
// entries respect the payload's sizes.
func FuzzParseTable(f *testing.F) {
	b, _ := makeBundle(f, LevelDefault, false, testPayload{"system", KindSlot, testData(50000, 3)})
	r, _ := NewReader(bytes.NewReader(b))
	p := r.Header.Payloads[0]
	off := len(r.HeaderBytes) + len(r.SigBytes)
	f.Add(b[off:off+int(p.TableSize())], p.Size, p.StoredSize)
	f.Fuzz(func(t *testing.T, table []byte, size, stored uint64) {
		q := p
		q.Chunks = uint32(len(table) / EntrySize)
		q.Size, q.StoredSize = size, stored
		entries, err := ParseTable(table, &q)
		if err != nil {
			return
		}
		var again []byte
		var sum uint64
		for i := range entries {
			again = MarshalEntry(again, &entries[i])
			sum += uint64(entries[i].Size)
			if entries[i].Size > q.ChunkMax {
				t.Fatalf("entry %d of %d bytes passed a max of %d", i, entries[i].Size, q.ChunkMax)
			}
		}
		if !bytes.Equal(again, table) || sum != size {
			t.Fatal("table round trip changed the bytes or the sum")
		}
	})
}

// FuzzReader: reading arbitrary bytes never panics, and whatever it yields
// for a bundle accepted without signature check was covered by its digests.
func FuzzReader(f *testing.F) {
	b, _ := makeBundle(f, LevelDefault, true, testPayload{"system", KindSlot, testData(3000, 4)})
	f.Add(b)
	f.Add(b[:100])
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		if err := r.Verify(acceptAll); err != nil {
			t.Fatal(err)
		}
		for {
			pr, err := r.NextPayload()
			if err != nil {
				if !errors.Is(err, io.EOF) && err.Error() == "" {
					t.Fatal("empty error")
				}
				return
			}
			if _, err := io.Copy(io.Discard, pr); err != nil {
				return
			}
		}
	})
}
