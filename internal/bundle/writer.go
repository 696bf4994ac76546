package bundle

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/tandem-ota/tandem/internal/chunker"
	"github.com/tandem-ota/tandem/internal/signature"
)

// Level is the compression of the chunks a writer makes.
type Level string

// Compression levels: "default" is zstd's "better" level, which keeps the
// sum of compressed chunks below a casync store of the same data.
const (
	LevelStored  Level = "stored"
	LevelFastest Level = "fastest"
	LevelDefault Level = "default"
	LevelBest    Level = "best"
)

func (l Level) encoderLevel() (zstd.EncoderLevel, error) {
	switch l {
	case LevelFastest:
		return zstd.SpeedFastest, nil
	case LevelDefault, "":
		return zstd.SpeedBetterCompression, nil
	case LevelBest:
		return zstd.SpeedBestCompression, nil
	}
	return 0, fmt.Errorf("unknown compression level %q (want stored, fastest, default or best)", l)
}

// PayloadSpec is one payload to write.
type PayloadSpec struct {
	Name    string
	Kind    Kind
	Target  string   // slot alias (slot, tree)
	Handler []string // execute
	Chunker ChunkerType
	// ChunkSize is the average size of content-defined chunks (min = avg/4,
	// max = 4·avg), or the size of fixed chunks. 0 = 64 KiB.
	ChunkSize int
	Source    io.Reader
}

// Options control a Writer.
type Options struct {
	Level   Level
	Workers int    // parallel compressors; 0 = GOMAXPROCS
	TempDir string // where chunk data is spooled; "" = os.TempDir()
	// Sign returns the signatures for the bundle hash (nil: unsigned).
	Sign func(Hash) ([]signature.Signature, error)
}

// DefaultChunkSize is the default average chunk size.
const DefaultChunkSize = 64 << 10

