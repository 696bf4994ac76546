package patch

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// op is one instruction of the encoding: diff bytes read from the source at
// src, each plus a byte difference, then extra new bytes.
type op struct {
	src   int64
	diff  int
	extra int
}

// The source index: the hash of the hashWin bytes at every stride-th source
// position. A match of at least hashWin+stride-1 bytes is always found.
const (
	hashWin = 32
	stride  = 16
)

type index struct {
	table []uint32 // position/stride + 1; 0 = empty
	shift uint
}

func winHash(b []byte) uint64 {
	a := binary.LittleEndian.Uint64(b)
	c := binary.LittleEndian.Uint64(b[8:])
	d := binary.LittleEndian.Uint64(b[16:])
	e := binary.LittleEndian.Uint64(b[24:])
	h := a*0x9E3779B97F4A7C15 ^ bits.RotateLeft64(c*0xC2B2AE3D27D4EB4F, 21) ^
		bits.RotateLeft64(d*0x165667B19E3779F9, 42) ^ bits.RotateLeft64(e*0x27D4EB2F165667C5, 11)
	return (h ^ h>>29) * 0x9E3779B97F4A7C15
}

func buildIndex(old []byte) (*index, error) {
	n := len(old)/stride + 1
	if uint64(n) >= 1<<32-1 {
		return nil, fmt.Errorf("patch: source of %d bytes is too large (limit %d)", len(old), uint64(stride)<<32)
	}
	bitsN := uint(bits.Len(uint(2*n - 1)))
	x := &index{table: make([]uint32, 1<<bitsN), shift: 64 - bitsN}
	for p := 0; p+hashWin <= len(old); p += stride {
		h := winHash(old[p:]) >> x.shift
		if x.table[h] == 0 {
			x.table[h] = uint32(p/stride) + 1
		}
	}
	return x, nil
}

// matchLen returns how many bytes a and b have in common from their start.
func matchLen(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		if x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:]); x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for ; i < n && a[i] == b[i]; i++ {
	}
	return i
}

// match finds a long exact match of nw[scan:] in old: the current
// alignment (scan+off) or the index's candidate, whichever is longer.
func (x *index) match(old, nw []byte, scan int, off int64) (pos, n int) {
	pos = -1
	if p := int64(scan) + off; p >= 0 && p < int64(len(old)) {
		pos, n = int(p), matchLen(old[p:], nw[scan:])
	}
	if scan+hashWin <= len(nw) {
		if c := x.table[winHash(nw[scan:])>>x.shift]; c != 0 {
			p := int(c-1) * stride
			if l := matchLen(old[p:], nw[scan:]); l >= hashWin && l > n {
				pos, n = p, l
			}
		}
	}
	if pos < 0 {
		pos = 0
	}
	return pos, n
}

// diff returns instructions that turn old into nw, in output order and
// covering nw whole. It follows the structure of Colin Percival's bsdiff
// (approximate matches extended while more than half their bytes agree,
// the bytes in between as new data), with a hash index of the source in
// place of a suffix array: linear time and memory of 4 bytes per 8 source
// bytes (rounded up to a power of two).
func diff(old, nw []byte) ([]op, error) {
	x, err := buildIndex(old)
	if err != nil {
		return nil, err
	}
	at := func(p int64) int {
		if p < 0 || p >= int64(len(old)) {
			return -1
		}
		return int(old[p])
	}
	var ops []op
	scan, length, lastScan, lastPos, pos := 0, 0, 0, 0, 0
	var lastOff int64
	for scan < len(nw) {
		oldScore := 0
		scan += length
		scsc := scan
		for ; scan < len(nw); scan++ {
			pos, length = x.match(old, nw, scan, lastOff)
			for ; scsc < scan+length; scsc++ {
				if at(int64(scsc)+lastOff) == int(nw[scsc]) {
					oldScore++
				}
			}
			if (length == oldScore && length != 0) || length > oldScore+8 {
				break
			}
			if at(int64(scan)+lastOff) == int(nw[scan]) {
				oldScore--
			}
		}
		if length == oldScore && scan < len(nw) {
			continue
		}
		// Extend the last match forward and this one backward, each as
		// long as more than half of the bytes agree.
		s, sf, lenf := 0, 0, 0
		for i := 0; lastScan+i < scan && lastPos+i < len(old); {
			if old[lastPos+i] == nw[lastScan+i] {
				s++
			}
			i++
			if s*2-i > sf*2-lenf {
				sf, lenf = s, i
			}
		}
		lenb := 0
		if scan < len(nw) {
			s, sb := 0, 0
			for i := 1; scan >= lastScan+i && pos >= i; i++ {
				if old[pos-i] == nw[scan-i] {
					s++
				}
				if s*2-i > sb*2-lenb {
					sb, lenb = s, i
				}
			}
		}
		if over := lastScan + lenf - (scan - lenb); over > 0 {
			s, best, lens := 0, 0, 0
			for i := 0; i < over; i++ {
				if nw[lastScan+lenf-over+i] == old[lastPos+lenf-over+i] {
					s++
				}
				if nw[scan-lenb+i] == old[pos-lenb+i] {
					s--
				}
				if s > best {
					best, lens = s, i+1
				}
			}
			lenf += lens - over
			lenb -= lens
		}
		ops = append(ops, op{src: int64(lastPos), diff: lenf, extra: scan - lenb - (lastScan + lenf)})
		lastScan, lastPos = scan-lenb, pos-lenb
		lastOff = int64(pos - scan)
	}
	return ops, nil
}

// encodeRaw appends the raw form of a segment's instructions (the spec's
// "Segment"): the instruction count, the instructions, the diff bytes, the
// extra bytes. out is where the segment starts in nw.
func encodeRaw(b []byte, ops []op, old, nw []byte, out int) []byte {
	b = binary.AppendUvarint(b, uint64(len(ops)))
	var prev int64
	for _, o := range ops {
		b = binary.AppendUvarint(b, uint64(o.diff))
		b = binary.AppendUvarint(b, uint64(o.extra))
		b = binary.AppendVarint(b, o.src-prev)
		prev = o.src + int64(o.diff)
	}
	p := out
	for _, o := range ops {
		for i := range o.diff {
			b = append(b, nw[p+i]-old[int(o.src)+i])
		}
		p += o.diff + o.extra
	}
	p = out
	for _, o := range ops {
		p += o.diff
		b = append(b, nw[p:p+o.extra]...)
		p += o.extra
	}
	return b
}

// split cuts ops (covering the output from 0) at the output offsets cuts
// (ascending, ending with the output size) and returns the instructions of
// each piece.
func split(ops []op, cuts []int) [][]op {
	pieces := make([][]op, len(cuts))
	k, out := 0, 0
	for _, o := range ops {
		for o.diff+o.extra > 0 {
			end := cuts[k]
			n := min(o.diff+o.extra, end-out)
			var part op
			if n <= o.diff {
				part = op{src: o.src, diff: n}
				o.src += int64(n)
				o.diff -= n
			} else {
				part = op{src: o.src, diff: o.diff, extra: n - o.diff}
				o.src += int64(o.diff)
				o.extra -= n - o.diff
				o.diff = 0
			}
			pieces[k] = append(pieces[k], part)
			out += n
			if out == end {
				k++
			}
		}
	}
	return pieces
}
