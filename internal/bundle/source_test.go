package bundle

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"testing"
)

// fakeSource serves one payload's chunks from the bundle bytes: stored
// bytes, or (content) the chunks' content; bad says which chunk comes
// wrong, and how often Refetch gives it wrong too.
type fakeSource struct {
	stored, content [][]byte
	asContent       bool
	bad             int // the chunk that comes with a byte flipped (-1: none)
	refetchBad      int // how many refetches of it are wrong as well
	refetches       atomic.Int32
}

func flip(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)/2] ^= 0x40
	return b
}

func (s *fakeSource) ReadChunk(i int, e *Entry, buf []byte) ([]byte, bool, error) {
	b := s.stored[i]
	if s.asContent {
		b = s.content[i]
	}
	if i == s.bad {
		b = flip(b)
	}
	return append(buf, b...), s.asContent, nil
}

// refetching makes a fakeSource a Refetcher.
type refetching struct{ *fakeSource }

func (s refetching) Refetch(i int, e *Entry, attempt int) ([]byte, error) {
	s.refetches.Add(1)
	if attempt > 2 {
		return nil, nil
	}
	if attempt <= s.refetchBad {
		return flip(s.stored[i]), nil
	}
	return bytes.Clone(s.stored[i]), nil
}

// splitPayload returns the verified table of payload 0 of b and its chunks'
// stored bytes and content.
func splitPayload(t *testing.T, b []byte) (*Table, [][]byte, [][]byte) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(acceptAll); err != nil {
		t.Fatal(err)
	}
	tableOff, dataOff := r.PayloadOffsets(0)
	storedOff := tableOff + int64(r.Header.Payloads[0].TableSize())
	tb, err := r.Table(0, b[tableOff:storedOff])
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.HasStoredTable() {
		if err := tb.AddStoredTable(b[storedOff:dataOff]); err != nil {
			t.Fatal(err)
		}
	}
	var stored, content [][]byte
	off := dataOff
	for i := range tb.Entries {
		e := &tb.Entries[i]
		s := b[off : off+int64(e.StoredSize)]
		c, err := checkChunk(e, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		stored, content = append(stored, s), append(content, bytes.Clone(c))
		off += int64(e.StoredSize)
	}
	return tb, stored, content
}

// A chunk source that returns wrong bytes — stored bytes (the bundle
// stream, ranges) or a copy of the content (local reuse) — never gets one
// of them handed out: the reader reports the chunk, and hands out nothing
// from it on. A source that can fetch the chunk again gets it checked again.
func TestChunkSourceWrongBytes(t *testing.T) {
	data := testData(200_000, 31)
	b, _ := makeBundle(t, LevelDefault, false, testPayload{"system", KindSlot, data})
	for _, tc := range []struct {
		name       string
		asContent  bool
		refetch    bool
		refetchBad int
		ok         bool
	}{
		{name: "stored"},
		{name: "content", asContent: true},
		{name: "stored, refetched", refetch: true, ok: true},
		{name: "content, refetched", asContent: true, refetch: true, ok: true},
		{name: "stored, refetched wrong once", refetch: true, refetchBad: 1, ok: true},
		{name: "stored, refetched wrong always", refetch: true, refetchBad: 99},
		{name: "content, refetched wrong always", asContent: true, refetch: true, refetchBad: 99},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, stored, content := splitPayload(t, b)
			if len(stored) < 6 {
				t.Fatalf("only %d chunks", len(stored))
			}
			fs := &fakeSource{stored: stored, content: content, asContent: tc.asContent, bad: len(stored) / 2, refetchBad: tc.refetchBad}
			var src ChunkSource = fs
			if tc.refetch {
				src = refetching{fs}
			}
			pr, err := tb.Chunks(src)
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			var got []byte
			for {
				c, err := pr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					if tc.ok {
						t.Fatalf("chunk %d: %v", pr.i, err)
					}
					if !errors.Is(err, ErrDigest) && !errors.Is(err, ErrChunk) {
						t.Fatalf("got %v, want a digest or chunk error", err)
					}
					if want := bytes.Join(content[:fs.bad], nil); !bytes.Equal(got, want) {
						t.Fatalf("handed out %d bytes before the error, want the %d of the chunks before the bad one", len(got), len(want))
					}
					if _, err2 := pr.Next(); err2 == nil {
						t.Fatal("a chunk after the error")
					}
					return
				}
				if !bytes.Equal(c.Data, content[c.Index]) {
					t.Fatalf("chunk %d: unverified bytes handed out", c.Index)
				}
				got = append(got, c.Data...)
			}
			if !tc.ok {
				t.Fatal("the wrong chunk was accepted")
			}
			if !bytes.Equal(got, data) {
				t.Fatal("content differs")
			}
			if n := pr.Counts(); n.Stored+n.Content != int64(len(stored)) || (tc.asContent && n.Stored != 1) {
				t.Fatalf("counts %+v of %d chunks", n, len(stored))
			}
		})
	}
}

// Without Verify, no chunk can be read by ranges either.
func TestTableNeedsVerify(t *testing.T) {
	b, _ := makeBundle(t, LevelDefault, false, testPayload{"system", KindSlot, testData(10_000, 32)})
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tableOff, dataOff := r.PayloadOffsets(0)
	if _, err := r.Table(0, b[tableOff:dataOff]); !errors.Is(err, ErrVerify) {
		t.Fatalf("Table before Verify: %v", err)
	}
	if _, err := (&Table{}).Chunks(&fakeSource{}); !errors.Is(err, ErrVerify) {
		t.Fatalf("Chunks of a table not from Reader.Table: %v", err)
	}
}
