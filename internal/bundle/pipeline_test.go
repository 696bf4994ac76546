package bundle

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

// chunkSpans returns where each chunk of payload 0 is stored in b.
func chunkSpans(t *testing.T, b []byte) (spans [][2]int) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tableOff, dataOff := r.PayloadOffsets(0)
	p := r.Header.Payloads[0]
	entries, err := ParseTable(b[tableOff:tableOff+int64(p.TableSize())], &p)
	if err != nil {
		t.Fatal(err)
	}
	off := int(dataOff)
	for _, e := range entries {
		spans = append(spans, [2]int{off, off + int(e.StoredSize)})
		off += int(e.StoredSize)
	}
	return spans
}

// The first bad chunk is the one reported, whatever the pipeline verified
// ahead; nothing after it (and nothing bad) is handed out.
func TestPipelineFirstErrorWins(t *testing.T) {
	data := testData(600_000, 11)
	b, _ := makeBundle(t, LevelDefault, false, testPayload{"system", KindSlot, data})
	spans := chunkSpans(t, b)
	if len(spans) < 40 {
		t.Fatalf("only %d chunks", len(spans))
	}
	for _, bad := range [][2]int{{3, 4}, {0, 30}, {20, 21}, {5, -1}, {len(spans) - 1, -1}} {
		mod := bytes.Clone(b)
		mod[spans[bad[0]][0]+1] ^= 0x40
		if bad[1] >= 0 {
			mod[spans[bad[1]][0]] ^= 0x40
		} else {
			mod = mod[:spans[bad[0]][1]-1] // and cut inside the same chunk
		}
		r, _ := NewReader(bytes.NewReader(mod))
		r.Verify(acceptAll)
		pr, err := r.NextPayload()
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for {
			c, err := pr.Next()
			if err != nil {
				want := fmt.Sprintf("chunk %d of payload", bad[0])
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("bad %v: %v, want %q", bad, err, want)
				}
				if c.Data != nil {
					t.Fatal("data with an error")
				}
				if _, err2 := pr.Next(); err2 != err {
					t.Fatalf("not sticky: %v then %v", err, err2)
				}
				break
			}
			got = append(got, c.Data...)
		}
		if !bytes.Equal(got, data[:len(got)]) || len(got) != offsetOf(t, b, bad[0]) {
			t.Fatalf("bad %v: handed out %d bytes", bad, len(got))
		}
		r.Close()
	}
}

func offsetOf(t *testing.T, b []byte, chunk int) int {
	r, _ := NewReader(bytes.NewReader(b))
	off := len(r.HeaderBytes) + len(r.SigBytes)
	p := r.Header.Payloads[0]
	entries, _ := ParseTable(b[off:off+int(p.TableSize())], &p)
	n := 0
	for _, e := range entries[:chunk] {
		n += int(e.Size)
	}
	return n
}

// A held chunk is not overwritten while the pipeline runs ahead.
func TestPipelineHeldChunkStable(t *testing.T) {
	data := testData(400_000, 12)
	b, _ := makeBundle(t, LevelFastest, false, testPayload{"system", KindSlot, data})
	r, _ := NewReader(bytes.NewReader(b))
	r.Verify(acceptAll)
	pr, _ := r.NextPayload()
	for {
		c, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		snap := bytes.Clone(c.Data)
		time.Sleep(200 * time.Microsecond)
		if !bytes.Equal(snap, c.Data) || !bytes.Equal(c.Data, data[c.Offset:c.Offset+uint64(len(c.Data))]) {
			t.Fatalf("chunk %d changed while held", c.Index)
		}
	}
}

// Skip after some chunks, then the next payload reads correctly; Close
// mid-payload leaves no goroutine behind.
func TestPipelineSkipAndClose(t *testing.T) {
	a, c := testData(300_000, 13), testData(100_000, 14)
	b, _ := makeBundle(t, LevelDefault, false, testPayload{"a", KindSlot, a}, testPayload{"c", KindSlot, c})
	for _, k := range []int{0, 1, 5, 1000} {
		r, _ := NewReader(bytes.NewReader(b))
		r.Verify(acceptAll)
		pr, _ := r.NextPayload()
		for i := 0; i < k; i++ {
			if _, err := pr.Next(); err != nil {
				break
			}
		}
		if err := pr.Skip(); err != nil {
			t.Fatalf("skip after %d: %v", k, err)
		}
		pr2, err := r.NextPayload()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(pr2)
		if err != nil || !bytes.Equal(got, c) {
			t.Fatalf("after skip at %d: %v", k, err)
		}
		if _, err := r.NextPayload(); err != io.EOF {
			t.Fatal(err)
		}
	}
	before := runtime.NumGoroutine()
	for range 20 {
		r, _ := NewReader(bytes.NewReader(b))
		r.Verify(acceptAll)
		pr, _ := r.NextPayload()
		pr.Next()
		pr.Next()
		r.Close()
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
}

// Chunks so large that only one fits the budget still read.
func TestPipelineOneSlot(t *testing.T) {
	data := testData(20<<20, 15)
	var buf bytes.Buffer
	_, err := Write(&buf, Header{Compatible: "x", Version: "1.0.0", Created: 1}, []PayloadSpec{{Name: "s", Kind: KindSlot, Target: "s",
		Chunker: ChunkerFixed, ChunkSize: 12 << 20, Source: bytes.NewReader(data)}}, Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := readAll(buf.Bytes())
	if err != nil || !bytes.Equal(got["s"], data) {
		t.Fatalf("%v", err)
	}
}
