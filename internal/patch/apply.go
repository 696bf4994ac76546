package patch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Applier produces the output of one segment from its raw bytes and the
// source, read by offset. Its output is not trusted: the caller checks every
// chunk against the bundle's chunk table.
type Applier struct {
	src     *sourceCache
	ctrl    []byte // the instructions not yet read
	diff    []byte // the diff bytes not yet used
	extra   []byte // the extra bytes not yet used
	ops     uint64 // instructions not yet read
	pos     int64  // source position of the current instruction's diff
	dLeft   uint64 // diff bytes of the current instruction still to produce
	eLeft   uint64 // extra bytes of the current instruction still to produce
	outLeft uint64
}

// ErrCorrupt is a segment whose instructions do not add up (only a bug or
// a forged signature can make one: segments are checked by digest first).
var ErrCorrupt = errors.New("patch: corrupt segment")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// NewApplier checks raw, the decoded bytes of a segment that produces out
// bytes from a source of srcSize bytes, and returns its applier. The
// check is complete: every instruction reads within the source, and the
// instructions use exactly the diff and extra bytes raw carries and
// produce exactly out bytes.
func NewApplier(raw []byte, out uint64, src io.ReaderAt, srcSize int64) (*Applier, error) {
	r := raw
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(r)
		if n <= 0 {
			return 0, false
		}
		r = r[n:]
		return v, true
	}
	count, ok := uv()
	if !ok || count > uint64(len(r))/3 {
		return nil, corrupt("instruction count")
	}
	ctrl := r
	var diffTotal, extraTotal uint64
	var prev int64
	for i := uint64(0); i < count; i++ {
		d, ok1 := uv()
		e, ok2 := uv()
		seek, n := binary.Varint(r)
		if !ok1 || !ok2 || n <= 0 {
			return nil, corrupt("instruction %d", i)
		}
		r = r[n:]
		if d > out || e > out || diffTotal+extraTotal+d+e > out {
			return nil, corrupt("instruction %d produces more than the segment's %d bytes", i, out)
		}
		p := prev + seek
		if seek < -(1<<62) || seek > 1<<62 || p < 0 || p > srcSize || uint64(srcSize-p) < d {
			return nil, corrupt("instruction %d reads outside the source", i)
		}
		prev = p + int64(d)
		diffTotal += d
		extraTotal += e
	}
	ctrl = ctrl[:len(ctrl)-len(r)]
	if diffTotal+extraTotal != out {
		return nil, corrupt("instructions produce %d bytes, the segment's chunks hold %d", diffTotal+extraTotal, out)
	}
	if uint64(len(r)) != diffTotal+extraTotal {
		return nil, corrupt("%d diff and extra bytes, the instructions use %d", len(r), diffTotal+extraTotal)
	}
	return &Applier{src: newSourceCache(src), ctrl: ctrl, diff: r[:diffTotal], extra: r[diffTotal:], ops: count, outLeft: out}, nil
}

// next loads the next instruction (NewApplier checked them all).
func (a *Applier) next() {
	d, n := binary.Uvarint(a.ctrl)
	a.ctrl = a.ctrl[n:]
	e, n := binary.Uvarint(a.ctrl)
	a.ctrl = a.ctrl[n:]
	seek, n := binary.Varint(a.ctrl)
	a.ctrl = a.ctrl[n:]
	a.pos += seek
	a.dLeft, a.eLeft = d, e
	a.ops--
}

// Read fills dst with the next len(dst) bytes of the segment's output.
func (a *Applier) Read(dst []byte) error {
	if uint64(len(dst)) > a.outLeft {
		return corrupt("asked for %d bytes, %d left", len(dst), a.outLeft)
	}
	a.outLeft -= uint64(len(dst))
	if a.outLeft == 0 {
		defer a.src.release()
	}
	for len(dst) > 0 {
		if a.dLeft == 0 && a.eLeft == 0 {
			a.next()
			continue
		}
		if a.dLeft > 0 {
			n := int(min(a.dLeft, uint64(len(dst))))
			if err := a.readSource(dst[:n]); err != nil {
				return err
			}
			addBytes(dst[:n], a.diff[:n])
			a.diff = a.diff[n:]
			a.pos += int64(n)
			a.dLeft -= uint64(n)
			dst = dst[n:]
			continue
		}
		n := copy(dst, a.extra[:min(a.eLeft, uint64(len(dst)))])
		a.extra = a.extra[n:]
		a.eLeft -= uint64(n)
		dst = dst[n:]
	}
	return nil
}

// addBytes adds d to b byte by byte (mod 256), eight bytes at a time.
func addBytes(b, d []byte) {
	const hi = 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		y := binary.LittleEndian.Uint64(d[i:])
		if y == 0 {
			continue
		}
		x := binary.LittleEndian.Uint64(b[i:])
		binary.LittleEndian.PutUint64(b[i:], ((x&^hi)+(y&^hi))^((x^y)&hi))
	}
	for ; i < len(b); i++ {
		b[i] += d[i]
	}
}

