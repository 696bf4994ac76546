package chunker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/bits"
	"slices"
	"testing"
)

// pseudoRandom returns n bytes of splitmix64 output for seed. It is defined
// here rather than taken from math/rand so that the golden files stay valid
// whatever the Go version.
func pseudoRandom(seed uint64, n int) []byte {
	out := make([]byte, (n+7)&^7)
	x := seed
	for i := 0; i < len(out); i += 8 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(out[i:], z^(z>>31))
	}
	return out[:n]
}

// textLike returns n bytes of low-entropy, repetitive data: words from a small
// vocabulary picked by splitmix64, with occasional long verbatim repeats of
// earlier output, like logs or source trees.
func textLike(seed uint64, n int) []byte {
	words := []string{"the", "update", "slot", "bundle", "chunk", "kernel", "rootfs",
		"boot", "image", "verity", "hash", "signature", "\n", "    ", "error", "ok",
		"tandem", "A", "B", "{", "}", "=", "0x1f", "partition", "mount", "sync"}
	rnd := pseudoRandom(seed, n/2+64)
	var b bytes.Buffer
	for i := 0; b.Len() < n; i += 2 {
		if i+1 >= len(rnd) {
			i = 0
		}
		r := binary.LittleEndian.Uint16(rnd[i:])
		if r%97 == 0 && b.Len() > 4096 {
			// Repeat an earlier stretch verbatim.
			from := int(r) * 31 % (b.Len() - 2048)
			b.Write(slices.Clone(b.Bytes()[from : from+2048]))
			continue
		}
		b.WriteString(words[int(r)%len(words)])
		b.WriteByte(' ')
	}
	return b.Bytes()[:n]
}

// refBoundaries is a deliberately literal transcription of casync's
// algorithm (hash from the first byte of each chunk, modulo test, min and max
// checks per byte) used as an oracle for the optimised code.
func refBoundaries(data []byte, p Params) []int {
	d := uint32(Discriminator(p))
	var ends []int
	for start := 0; start < len(data); {
		end := len(data)
		var h uint32
		for i := start; i < len(data); i++ {
			n := i - start + 1 // chunk size including data[i]
			switch {
			case n < WindowSize:
				continue
			case n == WindowSize:
				h = 0
				for j := 0; j < WindowSize; j++ {
					h ^= bits.RotateLeft32(buzTable[data[start+j]], WindowSize-1-j)
				}
			default:
				h = bits.RotateLeft32(h, 1) ^ bits.RotateLeft32(buzTable[data[i-WindowSize]], WindowSize) ^ buzTable[data[i]]
			}
			if n >= p.Max || (n >= p.Min && h%d == d-1) {
				end = i + 1
				break
			}
		}
		ends = append(ends, end)
		start = end
	}
	return ends
}

// fixedBoundaries returns the expected ends of fixed-size chunking.
func fixedBoundaries(n, size int) []int {
	var ends []int
	for off := size; ; off += size {
		if off >= n {
			if n > 0 {
				ends = append(ends, n)
			}
			return ends
		}
		ends = append(ends, off)
	}
}

// streamBoundaries chunks r with c and checks the chunks against data.
func streamBoundaries(t testing.TB, c *Chunker, data []byte) []int {
	t.Helper()
	var ends []int
	off := 0
	for {
		chunk, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Next after %d bytes: %v", off, err)
		}
		if len(chunk) == 0 {
			t.Fatalf("empty chunk at offset %d", off)
		}
		if !bytes.Equal(chunk, data[off:off+len(chunk)]) {
			t.Fatalf("chunk at offset %d (%d bytes) differs from the input", off, len(chunk))
		}
		off += len(chunk)
		ends = append(ends, off)
	}
	if off != len(data) {
		t.Fatalf("chunks cover %d bytes, input has %d", off, len(data))
	}
	if _, err := c.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after EOF: %v, want io.EOF", err)
	}
	return ends
}

// checkSizes verifies that every chunk but the last is within [min, max] and
// the last within [1, max].
func checkSizes(t testing.TB, ends []int, n int, p Params) {
	t.Helper()
	prev := 0
	for i, e := range ends {
		size := e - prev
		if size < 1 || size > p.Max || (i < len(ends)-1 && size < p.Min) {
			t.Fatalf("chunk %d [%d,%d) has size %d, outside %v", i, prev, e, size, p)
		}
		prev = e
	}
	if prev != n {
		t.Fatalf("boundaries end at %d, input has %d bytes", prev, n)
	}
}

// chunkReader reads at most n bytes per call, cycling through the sizes.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := r.sizes[r.i%len(r.sizes)]
	r.i++
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}
