package chunker

import (
	"bytes"
	"sync"
	"testing"
)

// benchInput returns the 64 MiB benchmark input, made on first use so that
// tests and fuzz workers do not pay for it.
var benchInput = sync.OnceValue(func() []byte { return pseudoRandom(42, 64<<20) })

func benchChunker(b *testing.B, newChunker func(*bytes.Reader) (*Chunker, error)) {
	benchData := benchInput()
	r := bytes.NewReader(benchData)
	c, err := newChunker(r)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(benchData)))
	b.ReportAllocs()
	var chunks int
	for b.Loop() {
		r.Reset(benchData)
		c.Reset(r)
		for {
			if _, err := c.Next(); err != nil {
				break
			}
			chunks++
		}
	}
	b.ReportMetric(float64(len(benchData))*float64(b.N)/float64(chunks), "B/chunk")
}

// BenchmarkChunker streams 64 MiB of pseudo-random data through the
// content-defined chunker with casync's default parameters.
func BenchmarkChunker(b *testing.B) {
	benchChunker(b, func(r *bytes.Reader) (*Chunker, error) { return New(r, DefaultParams()) })
}

// BenchmarkFixed streams the same data through the 64 KiB fixed-size chunker.
func BenchmarkFixed(b *testing.B) {
	benchChunker(b, func(r *bytes.Reader) (*Chunker, error) { return NewFixed(r, 64<<10) })
}

// BenchmarkBoundaries chunks the data in memory, without the reader copy.
func BenchmarkBoundaries(b *testing.B) {
	benchData := benchInput()
	b.SetBytes(int64(len(benchData)))
	for b.Loop() {
		Boundaries(benchData, DefaultParams())
	}
}
