package bundle

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// ChunkSource supplies the bytes of one payload's chunks to a PayloadReader:
// the bundle stream itself, ranges of a remote bundle, or copies of chunks
// the device already holds. A source is not trusted: the reader checks what
// it returns against the signed chunk table (decompressing stored bytes
// first) and hands out only bytes that matched, so no source can pass an
// unverified byte on.
type ChunkSource interface {
	// ReadChunk returns the bytes of chunk i, whose table entry is e. The
	// reader asks for i = 0, 1, ... in order, from one goroutine. The bytes
	// are the chunk's stored bytes, as the bundle holds them, or, with
	// content set, a copy of its content the source already has. buf
	// (length 0) is a buffer the source may fill and return; a slice the
	// source returns instead passes to the reader, which may hand it back as
	// buf later. An error ends the payload and is reported as it is.
	ReadChunk(i int, e *Entry, buf []byte) (b []byte, content bool, err error)
}

// A Refetcher is a ChunkSource that can get a chunk again when the bytes it
// gave failed the check (a local copy that changed, bytes damaged on the
// way). Refetch runs on the reader's verifying goroutines: concurrently with
// ReadChunk and with other Refetch calls.
type Refetcher interface {
	// Refetch returns chunk i's stored bytes anew; attempt counts from 1
	// for each chunk. It returns nil, nil when it has no other copy (the
	// reader then reports the failed check); an error ends the payload.
	Refetch(i int, e *Entry, attempt int) ([]byte, error)
}

// Table is a payload's chunk table, checked against the verified header.
type Table struct {
	Payload *Payload
	Entries []Entry
	// Stored holds the digest of each chunk's stored bytes, from a format 3
	// payload's stored table (AddStoredTable); nil when not read.
	Stored [][32]byte

	r *Reader // the verified bundle it belongs to
}

// Table checks payload i's chunk table bytes against the verified header
// and parses them. It needs Verify first.
func (r *Reader) Table(i int, table []byte) (*Table, error) {
	if !r.verified {
		return nil, ErrVerify
	}
	if i < 0 || i >= len(r.Header.Payloads) {
		return nil, fmt.Errorf("bundle: no payload %d", i)
	}
	p := &r.Header.Payloads[i]
	if TableDigest(table) != p.TableDigest {
		return nil, fmt.Errorf("%w: chunk table of payload %s", ErrDigest, p.Name)
	}
	entries, err := ParseTable(table, p)
	if err != nil {
		return nil, fmt.Errorf("payload %s: %w", p.Name, err)
	}
	return &Table{Payload: p, Entries: entries, r: r}, nil
}

// AddStoredTable checks a format 3 payload's stored table bytes against
// the verified header and keeps them: from then on, a chunk whose stored
// bytes the source gives is checked by their digest before it is
// decompressed, and its content is not hashed again (docs/bundle-format.md,
// "Reading a chunk").
func (t *Table) AddStoredTable(b []byte) error {
	p := t.Payload
	if !t.r.Header.HasStoredTable() {
		return fmt.Errorf("bundle: payload %s has no stored table (format %d)", p.Name, t.r.Header.Format)
	}
	if uint64(len(b)) != t.r.Header.StoredTableSize(p) {
		return fmt.Errorf("%w: stored table of %d bytes, want %d", ErrFormat, len(b), t.r.Header.StoredTableSize(p))
	}
	if TableDigest(b) != p.StoredTableDigest {
		return fmt.Errorf("%w: stored table of payload %s", ErrDigest, p.Name)
	}
	t.Stored = make([][32]byte, p.Chunks)
	for i := range t.Stored {
		copy(t.Stored[i][:], b[i*StoredEntrySize:])
	}
	return nil
}

// Chunks returns a reader of the payload's verified chunks, whose bytes
// src supplies.
func (t *Table) Chunks(src ChunkSource) (*PayloadReader, error) {
	if t.r == nil || !t.r.verified {
		return nil, ErrVerify
	}
	return &PayloadReader{Payload: t.Payload, Entries: t.Entries, stored: t.Stored, src: src, dec: t.r.dec, check: t.r.CheckPayloadDigests}, nil
}

// streamSource reads the chunks of the payload at the stream's position,
// in order: the bundle as one forward stream.
type streamSource struct {
	r    *Reader
	name string
}

