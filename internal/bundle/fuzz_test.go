package bundle

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// FuzzParseHeader: the header encoding is canonical, so any header that
// parses must re-encode to exactly the same bytes.
func FuzzParseHeader(f *testing.F) {
	b, _ := makeBundle(f, LevelDefault, true, testPayload{"system", KindSlot, testData(5000, 1)}, testPayload{"x", KindExecute, testData(100, 2)})
	r, _ := NewReader(bytes.NewReader(b))
	f.Add(r.HeaderBytes)
	b2, _ := makeBundleFormat(f, 2, LevelDefault, true, testPayload{"system", KindSlot, testData(5000, 1)})
	r2, _ := NewReader(bytes.NewReader(b2))
	f.Add(r2.HeaderBytes)
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
	b2, _ := makeBundleFormat(f, 2, LevelDefault, true, testPayload{"system", KindSlot, testData(3000, 4)})
	f.Add(b2)
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

// FuzzVerifyChunk: whatever the stored bytes, verifyChunk returns either an
// error or exactly the content the entry's digest names (never more than
// the entry's size), and it never panics.
func FuzzVerifyChunk(f *testing.F) {
	content := testData(9000, 5)
	enc, _ := zstd.NewWriter(nil)
	frame := enc.EncodeAll(content, nil)
	enc.Close()
	f.Add(frame, uint32(len(content)))
	f.Add(append(bytes.Clone(frame), frame...), uint32(len(content)))
	f.Add(bytes.Clone(content), uint32(len(content)))
	digest := sha256.Sum256(content)
	f.Fuzz(func(t *testing.T, stored []byte, size uint32) {
		size = size%(2*uint32(len(content))) + 1
		if uint32(len(stored)) > size {
			return // a format error: ParseTable refuses the entry
		}
		e := Entry{Digest: digest, Size: size, StoredSize: uint32(len(stored))}
		data, err := checkChunk(&e, stored, nil)
		if err != nil {
			if data != nil {
				t.Fatal("data with an error")
			}
			return
		}
		if !bytes.Equal(data, content) {
			t.Fatalf("verifyChunk returned %d bytes that are not the content", len(data))
		}
	})
}

// FuzzVerifyStoredChunk: checked by its stored digest (format 3), a chunk's
// stored bytes yield either an error or, only when they are exactly the
// signed frame, exactly its content; a frame without its checksum is
// refused, and nothing panics.
func FuzzVerifyStoredChunk(f *testing.F) {
	content := testData(9000, 6)
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	frame := enc.EncodeAll(content, nil)
	enc.Close()
	noCRC, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	bare := noCRC.EncodeAll(content, nil)
	noCRC.Close()
	f.Add(frame, uint32(len(content)), false)
	f.Add(bare, uint32(len(content)), true)
	f.Add(bytes.Clone(content), uint32(len(content)), true)
	digest := sha256.Sum256(content)
	dec, err := zstdDecoder()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, stored []byte, size uint32, signStored bool) {
		size = size%(2*uint32(len(content))) + 1
		if uint32(len(stored)) > size {
			return // a format error: ParseTable refuses the entry
		}
		// The signed stored digest: of the fuzzed bytes themselves (as a
		// signer that wrote them would) or of the real frame.
		sd := sha256.Sum256(frame)
		if signStored {
			sd = sha256.Sum256(stored)
		}
		e := Entry{Digest: digest, Size: size, StoredSize: uint32(len(stored))}
		data, err := verifyChunk(dec, &e, &sd, false, stored, nil)
		if err != nil {
			if data != nil {
				t.Fatal("data with an error")
			}
			return
		}
		if sha256.Sum256(stored) != sd || len(data) != int(size) {
			t.Fatal("released a chunk whose stored bytes or size do not match")
		}
		if e.Compressed() {
			var h zstd.Header
			if h.Decode(stored) != nil || !h.HasCheckSum {
				t.Fatal("released a frame without its content checksum")
			}
		}
		if bytes.Equal(stored, frame) && !bytes.Equal(data, content) {
			t.Fatal("the signed frame decoded to other content")
		}
	})
}
