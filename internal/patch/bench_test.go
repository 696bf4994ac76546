package patch

import (
	"bytes"
	"testing"
)

// BenchmarkApply measures the decoder's output rate (b.SetBytes: bytes of
// new image) on a 32 MiB pair: segments checked, decompressed and applied to
// a source read by offset. The chunk digests the installer checks
// afterwards are not part of it (bench/reader_test.go measures the reader).
func BenchmarkApply(b *testing.B) {
	old, nw := pair(5, 32<<20)
	entries := fixedEntries(nw, 64<<10)
	bs, err := buildSection(old, nw, nil, entries, 0)
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Join(bs.stored, nil)
	b.SetBytes(int64(len(nw)))
	b.ResetTimer()
	for range b.N {
		err := ApplySection(&bs.Section, entries, bytes.NewReader(data), bytes.NewReader(old), func(int, []byte) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
}