func (s *streamSource) ReadChunk(i int, e *Entry, buf []byte) ([]byte, bool, error) {
	buf = grow(buf, int(e.StoredSize))
	if _, err := io.ReadFull(s.r.r, buf); err != nil {
		return nil, false, readError(err, fmt.Sprintf("chunk %d of payload %s", i, s.name))
	}
	return buf, false, nil
}

// grow returns buf with length n, reallocated when its capacity is smaller.
func grow(buf []byte, n int) []byte {
	if cap(buf) < n {
		return make([]byte, n)
	}
	return buf[:n]
}

// PayloadReader yields the verified chunks of one payload.
//
// It verifies ahead of the caller: from the first call to Next, a pipeline
// asks the source for the bytes of the following chunks in order (one
// goroutine), decompresses them and checks their content digest (GOMAXPROCS
// workers, at most 4, each given runs of consecutive chunks), all while the
// caller writes the chunks it already has; with SetDestination, straight
// into the caller's memory. Each content byte is hashed once, for its
// chunk's digest. The payload's two digests of its own are recomputed only
// when the Reader's CheckPayloadDigests asks for them (a check of the
// bundle file rather than an install): the whole content's (one more
// goroutine) and, when the source is the bundle stream, the stored bytes'
// (another). The buffers in flight are bounded by pipelineBudget. Nothing
// changes for the caller:
// Next hands out chunks in order, each only after its content digest
// matched, reports the first bad chunk (or the point where the input ended)
// exactly as a sequential reader would, and returns io.EOF only after the
// last chunk and the payload digests it checks matched. The last payload
// read from the bundle stream also checks that the stream ends there.
type PayloadReader struct {
	Payload *Payload
	Entries []Entry

	stored  [][32]byte // digests of the stored bytes (format 3), or nil
	src     ChunkSource
	dec     *zstd.Decoder
	check   bool   // recompute the payload's digests (Reader.CheckPayloadDigests)
	i       int    // next chunk
	off     uint64 // uncompressed offset of the next chunk
	pl      *pipeline
	held    *slot // the chunk the caller has (valid until the next Next)
	err     error // sticky
	done    bool
	skipped bool
	pending []byte // for Read
	counts  Counts
	dest    Destination
	base    uint64 // p.off when dest was set
}

// A Destination says where the caller will write a chunk of n bytes at
// offset off (from where the reader was when it was set): an empty slice of
// capacity n+DecodeSlack at that place in the caller's memory, or nil when
// it has none. The caller's memory is blocks of PlaceBlock bytes, each with
// DecodeSlack bytes of its own after it; a place lies within one block. A
// Destination may block until that memory is free; it must return nil
// once the caller stopped reading.
type Destination func(off uint64, n int) []byte

// SetDestination lets the reader decompress chunks straight into the
// caller's memory, to spare the caller a copy: a compressed chunk that d
// places is decoded there, and its Data is that memory. Until Next hands
// the chunk out, the reader may write anything there and in the
// DecodeSlack bytes after it (the decoder's fast copies), so the caller
// must write a chunk's place only after the chunk before it was handed out
// (writing its chunks in order does that). A chunk the reader does not
// place is handed out from its own memory. The reader places nothing when
// it also hashes the payload's content (CheckPayloadDigests). Call it
// before the first Next.
func (p *PayloadReader) SetDestination(d Destination) {
	if p.pl == nil && !p.check {
		p.dest, p.base = d, p.off
	}
}

// Counts says how the chunks handed out so far came from the source.
type Counts struct {
	Stored       int64 // chunks checked from their stored bytes
	Content      int64 // chunks checked from a copy of their content
	ContentBytes int64 // the bytes of those
}

// Counts reports how the chunks handed out so far came from the source.
func (p *PayloadReader) Counts() Counts { return p.counts }

// Chunk is a verified chunk; Data is valid until the next call to Next.
type Chunk struct {
	Index  int
	Offset uint64 // offset of the chunk's data in the payload
	Entry  *Entry
	Data   []byte
}

