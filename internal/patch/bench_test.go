package patch

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkApply measures the decoder's output rate (b.SetBytes: bytes of
// new image) on a 32 MiB pair: segments checked, decompressed and applied to
// a source read by offset. The chunk digests the installer checks
// afterwards are not part of it (bench/reader_test.go measures the reader).
func BenchmarkApply(b *testing.B) {
	old, nw := pair(5, 32<<20)
	benchApply(b, old, nw)
}

// BenchmarkApplyScattered is the kernel and package upgrade's shape
// (bench/delta.sh, k1 → k2): the new image is pieces of 2 to 34 KiB taken
// from all over the source, each slightly changed, so the decoder jumps
// between source offsets hundreds of thousands of times.
func BenchmarkApplyScattered(b *testing.B) {
	old, nw := scattered(7, 64<<20)
	benchApply(b, old, nw)
}

// benchApply applies the patch of old → nw to old read from a file, as a
// device reads its slot.
func benchApply(b *testing.B, old, nw []byte) {
	entries := fixedEntries(nw, 64<<10)
	bs, err := buildSection(old, nw, nil, entries, 0)
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Join(bs.stored, nil)
	p := filepath.Join(b.TempDir(), "source")
	if err := os.WriteFile(p, old, 0o644); err != nil {
		b.Fatal(err)
	}
	src, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	b.SetBytes(int64(len(nw)))
	b.ResetTimer()
	for range b.N {
		err := ApplySection(&bs.Section, entries, bytes.NewReader(data), src, func(int, []byte) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
}
