// Package chunker splits a byte stream into content-defined chunks the way
// casync does, so that tandem's update bundles share chunks with (and can be
// checked against) casync's .caibx indexes.
//
// The content-defined chunker is casync's buzhash chunker: a 48-byte rolling
// window hashed with casync's 256-entry table, a cut after any byte whose
// window hash h satisfies h mod d == d-1, where the discriminator d is derived
// from the average chunk size exactly as casync derives it (see
// Discriminator). No chunk is cut shorter than Params.Min, every chunk is cut
// at Params.Max at the latest, and the last chunk is whatever remains. For
// the same data and parameters the boundaries are identical to those of
// `casync make --chunk-size=MIN:AVG:MAX`.
//
// When Min == Avg == Max (see Fixed) the chunks are simply of that size, which
// is also what casync does for such parameters; NewFixed builds a fixed-size
// chunker for any size.
//
// Chunker reads from an io.Reader and hands out one chunk at a time from an
// internal buffer of 2·Max bytes, without allocating per chunk; Boundaries
// chunks a byte slice in memory.
package chunker

import (
	"errors"
	"fmt"
	"io"
)

// Limits on chunk sizes accepted by New.
const (
	// MinSize is the smallest allowed Params.Min. It exceeds WindowSize, so
	// the hash window always lies inside the chunk when a cut is tested.
	MinSize = 64
	// MaxSize is the largest allowed Params.Max and fixed chunk size.
	MaxSize = 16 << 20
)

// Params are the chunk size limits of the content-defined chunker, in bytes.
// Avg is the target average; it determines the cut discriminator. casync's
// discriminator formula assumes Min = Avg/4 and Max = 4·Avg: other ratios
// work, but the real average then drifts from Avg.
type Params struct {
	Min, Avg, Max int
}

// DefaultParams returns casync's defaults: 16 KiB / 64 KiB / 256 KiB.
func DefaultParams() Params { return ParamsForAvg(64 << 10) }

// ParamsForAvg returns the parameters casync picks for the average size avg:
// Min = avg/4 and Max = 4·avg. It does not validate them.
func ParamsForAvg(avg int) Params { return Params{Min: avg / 4, Avg: avg, Max: avg * 4} }

// Fixed returns parameters for fixed-size chunks of size bytes (Min = Avg =
// Max = size), casync's fixed-size mode. New accepts them for
// MinSize <= size <= MaxSize; NewFixed has no lower limit.
func Fixed(size int) Params { return Params{Min: size, Avg: size, Max: size} }

// Validate reports whether p is usable: MinSize <= Min <= Avg <= Max <= MaxSize.
func (p Params) Validate() error {
	switch {
	case p.Min < MinSize:
		return fmt.Errorf("chunker: minimum chunk size %d is below %d", p.Min, MinSize)
	case p.Min > p.Avg:
		return fmt.Errorf("chunker: minimum chunk size %d exceeds average %d", p.Min, p.Avg)
	case p.Avg > p.Max:
		return fmt.Errorf("chunker: average chunk size %d exceeds maximum %d", p.Avg, p.Max)
	case p.Max > MaxSize:
		return fmt.Errorf("chunker: maximum chunk size %d exceeds %d", p.Max, MaxSize)
	}
	return nil
}

// String formats p the way casync's --chunk-size option takes it.
func (p Params) String() string { return fmt.Sprintf("%d:%d:%d", p.Min, p.Avg, p.Max) }

// maxEmptyReads bounds successive (0, nil) reads before giving up, as bufio does.
const maxEmptyReads = 100

// Chunker splits the data of an io.Reader into chunks. It is not safe for
// concurrent use.
type Chunker struct {
	r      io.Reader
	s      splitter
	buf    []byte // 2·max bytes (64 KiB at least); buf[lo:hi] is read, not yet handed out
	lo, hi int
	eof    bool  // r reported io.EOF
	err    error // sticky: io.EOF after the last chunk, or a read error
}

// New returns a content-defined chunker reading r, with the limits p.
func New(r io.Reader, p Params) (*Chunker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return newChunker(r, newSplitter(p)), nil
}

// NewFixed returns a chunker that cuts r into chunks of exactly size bytes,
// the last one excepted. size must be between 1 and MaxSize.
func NewFixed(r io.Reader, size int) (*Chunker, error) {
	if size < 1 || size > MaxSize {
		return nil, fmt.Errorf("chunker: fixed chunk size %d is outside 1..%d", size, MaxSize)
	}
	return newChunker(r, splitter{min: size, max: size, fixed: true}), nil
}

// minBuffer keeps reads reasonably large for small fixed chunk sizes.
const minBuffer = 64 << 10

func newChunker(r io.Reader, s splitter) *Chunker {
	return &Chunker{r: r, s: s, buf: make([]byte, max(2*s.max, minBuffer))}
}

// Reset makes c chunk r from its start, keeping the parameters and reusing
// the buffer.
func (c *Chunker) Reset(r io.Reader) {
	c.r, c.lo, c.hi, c.eof, c.err = r, 0, 0, false, nil
}

// Next returns the next chunk. The slice aliases the chunker's buffer and is
// valid only until the next call. After the last chunk Next returns io.EOF;
// an empty input yields no chunk at all. If reading fails, Next returns the
// error and no further chunks (the data buffered so far is not handed out,
// so a failed read never looks like a short final chunk).
func (c *Chunker) Next() ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	if c.hi-c.lo < c.s.max && !c.eof {
		if err := c.fill(); err != nil {
			c.err = err
			return nil, err
		}
	}
	if c.lo == c.hi {
		c.err = io.EOF
		return nil, io.EOF
	}
	n := c.s.cut(c.buf[c.lo:c.hi])
	chunk := c.buf[c.lo : c.lo+n : c.lo+n]
	c.lo += n
	return chunk, nil
}

// fill moves the unread bytes to the front of the buffer and reads until it
// holds at least max bytes or the reader is at its end.
func (c *Chunker) fill() error {
	if c.lo > 0 {
		c.hi = copy(c.buf, c.buf[c.lo:c.hi])
		c.lo = 0
	}
	empty := 0
	for c.hi < c.s.max {
		n, err := c.r.Read(c.buf[c.hi:])
		if n < 0 || n > len(c.buf)-c.hi {
			return errors.New("chunker: reader returned an invalid count")
		}
		c.hi += n
		switch {
		case err == io.EOF:
			c.eof = true
			return nil
		case err != nil:
			return err
		case n > 0:
			empty = 0
		default:
			if empty++; empty >= maxEmptyReads {
				return io.ErrNoProgress
			}
		}
	}
	return nil
}

// Boundaries returns the end offset of every chunk of data, as chunked by a
// Chunker with parameters p: the last offset is len(data), and an empty data
// has no boundaries. It panics if p is invalid.
func Boundaries(data []byte, p Params) []int {
	if err := p.Validate(); err != nil {
		panic(err)
	}
	s := newSplitter(p)
	var ends []int
	for off := 0; off < len(data); {
		off += s.cut(data[off:])
		ends = append(ends, off)
	}
	return ends
}
