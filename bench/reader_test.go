package bench

import (
	"bufio"
	"io"
	"os"
	"testing"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/signature"
)

// BenchmarkReadBundle reads and verifies every chunk of the bundle named by
// $BENCH_BUNDLE (bench/run.sh's bundle of the 1 GiB image) and discards the
// data: the reader's share of an install, without the slot write.
func BenchmarkReadBundle(b *testing.B) {
	path := os.Getenv("BENCH_BUNDLE")
	if path == "" {
		b.Skip("BENCH_BUNDLE is not set (bash bench/run.sh sets it)")
	}
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		br, err := bundle.NewReader(bufio.NewReaderSize(f, 1<<20))
		if err != nil {
			b.Fatal(err)
		}
		if err := br.Verify(func(*bundle.Header, bundle.Hash, []signature.Signature) error { return nil }); err != nil {
			b.Fatal(err)
		}
		var n int64
		for {
			pr, err := br.NextPayload()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			for {
				c, err := pr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				n += int64(len(c.Data))
			}
		}
		br.Close()
		f.Close()
		b.SetBytes(n)
	}
}