// Next returns the next verified chunk; io.EOF after the last one, once the
// payload's digests, when the reader checks them, matched too.
func (p *PayloadReader) Next() (Chunk, error) {
	if p.err != nil {
		return Chunk{}, p.err
	}
	if p.held != nil {
		p.held.release()
		p.held = nil
	}
	if p.i == len(p.Entries) {
		if !p.done {
			if err := p.finish(); err != nil {
				p.err = err
				return Chunk{}, err
			}
			p.done = true
		}
		return Chunk{}, io.EOF
	}
	if p.pl == nil {
		p.pl = startPipeline(p)
	}
	s := <-p.pl.ordered
	<-s.done
	if s.err != nil {
		p.err = s.err
		if s.verifyErr {
			p.err = fmt.Errorf("chunk %d of payload %s: %w", p.i, p.Payload.Name, s.err)
		}
		p.stop()
		return Chunk{}, p.err
	}
	if s.content {
		p.counts.Content++
		p.counts.ContentBytes += int64(len(s.data))
	} else {
		p.counts.Stored++
	}
	if p.check {
		p.pl.hashQ <- s
	}
	p.held = s
	c := Chunk{Index: p.i, Offset: p.off, Entry: s.e, Data: s.data}
	p.i++
	p.off += uint64(s.e.Size)
	return c, nil
}

// finish checks the payload's digests when asked (its whole content; its
// stored bytes, read from the bundle stream) and, for the last payload of
// the bundle stream, that the stream ends.
func (p *PayloadReader) finish() error {
	ss, stream := p.src.(*streamSource)
	sum, stored := sha256.Sum256(nil), sha256.Sum256(nil)
	if p.pl != nil {
		close(p.pl.hashQ)
		if p.check {
			sum = <-p.pl.sum
			if p.pl.storedSum != nil {
				stored = <-p.pl.storedSum
			}
		}
		p.pl = nil
	}
	if p.check && stream && p.stored == nil && stored != p.Payload.StoredDigest {
		return fmt.Errorf("%w: stored bytes of payload %s", ErrDigest, p.Payload.Name)
	}
	if p.check && sum != p.Payload.Digest {
		return fmt.Errorf("%w: payload %s as a whole", ErrDigest, p.Payload.Name)
	}
	if stream && ss.r.next == len(ss.r.Header.Payloads) {
		return ss.r.end()
	}
	return nil
}

// Close stops the reader's pipeline and closes its source when that is an
// io.Closer. It may be called at any time; the reader is done after it.
func (p *PayloadReader) Close() error {
	p.stop()
	if p.held != nil {
		p.held.release()
		p.held = nil
	}
	if p.err == nil {
		p.err = errors.New("bundle: payload reader closed")
	}
	if c, ok := p.src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// stop ends the pipeline (after an error, Skip or Close); it does not wait
// for a read in progress.
func (p *PayloadReader) stop() {
	if p.pl != nil {
		p.pl.stop()
	}
}

// DecodeSlack is the room a decompression buffer has past the chunk's size
// (and a destination of SetDestination past its chunk).
// klauspost/compress takes its fast sequence copies, which may write up to
// 32 bytes past a match (zstd.compressedBlockOverAlloc), only when the
// output has that much spare capacity; without it, the last block of every
// frame is decoded with bounds-exact copies, about a third slower
// (docs/benchmarks.md). The decoder never writes past the capacity
// (WithDecodeAllCapLimit), and a frame that produces more than the chunk's
// size is refused, so the output bound stays size + DecodeSlack.
const DecodeSlack = 64

// verifyChunk checks a chunk's stored bytes and decompresses them into buf
// when they are a zstd frame (never producing more than the declared size
// plus DecodeSlack, which is an error). With sd, the digest of the stored
// bytes from a format 3 stored table, the stored bytes are checked against
// it before anything else, the frame must carry its content checksum (which
// the decoder checks), and the content is released after its size matched
// without being hashed again, unless both asks for the content digest too
// (a check of the bundle file). Without sd, the content digest is checked.
func verifyChunk(dec *zstd.Decoder, e *Entry, sd *[32]byte, both bool, stored, buf []byte) ([]byte, error) {
	if len(stored) != int(e.StoredSize) {
		return nil, fmt.Errorf("%w: %d stored bytes, the table says %d", ErrChunk, len(stored), e.StoredSize)
	}
	if sd != nil && sha256.Sum256(stored) != *sd {
		return nil, fmt.Errorf("%w: stored bytes", ErrDigest)
	}
	data := stored
	if e.Compressed() {
		if err := oneFrame(stored, e.Size, sd != nil); err != nil {
			return nil, fmt.Errorf("%w: not one zstd frame: %w", ErrChunk, err)
		}
		if n := int(e.Size) + DecodeSlack; cap(buf) < n {
			buf = make([]byte, 0, n)
		}
		var err error
		data, err = dec.DecodeAll(stored, buf[:0:int(e.Size)+DecodeSlack])
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrChunk, err)
		}
	}
	if sd != nil && !both {
		if len(data) != int(e.Size) {
			return nil, fmt.Errorf("%w: %d bytes, the table says %d", ErrChunk, len(data), e.Size)
		}
		return data, nil
	}
	return checkContent(e, data)
}