// readSource reads dst from the source at a.pos, the current instruction's
// position. Reads that the window does not hold refill it with exactly the
// source bytes the next instructions use (span), so the source is read
// once however the instructions jump; a read of at least half a window
// goes straight to dst.
func (a *Applier) readSource(dst []byte) error {
	c := a.src
	if len(dst) >= sourceWindow/2 {
		return readFullAt(c.r, dst, a.pos)
	}
	if !c.has(a.pos, len(dst)) {
		if err := c.fill(a.pos, a.span()); err != nil {
			return err
		}
	}
	copy(dst, c.buf[a.pos-c.off:])
	return nil
}

// span returns how many source bytes from a.pos the current instruction and
// the ones after it read, as long as each reads within a window from a.pos
// and starts at most spanGap bytes after the bytes before it (the gaps are
// read too): at least the rest of the current instruction's diff, at most
// sourceWindow.
func (a *Applier) span() int {
	start := a.pos
	end := start + int64(min(a.dLeft, sourceWindow))
	limit := start + sourceWindow
	prev := start + int64(a.dLeft) // where the current instruction's diff ends
	ctrl := a.ctrl
	for range min(a.ops, spanLookahead) {
		d, n := binary.Uvarint(ctrl)
		ctrl = ctrl[n:]
		_, n = binary.Uvarint(ctrl)
		ctrl = ctrl[n:]
		seek, n := binary.Varint(ctrl)
		ctrl = ctrl[n:]
		p := prev + seek
		prev = p + int64(d)
		if d == 0 {
			continue
		}
		if p < start || prev > limit || p > end+spanGap {
			break
		}
		end = max(end, prev)
	}
	return int(end - start)
}

const (
	// sourceWindow is the most a refill of the source window reads.
	sourceWindow = 1 << 20
	// spanGap is the most source bytes a refill reads that no instruction
	// uses, between two that it serves.
	spanGap = 16 << 10
	// spanLookahead bounds the instructions a refill looks at.
	spanLookahead = 1024
)

// sourceCache holds the source bytes [off, off+n), read by offset.
type sourceCache struct {
	r   io.ReaderAt
	buf []byte
	off int64
	n   int
}

func newSourceCache(r io.ReaderAt) *sourceCache { return &sourceCache{r: r} }

func (c *sourceCache) has(off int64, n int) bool {
	return c.n > 0 && off >= c.off && off+int64(n) <= c.off+int64(c.n)
}

// windows recycles the windows of finished appliers (one per segment).
var windows = sync.Pool{New: func() any { return new([sourceWindow]byte) }}

// release gives the window back once the segment is done.
func (c *sourceCache) release() {
	if c.buf != nil {
		windows.Put((*[sourceWindow]byte)(c.buf))
		c.buf, c.n = nil, 0
	}
}

// fill reads the n source bytes at off (n <= sourceWindow).
func (c *sourceCache) fill(off int64, n int) error {
	if c.buf == nil {
		c.buf = windows.Get().(*[sourceWindow]byte)[:]
	}
	c.n = 0
	if err := readFullAt(c.r, c.buf[:n], off); err != nil {
		return err
	}
	c.off, c.n = off, n
	return nil
}

func readFullAt(r io.ReaderAt, dst []byte, off int64) error {
	n, err := r.ReadAt(dst, off)
	if n == len(dst) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read source at %d: %w", off, err)
}

// decoder decompresses segments: one frame, output bounded by the raw size.
var decoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(MaxSegmentRaw+1), zstd.WithDecoderMaxWindow(MaxSegmentRaw))
})

// DecodeSegment checks a segment's stored bytes against its signed digest
// and returns its raw bytes, appended to buf[:0].
func DecodeSegment(g Segment, stored, buf []byte) ([]byte, error) {
	if err := CheckSegment(g, stored); err != nil {
		return nil, err
	}
	return decodeRaw(g, stored, buf)
}

// decodeRaw decompresses a segment's stored bytes (not checked).
func decodeRaw(g Segment, stored, buf []byte) ([]byte, error) {
	if g.Flags&FlagZstd == 0 {
		return append(buf[:0], stored...), nil
	}
	dec, err := decoder()
	if err != nil {
		return nil, err
	}
	if cap(buf) < int(g.RawSize)+1 {
		buf = make([]byte, 0, int(g.RawSize)+1)
	}
	raw, err := dec.DecodeAll(stored, buf[:0:int(g.RawSize)+1])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if len(raw) != int(g.RawSize) {
		return nil, corrupt("%d raw bytes, the header says %d", len(raw), g.RawSize)
	}
	return raw, nil
}
