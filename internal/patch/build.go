package patch

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/tandem-ota/tandem/internal/bundle"
)

// SegmentTarget is the output a segment aims at: it ends at the first chunk
// boundary at or after it. It bounds what a device holds of one segment
// (its stored and raw bytes) and what a resumed install fetches again.
const SegmentTarget = 4 << 20

// encWindow is the encoder's window (a device's decoder accepts up to
// MaxSegmentRaw).
const encWindow = 16 << 20

// built is a section with its table's and segments' stored bytes.
type built struct {
	Section
	table  []byte
	stored [][]byte
}

// buildSection encodes the section that turns old into nw, whose chunk
// table is entries, cut into segments at chunk boundaries and compressed
// on all cores, with the compact form of the chunk table when p is not
// nil (its chunker parameters cut the source). Offsets count from 0.
func buildSection(old, nw []byte, p *bundle.Payload, entries []bundle.Entry, segSize int) (*built, error) {
	if segSize <= 0 {
		segSize = SegmentTarget
	}
	var size uint64
	for _, e := range entries {
		size += uint64(e.Size)
	}
	if size != uint64(len(nw)) {
		return nil, fmt.Errorf("patch: the chunk table holds %d bytes, the payload %d", size, len(nw))
	}
	ops, err := diff(old, nw)
	if err != nil {
		return nil, err
	}
	// Segments: chunk runs of about SegmentTarget output bytes.
	var segs []Segment
	var cuts []int
	out, start := 0, 0
	for i, e := range entries {
		out += int(e.Size)
		if out-cutOrZero(cuts) >= segSize || i == len(entries)-1 {
			segs = append(segs, Segment{FirstChunk: uint32(start), Chunks: uint32(i + 1 - start)})
			cuts = append(cuts, out)
			start = i + 1
		}
	}
	pieces := split(ops, cuts)
	b := &built{Section: Section{Size: size, SourceSize: uint64(len(old)), SourceDigest: sha256.Sum256(old), Segments: segs},
		stored: make([][]byte, len(segs))}
	errs := make([]error, len(segs))
	work := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
				zstd.WithWindowSize(encWindow), zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
			for k := range work {
				if err != nil {
					errs[k] = err
					continue
				}
				from := 0
				if k > 0 {
					from = cuts[k-1]
				}
				raw := encodeRaw(nil, pieces[k], old, nw, from)
				if len(raw) > MaxSegmentRaw {
					// Pathological instructions: the segment as new bytes.
					raw = encodeRaw(nil, []op{{extra: cuts[k] - from}}, old, nw, from)
				}
				g := &b.Segments[k]
				g.RawSize = uint32(len(raw))
				stored := raw
				if c := enc.EncodeAll(raw, nil); len(c) < len(raw) {
					stored, g.Flags = c, FlagZstd
				}
				g.StoredSize, g.Digest = uint32(len(stored)), sha256.Sum256(stored)
				b.stored[k] = stored
			}
			if enc != nil {
				enc.Close()
			}
		}()
	}
	for k := range segs {
		work <- k
	}
	close(work)
	wg.Wait()
	var off uint64
	if p != nil {
		src, _, _, err := SourceChunks(bytes.NewReader(old), p)
		if err != nil {
			return nil, err
		}
		raw := encodeTable(src, entries)
		if len(raw) > MaxTableRaw {
			return nil, fmt.Errorf("patch: compact table of %d bytes (limit %d)", len(raw), MaxTableRaw)
		}
		b.Table = Segment{RawSize: uint32(len(raw))}
		b.table = raw
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		if c := enc.EncodeAll(raw, nil); len(c) < len(raw) {
			b.table, b.Table.Flags = c, FlagZstd
		}
		enc.Close()
		b.Table.StoredSize, b.Table.Digest = uint32(len(b.table)), sha256.Sum256(b.table)
		off = uint64(len(b.table))
	}
	for k, err := range errs {
		if err != nil {
			return nil, err
		}
		b.Segments[k].Offset = off
		off += uint64(b.Segments[k].StoredSize)
	}
	return b, nil
}

func cutOrZero(cuts []int) int {
	if len(cuts) == 0 {
		return 0
	}
	return cuts[len(cuts)-1]
}