// checkContent checks a chunk's content against its entry.
func checkContent(e *Entry, data []byte) ([]byte, error) {
	if len(data) != int(e.Size) {
		return nil, fmt.Errorf("%w: %d bytes, the table says %d", ErrChunk, len(data), e.Size)
	}
	if sha256.Sum256(data) != e.Digest {
		return nil, fmt.Errorf("%w: content", ErrDigest)
	}
	return data, nil
}

// Read streams the payload's verified bytes (io.Reader for tar extraction
// and handlers).
func (p *PayloadReader) Read(b []byte) (int, error) {
	for len(p.pending) == 0 {
		c, err := p.Next()
		if err != nil {
			return 0, err
		}
		p.pending = c.Data
	}
	n := copy(b, p.pending)
	p.pending = p.pending[n:]
	return n, nil
}

// Skip discards the rest of the payload's data unverified (for inspection
// only: nothing of it may be used). Only a payload read from the bundle
// stream can be skipped.
func (p *PayloadReader) Skip() error {
	if p.err != nil {
		return p.err
	}
	ss, ok := p.src.(*streamSource)
	if !ok {
		return errors.New("bundle: only a payload of the bundle stream can be skipped")
	}
	if p.held != nil {
		p.held.release()
		p.held = nil
	}
	from := p.i
	if p.pl != nil {
		// The pipeline read ahead: stop it and skip what it has not read.
		p.pl.stop()
		<-p.pl.fed
		if p.pl.readErr != nil {
			p.err = p.pl.readErr
			return p.err
		}
		from, p.pl = p.pl.next, nil
	}
	var rest uint64
	for _, e := range p.Entries[from:] {
		rest += uint64(e.StoredSize)
	}
	n, err := io.CopyN(io.Discard, ss.r.r, int64(rest))
	if err != nil && uint64(n) < rest {
		p.err = fmt.Errorf("%w: in the data of payload %s", ErrTruncated, p.Payload.Name)
		return p.err
	}
	p.i, p.pending, p.skipped = len(p.Entries), nil, true
	return nil
}

// pipelineBudget bounds the chunk buffers (stored and decompressed) one
// payload keeps in flight; with the default 256 KiB maximum chunk size it
// allows 16 chunks. A payload with larger chunks gets fewer slots, at least
// one (then the pipeline runs one chunk at a time).
const (
	pipelineBudget = 8 << 20
	maxSlots       = 16
	maxWorkers     = 4 // the decoder's concurrency (zstdDecoder)
)

// slot is one chunk in flight, with its reusable buffers.
type slot struct {
	i         int
	e         *Entry
	stored    []byte        // what the source gave
	content   bool          // stored holds the chunk's content, not its stored bytes
	buf       []byte        // decompression buffer
	place     []byte        // the Destination's memory for the chunk, if it placed it
	data      []byte        // the verified content (stored, buf or place)
	err       error         // why the chunk cannot be handed out
	verifyErr bool          // err is the chunk's (else a read error, reported as is)
	done      chan struct{} // one token when data/err are set
	refs      atomic.Int32
	free      chan<- *slot
}

// release gives up one of the slot's holders; the last returns it to the
// free list for the reader to refill.
func (s *slot) release() {
	if s.refs.Add(-1) == 0 {
		s.free <- s
	}
}