// Write makes a bundle from meta (Format, Compatible, Name, Version,
// MinVersion, Created, Flags) and the payloads, streaming (format 3 unless
// meta.Format asks for 2): chunk data is compressed on
// all cores and spooled to temporary files, so memory stays bounded whatever
// the payload size. The same inputs and options give the same bytes.
func Write(w io.Writer, meta Header, payloads []PayloadSpec, opts Options) (Hash, error) {
	h := meta
	h.Payloads = nil
	if h.Format == 0 {
		h.Format = FormatVersion
	}
	if h.Format < MinFormatVersion || h.Format > FormatVersion {
		return Hash{}, &VersionError{Version: h.Format}
	}
	var spools []*os.File
	defer func() {
		for _, f := range spools {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	var tables, storedTables [][]byte
	for _, ps := range payloads {
		spool, err := os.CreateTemp(opts.TempDir, "tandem-bundle-*")
		if err != nil {
			return Hash{}, err
		}
		spools = append(spools, spool)
		p, table, storedTable, err := writePayload(spool, ps, opts, h.HasStoredTable())
		if err != nil {
			return Hash{}, fmt.Errorf("payload %s: %w", ps.Name, err)
		}
		h.Payloads = append(h.Payloads, p)
		tables, storedTables = append(tables, table), append(storedTables, storedTable)
	}
	hb, err := MarshalHeader(&h)
	if err != nil {
		return Hash{}, err
	}
	hash := Hash(sha256.Sum256(hb))
	var sigs []signature.Signature
	if opts.Sign != nil {
		if sigs, err = opts.Sign(hash); err != nil {
			return hash, err
		}
	}
	sb, err := MarshalSignatures(sigs)
	if err != nil {
		return hash, err
	}
	if _, err := w.Write(hb); err != nil {
		return hash, err
	}
	if _, err := w.Write(sb); err != nil {
		return hash, err
	}
	for i, spool := range spools {
		if _, err := w.Write(tables[i]); err != nil {
			return hash, err
		}
		if _, err := w.Write(storedTables[i]); err != nil {
			return hash, err
		}
		if _, err := spool.Seek(0, io.SeekStart); err != nil {
			return hash, err
		}
		if _, err := io.Copy(w, spool); err != nil {
			return hash, err
		}
	}
	return hash, nil
}

type chunkJob struct {
	seq  int
	data []byte
}

type chunkResult struct {
	seq    int
	entry  Entry
	stored []byte
	sd     [32]byte // SHA-256 of stored
	err    error
}

// writePayload chunks, compresses and spools one payload; it returns the
// payload description, its chunk table and, with stored (format 3), its
// stored table; format 3 frames carry zstd's content checksum.
func writePayload(spool io.Writer, ps PayloadSpec, opts Options, stored bool) (p Payload, table, storedTable []byte, err error) {
	p = Payload{Name: ps.Name, Kind: ps.Kind, Target: ps.Target, Handler: ps.Handler, Chunker: ps.Chunker}
	size := ps.ChunkSize
	if size == 0 {
		size = DefaultChunkSize
	}
	var ch *chunker.Chunker
	switch ps.Chunker {
	case ChunkerFixed:
		p.ChunkMin, p.ChunkAvg, p.ChunkMax = uint32(size), uint32(size), uint32(size)
		ch, err = chunker.NewFixed(ps.Source, size)
	case ChunkerBuzhash:
		cp := chunker.ParamsForAvg(size)
		p.ChunkMin, p.ChunkAvg, p.ChunkMax = uint32(cp.Min), uint32(cp.Avg), uint32(cp.Max)
		ch, err = chunker.New(ps.Source, cp)
	default:
		err = fmt.Errorf("unknown chunker %d", ps.Chunker)
	}
	if err != nil {
		return p, nil, nil, err
	}
	level, compress := zstd.SpeedDefault, opts.Level != LevelStored
	if compress {
		if level, err = opts.Level.encoderLevel(); err != nil {
			return p, nil, nil, err
		}
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	jobs := make(chan chunkJob, workers)
	results := make(chan chunkResult, workers)
	done := make(chan struct{})
	defer close(done)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var enc *zstd.Encoder
			if compress {
				enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
					zstd.WithEncoderCRC(stored), zstd.WithZeroFrames(true), zstd.WithWindowSize(windowFor(int(p.ChunkMax))))
				defer enc.Close()
			}
			var dec *zstd.Decoder
			if compress && stored {
				dec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(MaxChunk))
				defer dec.Close()
			}
			for j := range jobs {
				r := compressChunk(enc, dec, j)
				select {
				case results <- r:
				case <-done:
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()
	// Feed the chunks in order; hash the whole payload on the way.
	sum := sha256.New()
	feedErr := make(chan error, 1)
	go func() {
		defer close(jobs)
		for seq := 0; ; seq++ {
			c, err := ch.Next()
			if errors.Is(err, io.EOF) {
				feedErr <- nil
				return
			}
			if err != nil {
				feedErr <- err
				return
			}
			sum.Write(c)
			select {
			case jobs <- chunkJob{seq: seq, data: append([]byte(nil), c...)}:
			case <-done:
				feedErr <- nil
				return
			}
		}
	}()
	// Collect in order; hash the stored bytes on the way.
	storedSum := sha256.New()
	pendingResults := map[int]chunkResult{}
	next := 0
	for r := range results {
		pendingResults[r.seq] = r
		for {
			r, ok := pendingResults[next]
			if !ok {
				break
			}
			delete(pendingResults, next)
			if r.err != nil {
				return p, nil, nil, r.err
			}
			if _, err := spool.Write(r.stored); err != nil {
				return p, nil, nil, err
			}
			if !stored {
				storedSum.Write(r.stored)
			}
			table = MarshalEntry(table, &r.entry)
			if stored {
				storedTable = append(storedTable, r.sd[:]...)
			}
			p.Chunks++
			p.Size += uint64(r.entry.Size)
			p.StoredSize += uint64(r.entry.StoredSize)
			next++
		}
	}
	if err := <-feedErr; err != nil {
		return p, nil, nil, err
	}
	if len(pendingResults) != 0 {
		return p, nil, nil, fmt.Errorf("internal error: %d chunks out of order", len(pendingResults))
	}
	copy(p.Digest[:], sum.Sum(nil))
	if stored {
		p.StoredTableDigest = TableDigest(storedTable)
	} else {
		copy(p.StoredDigest[:], storedSum.Sum(nil))
	}
	p.TableDigest = TableDigest(table)
	return p, table, storedTable, nil
}

func windowFor(maxChunk int) int {
	w := zstd.MinWindowSize
	for w < maxChunk && w < zstd.MaxWindowSize {
		w <<= 1
	}
	return w
}

// compressChunk compresses one chunk. With dec (format 3), it decodes each
// frame it keeps and compares it with the chunk: a format 3 install checks
// a chunk by its stored bytes, zstd's checksum and its size, not by its
// content digest (docs/bundle-format.md, "An install"), so the writer makes
// sure that what it signs decodes to the content it hashed.
func compressChunk(enc *zstd.Encoder, dec *zstd.Decoder, j chunkJob) chunkResult {
	r := chunkResult{seq: j.seq}
	e := &r.entry
	e.Digest = sha256.Sum256(j.data)
	e.Size = uint32(len(j.data))
	// Stored raw unless the zstd frame is strictly smaller: the reader tells
	// the two apart by stored size < size.
	r.stored = j.data
	if enc != nil {
		if c := enc.EncodeAll(j.data, make([]byte, 0, len(j.data)/2)); len(c) < len(j.data) {
			r.stored = c
			if dec != nil {
				if back, err := dec.DecodeAll(c, make([]byte, 0, len(j.data))); err != nil || !bytes.Equal(back, j.data) {
					r.err = fmt.Errorf("internal error: the zstd frame of chunk %d does not decode to its content (%v)", j.seq, err)
				}
			}
		}
	}
	e.StoredSize = uint32(len(r.stored))
	r.sd = e.Digest
	if e.StoredSize < e.Size {
		r.sd = sha256.Sum256(r.stored)
	}
	return r
}
