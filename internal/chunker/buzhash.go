package chunker

import "math/bits"

// WindowSize is the number of bytes the rolling hash covers (casync's
// CA_CHUNKER_WINDOW_SIZE).
const WindowSize = 48

// buzTableRot holds every buzTable entry rotated left by WindowSize (48 ≡ 16
// mod 32): the term that takes the byte leaving the window out of the hash.
var buzTableRot = func() (t [256]uint32) {
	for i, v := range buzTable {
		t[i] = bits.RotateLeft32(v, WindowSize%32)
	}
	return t
}()

// Discriminator returns the modulus casync's cut test uses for the average
// chunk size avg: casync cuts after a byte whose window hash h satisfies
// h mod d == d-1. It reproduces CA_CHUNKER_DISCRIMINATOR_FROM_AVG, a double
// computation truncated to an integer, and the clamping to [min, max] done by
// ca_chunker_set_size.
func Discriminator(p Params) int {
	a := float64(p.Avg)
	// The explicit conversion keeps the compiler from fusing the multiply and
	// add into an FMA: casync, built for baseline amd64, rounds both.
	q := a / (float64(-1.42888852e-7*a) + 1.33237515)
	// Above an average of about 9.3 MB the denominator turns negative. casync
	// converts the negative quotient to size_t, which on amd64 yields a huge
	// value that is then clamped to max; do the same.
	if q < 0 || q >= float64(p.Max) {
		return p.Max
	}
	d := int(q) // truncation, as C's conversion
	if d < p.Min {
		d = p.Min
	}
	return d
}

// splitter finds chunk boundaries in memory. It is immutable once built and
// shared by the streaming Chunker and Boundaries.
type splitter struct {
	min, max int
	fixed    bool // min == avg == max: plain fixed-size cuts, as casync does
	// Cut test. casync cuts where h mod d == d-1, that is where d divides h+1.
	// Lemire's divisibility test says d | x iff x*m <= m-1 (mod 2^64) with
	// m = ceil(2^64/d), exact for x < 2^64/d (here x <= 2^32, d <= 2^24).
	// With x = h+1 that is h*m + m <= m-1, i.e. h*m >= 2^64-m = thresh.
	m, thresh uint64
}

func newSplitter(p Params) splitter {
	d := uint64(Discriminator(p))
	m := ^uint64(0)/d + 1
	return splitter{
		min:    p.Min,
		max:    p.Max,
		fixed:  p.Min == p.Avg && p.Avg == p.Max,
		m:      m,
		thresh: -m,
	}
}

// cut returns the length of the chunk that starts at data[0], when data holds
// everything up to the end of the input or at least max bytes.
func (s *splitter) cut(data []byte) int {
	n := len(data)
	if n > s.max {
		n = s.max
	}
	if s.fixed || n <= s.min {
		return n
	}
	// casync hashes from the start of the chunk, but a window hash depends
	// only on the 48 bytes in the window and no cut can happen before min, so
	// the first window that matters is the one ending at min; the bytes before
	// it are skipped. (Upstream casync skips them too since 2022; Debian's
	// casync 2, a 2020 snapshot, hashes them, with the same boundaries.)
	lo := s.min
	var h uint32
	for _, b := range data[lo-WindowSize : lo] {
		h = bits.RotateLeft32(h, 1) ^ buzTable[b]
	}
	m, thresh := s.m, s.thresh
	if uint64(h)*m >= thresh {
		return lo
	}
	return lo + roll(h, data[lo-WindowSize:n-WindowSize], data[lo:n], m, thresh)
}

// roll advances the hash h over in (out[i] leaves the window as in[i]
// enters), and returns how many bytes of in it consumed up to and including
// the first byte whose hash passes the cut test, or len(in) if none does.
func roll(h uint32, out, in []byte, m, thresh uint64) int {
	t, tr := &buzTable, &buzTableRot
	in = in[:len(out)]
	i := 0
	// Unrolled by four. Each step is h' = rol(h, 1) ^ x: x = tr[out] ^ t[in]
	// is formed first (its loads and xor do not wait for h), so the chain
	// carried from byte to byte is one rotate and one xor; the cut test, a
	// multiply and compare, hangs off that chain.
	for ; i+4 <= len(out); i += 4 {
		o := out[i : i+4 : i+4]
		n := in[i : i+4 : i+4]
		h = bits.RotateLeft32(h, 1) ^ (tr[o[0]] ^ t[n[0]])
		if uint64(h)*m >= thresh {
			return i + 1
		}
		h = bits.RotateLeft32(h, 1) ^ (tr[o[1]] ^ t[n[1]])
		if uint64(h)*m >= thresh {
			return i + 2
		}
		h = bits.RotateLeft32(h, 1) ^ (tr[o[2]] ^ t[n[2]])
		if uint64(h)*m >= thresh {
			return i + 3
		}
		h = bits.RotateLeft32(h, 1) ^ (tr[o[3]] ^ t[n[3]])
		if uint64(h)*m >= thresh {
			return i + 4
		}
	}
	for ; i < len(out); i++ {
		h = bits.RotateLeft32(h, 1) ^ (tr[out[i]] ^ t[in[i]])
		if uint64(h)*m >= thresh {
			return i + 1
		}
	}
	return len(out)
}