// pipeline is the reading, verifying and hashing ahead of one payload.
type pipeline struct {
	free    chan *slot    // slots nobody holds
	work    chan []*slot  // read, to verify: runs of consecutive chunks, each verified in order by one worker
	ordered chan *slot    // read, in payload order, for Next
	hashQ   chan *slot    // handed out, in order, for the whole-payload hash (when asked)
	sum     chan [32]byte // the whole-payload digest, after hashQ closed
	// storedQ has every slot read from the bundle stream, in order, for
	// the stored-bytes digest (when asked); storedSum gets it once the last
	// chunk was read. Both are nil otherwise.
	storedQ   chan *slot
	storedSum chan [32]byte
	quit      chan struct{}
	once      sync.Once
	// The reader goroutine's position, valid once fed is closed.
	fed     chan struct{}
	next    int   // index of the first chunk it did not read
	readErr error // why it stopped early (a read error), if it did
}

func startPipeline(p *PayloadReader) *pipeline {
	var maxStored, maxSize int
	for i := p.i; i < len(p.Entries); i++ {
		maxStored = max(maxStored, int(p.Entries[i].StoredSize))
		maxSize = max(maxSize, int(p.Entries[i].Size)+DecodeSlack)
	}
	n := min(max(pipelineBudget/(maxStored+maxSize), 1), maxSlots, len(p.Entries)-p.i)
	workers := min(runtime.GOMAXPROCS(0), maxWorkers, n)
	pl := &pipeline{
		free: make(chan *slot, n), work: make(chan []*slot, n), ordered: make(chan *slot, n),
		hashQ: make(chan *slot, n), sum: make(chan [32]byte, 1),
		quit: make(chan struct{}), fed: make(chan struct{}),
	}
	holders := int32(1) // the caller (from Next to the next Next)
	if p.check {
		holders++ // the whole-payload hasher
		go pl.hashSlots(pl.hashQ, func(s *slot) []byte { return s.data }, pl.sum)
	}
	if _, ok := p.src.(*streamSource); ok && p.check && p.stored == nil {
		pl.storedQ, pl.storedSum = make(chan *slot, n), make(chan [32]byte, 1)
		holders++ // the stored-bytes hasher
		go pl.hashSlots(pl.storedQ, func(s *slot) []byte { return s.stored }, pl.storedSum)
	}
	for range n {
		pl.free <- &slot{done: make(chan struct{}, 1), free: pl.free}
	}
	go pl.read(p, maxStored, holders, max(n/workers, 1))
	rf, _ := p.src.(Refetcher)
	for range workers {
		go pl.verify(p, rf, maxSize)
	}
	return pl
}

func (pl *pipeline) stop() { pl.once.Do(func() { close(pl.quit) }) }

// read asks the source for the bytes of each chunk in order, into a free
// slot, and hands the chunks to the workers in runs of at most maxRun.
func (pl *pipeline) read(p *PayloadReader, maxStored int, holders int32, maxRun int) {
	defer close(pl.fed)
	var runs placer
	defer close(pl.work)
	defer runs.flush(pl)
	if pl.storedQ != nil {
		defer close(pl.storedQ)
	}
	off := p.off
	for i := p.i; i < len(p.Entries); i++ {
		var s *slot
		select {
		case s = <-pl.free:
		default:
			// The workers must have every chunk read before this one
			// while the reader waits for a slot.
			runs.flush(pl)
			select {
			case s = <-pl.free:
			case <-pl.quit:
				pl.next = i
				return
			}
		}
		if s.stored == nil {
			s.stored = make([]byte, 0, maxStored)
		}
		s.i, s.e, s.data, s.err, s.verifyErr = i, &p.Entries[i], nil, nil, false
		b, content, err := p.src.ReadChunk(i, s.e, s.stored[:0])
		if err != nil {
			s.err, pl.next, pl.readErr = err, i, err
			s.done <- struct{}{}
			pl.ordered <- s
			return
		}
		s.stored, s.content = b, content
		s.refs.Store(holders)
		pl.ordered <- s
		runs.add(pl, p, s, off, maxRun)
		off += uint64(s.e.Size)
		if pl.storedQ != nil {
			pl.storedQ <- s
		}
	}
	pl.next = len(p.Entries)
}

// placer groups the chunks read into runs for the workers and, with a
// Destination, decides which chunks are decoded in place. The decoder may
// write DecodeSlack bytes past a chunk, into the place of the next one, so
// a chunk is placed only when no chunk that another worker may still be
// decoding can write into its place: when the placed chunk before it is in
// the same run (one worker decodes a run in order), or the last placed
// chunk's reach ends before it, or that chunk ended a block of the
// Destination (whose slack is its own).
type placer struct {
	run      []*slot
	runBlock uint64 // the destination block of the run's placed chunks
	lastEnd  uint64 // end of the last placed chunk (0: none yet)
	lastIn   bool   // the last placed chunk is in run
}

