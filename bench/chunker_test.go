package bench

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/tandem-ota/tandem/internal/chunker"
)

// realImage reads the file named by $BENCH_IMAGE (bench/run.sh sets it to
// its 1 GiB tar of /usr); the benchmarks skip without it.
func realImage(b *testing.B) []byte {
	path := os.Getenv("BENCH_IMAGE")
	if path == "" {
		b.Skip("BENCH_IMAGE is not set (bash bench/run.sh sets it)")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkRealImage cuts the real image in memory with the default
// (casync) parameters, on one core.
func BenchmarkRealImage(b *testing.B) {
	data := realImage(b)
	b.SetBytes(int64(len(data)))
	var chunks int
	for b.Loop() {
		chunks = len(chunker.Boundaries(data, chunker.DefaultParams()))
	}
	b.ReportMetric(float64(len(data))/float64(chunks), "B/chunk")
}

// BenchmarkRealImageStream streams the same data through a Chunker (what
// bundle creation does), including the copy into its buffer.
func BenchmarkRealImageStream(b *testing.B) {
	data := realImage(b)
	b.SetBytes(int64(len(data)))
	r := bytes.NewReader(data)
	c, err := chunker.New(r, chunker.DefaultParams())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		r.Reset(data)
		c.Reset(r)
		for {
			if _, err := c.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}
