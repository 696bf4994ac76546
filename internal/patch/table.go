package patch

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/chunker"
)

// A section may carry the payload's chunk table in a compact form, so that
// a device need not download it from the bundle (40 bytes per chunk: 261 KB
// for a 576 MiB image, more than many patches). The table's entries are
// mostly chunks the source has too: the compact form names those by their
// index among the source's chunks, cut with the payload's chunker
// parameters, which the device computes while it checks the source. The
// device rebuilds the table and checks it against the table digest in the
// bundle's signed header, so the compact table is trusted no more than any
// other byte of the patch.

// SourceChunks reads r to its end: it returns the chunks of its content cut
// with the chunker parameters of p (digest and size; stored size 0), the
// SHA-256 of the whole and its size.
func SourceChunks(r io.Reader, p *bundle.Payload) ([]bundle.Entry, [32]byte, int64, error) {
	whole := sha256.New()
	br := newAheadHasher(r, whole)
	defer br.Close()
	var c *chunker.Chunker
	var err error
	if p.Chunker == bundle.ChunkerFixed {
		c, err = chunker.NewFixed(br, int(p.ChunkMax))
	} else {
		c, err = chunker.New(br, chunker.Params{Min: int(p.ChunkMin), Avg: int(p.ChunkAvg), Max: int(p.ChunkMax)})
	}
	if err != nil {
		return nil, [32]byte{}, 0, err
	}
	var es []bundle.Entry
	var n int64
	for {
		data, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, [32]byte{}, n, err
		}
		es = append(es, bundle.Entry{Digest: sha256.Sum256(data), Size: uint32(len(data))})
		n += int64(len(data))
	}
	var d [32]byte
	whole.Sum(d[:0])
	return es, d, n, nil
}

// encodeTable returns the compact form of entries given the source's chunks
// src: runs of entries taken from consecutive source chunks or given
// literally, then every entry's stored size, then the literal entries.
//
//	Table := uvarint n_runs, Run{n_runs}, uvarint stored_size{n}, Literal*
//	Run   := uvarint (count << 1 | literal), [varint start - expected]   (the start only for source runs)
//	Literal := digest[32], uvarint size
//
// expected is where the source run before ended (0 at first).
func encodeTable(src, entries []bundle.Entry) []byte {
	at := map[[32]byte]int{}
	for j := len(src) - 1; j >= 0; j-- {
		at[src[j].Digest] = j
	}
	type run struct {
		literal      bool
		start, count int
	}
	var runs []run
	for _, e := range entries {
		j, ok := at[e.Digest]
		if ok && src[j].Size != e.Size {
			ok = false
		}
		if n := len(runs); n > 0 {
			r := &runs[n-1]
			if r.literal && !ok {
				r.count++
				continue
			}
			if !r.literal && ok && r.start+r.count < len(src) && src[r.start+r.count].Digest == e.Digest && src[r.start+r.count].Size == e.Size {
				r.count++
				continue
			}
		}
		runs = append(runs, run{literal: !ok, start: j, count: 1})
	}
	b := binary.AppendUvarint(nil, uint64(len(runs)))
	expected := 0
	for _, r := range runs {
		lit := uint64(0)
		if r.literal {
			lit = 1
		}
		b = binary.AppendUvarint(b, uint64(r.count)<<1|lit)
		if !r.literal {
			b = binary.AppendVarint(b, int64(r.start-expected))
			expected = r.start + r.count
		}
	}
	for _, e := range entries {
		b = binary.AppendUvarint(b, uint64(e.StoredSize))
	}
	i := 0
	for _, r := range runs {
		if r.literal {
			for _, e := range entries[i : i+r.count] {
				b = append(b, e.Digest[:]...)
				b = binary.AppendUvarint(b, uint64(e.Size))
			}
		}
		i += r.count
	}
	return b
}

// ExpandTable rebuilds the chunk table bytes of a payload of chunks
// entries from its compact form raw and the source's chunks src. The
// result is not trusted: the caller checks it against the table digest of
// the bundle's header (bundle.Reader.Table).
func ExpandTable(raw []byte, src []bundle.Entry, chunks uint32) ([]byte, error) {
	if uint64(chunks)*bundle.EntrySize > bundle.MaxTableSize {
		return nil, fmt.Errorf("%w: table of %d chunks", ErrTooLarge, chunks)
	}
	r := raw
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(r)
		if n <= 0 {
			return 0, false
		}
		r = r[n:]
		return v, true
	}
	nruns, ok := uv()
	if !ok || nruns > uint64(chunks) {
		return nil, corrupt("table: %d runs for %d chunks", nruns, chunks)
	}
	type run struct {
		literal      bool
		start, count int
	}
	runs := make([]run, 0, nruns)
	var total uint64
	expected := int64(0)
	for range nruns {
		v, ok := uv()
		if !ok {
			return nil, corrupt("table: run")
		}
		ru := run{literal: v&1 == 1, count: int(min(v>>1, uint64(chunks)+1))}
		total += uint64(ru.count)
		if ru.count == 0 || total > uint64(chunks) {
			return nil, corrupt("table: runs hold more than %d chunks", chunks)
		}
		if !ru.literal {
			d, n := binary.Varint(r)
			if n <= 0 {
				return nil, corrupt("table: run start")
			}
			r = r[n:]
			start := expected + d
			if d < -(1<<40) || d > 1<<40 || start < 0 || start+int64(ru.count) > int64(len(src)) {
				return nil, corrupt("table: a run beyond the source's %d chunks", len(src))
			}
			ru.start = int(start)
			expected = start + int64(ru.count)
		}
		runs = append(runs, ru)
	}
	if total != uint64(chunks) {
		return nil, corrupt("table: runs hold %d chunks, the payload %d", total, chunks)
	}
	out := make([]byte, 0, int(chunks)*bundle.EntrySize)
	stored := make([]uint32, chunks)
	for i := range stored {
		v, ok := uv()
		if !ok || v > 1<<32-1 {
			return nil, corrupt("table: stored size %d", i)
		}
		stored[i] = uint32(v)
	}
	i := 0
	for _, ru := range runs {
		for k := range ru.count {
			var e bundle.Entry
			if ru.literal {
				if len(r) < 32 {
					return nil, corrupt("table: literal entry %d", i)
				}
				copy(e.Digest[:], r)
				r = r[32:]
				v, ok := uv()
				if !ok || v > 1<<32-1 {
					return nil, corrupt("table: literal size %d", i)
				}
				e.Size = uint32(v)
			} else {
				e = src[ru.start+k]
			}
			e.StoredSize = stored[i]
			out = bundle.MarshalEntry(out, &e)
			i++
		}
	}
	if len(r) != 0 {
		return nil, corrupt("table: %d bytes after the last entry", len(r))
	}
	return out, nil
}