// PlaceBlock is the size of a Destination's blocks (install's write
// block). A chunk placed in a new block starts a new run, so that runs of
// different blocks decode in parallel.
const PlaceBlock = 1 << 20

func (r *placer) flush(pl *pipeline) {
	if len(r.run) > 0 {
		pl.work <- r.run
		r.run, r.lastIn = nil, false
	}
}

func (r *placer) add(pl *pipeline, p *PayloadReader, s *slot, off uint64, maxRun int) {
	s.place = nil
	if len(r.run) >= maxRun {
		r.flush(pl)
	}
	rel, n := off-p.base, int(s.e.Size)
	if p.dest != nil && !s.content && s.e.Compressed() && n >= DecodeSlack {
		block := rel / PlaceBlock
		if len(r.run) > 0 && block != r.runBlock {
			// A new block may have to wait for the caller's memory:
			// the chunks before it go to the workers first.
			r.flush(pl)
		}
		if r.lastIn || rel >= r.lastEnd+DecodeSlack || r.lastEnd%PlaceBlock == 0 {
			s.place = p.dest(rel, n)
		}
		if s.place != nil {
			r.runBlock, r.lastEnd, r.lastIn = block, rel+uint64(n), true
		}
	}
	r.run = append(r.run, s)
	if len(r.run) == 1 && s.place == nil {
		// Nothing waits for this chunk's neighbours: verify it now.
		r.flush(pl)
	}
}

// verify checks (and decompresses) the runs of chunks the reader hands it,
// each run in order.
func (pl *pipeline) verify(p *PayloadReader, rf Refetcher, maxSize int) {
	for run := range pl.work {
		for _, s := range run {
			pl.verifyOne(p, rf, maxSize, s)
		}
	}
}

// verifyOne checks one chunk, asking a Refetcher source again while it fails.
func (pl *pipeline) verifyOne(p *PayloadReader, rf Refetcher, maxSize int, s *slot) {
	defer func() { s.done <- struct{}{} }()
	select {
	case <-pl.quit:
		s.err = errors.New("bundle: reader stopped")
		return
	default:
	}
	s.data, s.err = s.check(p, maxSize)
	for attempt := 1; s.err != nil && rf != nil; attempt++ {
		b, err := rf.Refetch(s.i, s.e, attempt)
		if err != nil {
			s.err = err
			break
		}
		if b == nil {
			break
		}
		s.stored, s.content = b, false
		s.data, s.err = s.check(p, maxSize)
	}
	s.verifyErr = s.err != nil
}

// check verifies the slot's bytes: a copy of the content by its digest,
// stored bytes by their digest (format 3) or after decompressing them.
func (s *slot) check(p *PayloadReader, maxSize int) ([]byte, error) {
	if s.content {
		return checkContent(s.e, s.stored)
	}
	buf := s.place
	if buf == nil {
		if s.buf == nil && s.e.Compressed() {
			s.buf = make([]byte, 0, maxSize)
		}
		buf = s.buf
	}
	var sd *[32]byte
	if p.stored != nil {
		sd = &p.stored[s.i]
	}
	return verifyChunk(p.dec, s.e, sd, p.check, s.stored, buf)
}

// hashSlots feeds part(s) of each slot q brings, in order, to a SHA-256
// digest, releasing each slot; once q is closed it sends the digest on sum.
// It serves both digests of a payload: the stored digest over the stored
// bytes of every chunk read from a bundle stream (a full read so checks
// every byte of the payload, including the bytes of a zstd frame that
// decompress to the same content whatever they are) and, when asked, the
// whole-payload digest over the handed-out content.
func (pl *pipeline) hashSlots(q <-chan *slot, part func(*slot) []byte, sum chan<- [32]byte) {
	h := sha256.New()
	for {
		select {
		case s, ok := <-q:
			if !ok {
				var d [32]byte
				h.Sum(d[:0])
				sum <- d
				return
			}
			h.Write(part(s))
			s.release()
		case <-pl.quit:
			return
		}
	}
}
