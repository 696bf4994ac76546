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
	"github.com/tandem-ota/tandem/internal/signature"
)

// Verifier decides whether a bundle may be installed, from its header, hash
// and signatures. It runs before any payload byte is read.
type Verifier func(h *Header, hash Hash, sigs []signature.Signature) error

// Reader reads a bundle as one forward stream: header and signatures first,
// then, once Verify accepted them, the payloads in order.
type Reader struct {
	r          io.Reader
	Header     *Header
	Hash       Hash
	Signatures []signature.Signature
	// HeaderBytes and SigBytes are the raw sections (for re-signing).
	HeaderBytes, SigBytes []byte

	verified bool
	next     int // index of the next payload
	cur      *PayloadReader
	dec      *zstd.Decoder
}

// readFull reads exactly len(b) bytes; a short input is ErrTruncated.
func readFull(r io.Reader, b []byte, what string) error {
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: in the %s", ErrTruncated, what)
		}
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

// NewReader reads and parses the header and the signature section. It reads
// no more than MaxHeaderSize + MaxSigSectionSize + 8 bytes.
func NewReader(r io.Reader) (*Reader, error) {
	prefix := make([]byte, 16)
	if err := readFull(r, prefix, "header"); err != nil {
		return nil, err
	}
	n, err := HeaderSize(prefix)
	if err != nil {
		return nil, err
	}
	hb := make([]byte, n)
	copy(hb, prefix)
	if err := readFull(r, hb[16:], "header"); err != nil {
		return nil, err
	}
	h, err := ParseHeader(hb)
	if err != nil {
		return nil, err
	}
	sp := make([]byte, sigPrefixSize)
	if err := readFull(r, sp, "signature section"); err != nil {
		return nil, err
	}
	sn, err := SigSectionSize(sp)
	if err != nil {
		return nil, err
	}
	sb := make([]byte, sigPrefixSize+sn)
	copy(sb, sp)
	if err := readFull(r, sb[sigPrefixSize:], "signature section"); err != nil {
		return nil, err
	}
	sigs, err := ParseSignatures(sb[sigPrefixSize:])
	if err != nil {
		return nil, err
	}
	dec, err := zstdDecoder()
	if err != nil {
		return nil, err
	}
	return &Reader{r: r, Header: h, Hash: sha256.Sum256(hb), Signatures: sigs,
		HeaderBytes: hb, SigBytes: sb, dec: dec}, nil
}

// zstdDecoder is the package's zstd decoder, made once: DecodeAll is safe for
// concurrent use, and its output is bounded by the destination's capacity.
var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(4), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(MaxChunk+1), zstd.WithDecoderMaxWindow(MaxChunk))
})

// Verify runs v; payloads can be read only after it returned nil.
func (r *Reader) Verify(v Verifier) error {
	if err := v(r.Header, r.Hash, r.Signatures); err != nil {
		return err
	}
	r.verified = true
	return nil
}

// Close releases the reader's resources: it stops the verification
// pipeline of a payload that was not read to its end.
func (r *Reader) Close() {
	if r.cur != nil {
		r.cur.stop()
	}
}

// NextPayload reads and checks the next payload's chunk table. After the
// last payload it checks that the input ends there and returns io.EOF.
func (r *Reader) NextPayload() (*PayloadReader, error) {
	if !r.verified {
		return nil, ErrVerify
	}
	if r.cur != nil && !r.cur.done && !r.cur.skipped {
		return nil, fmt.Errorf("bundle: payload %q not read to its end", r.cur.Payload.Name)
	}
	if r.next == len(r.Header.Payloads) {
		var one [1]byte
		if n, _ := io.ReadFull(r.r, one[:]); n != 0 {
			return nil, ErrTrailing
		}
		return nil, io.EOF
	}
	p := &r.Header.Payloads[r.next]
	r.next++
	table := make([]byte, p.TableSize())
	if err := readFull(r.r, table, "chunk table of payload "+p.Name); err != nil {
		return nil, err
	}
	if TableDigest(table) != p.TableDigest {
		return nil, fmt.Errorf("%w: chunk table of payload %s", ErrDigest, p.Name)
	}
	entries, err := ParseTable(table, p)
	if err != nil {
		return nil, fmt.Errorf("payload %s: %w", p.Name, err)
	}
	r.cur = &PayloadReader{Payload: p, Entries: entries, r: r}
	return r.cur, nil
}

// PayloadReader yields the verified chunks of one payload.
//
// It verifies ahead of the caller: from the first call to Next, a pipeline
// reads the stored bytes of the following chunks in order and hashes them
// for the payload's stored digest (one goroutine each), decompresses them
// and checks their content digest (GOMAXPROCS workers, at most 4), and
// hashes the whole payload (one goroutine), all while the caller writes the
// chunks it already has. The buffers in flight are bounded by
// pipelineBudget. Nothing changes for the caller: Next hands out chunks in
// order, each only after its content digest matched, reports the first bad
// chunk (or the point where the input ended) exactly as a sequential reader
// would, and returns io.EOF only after the digests of the payload's stored
// bytes and of its whole content matched.
type PayloadReader struct {
	Payload *Payload
	Entries []Entry

	r       *Reader
	i       int    // next chunk
	off     uint64 // uncompressed offset of the next chunk
	pl      *pipeline
	held    *slot // the chunk the caller has (valid until the next Next)
	err     error // sticky
	done    bool
	skipped bool
	pending []byte // for Read
}

// Chunk is a verified chunk; Data is valid until the next call to Next.
type Chunk struct {
	Index  int
	Offset uint64 // offset of the chunk's data in the payload
	Entry  *Entry
	Data   []byte
}

// Next returns the next verified chunk; io.EOF after the last one, once the
// digest of the whole payload matched too.
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
			sum, stored := sha256.Sum256(nil), sha256.Sum256(nil)
			if p.pl != nil {
				close(p.pl.hashQ)
				sum, stored = <-p.pl.sum, <-p.pl.storedSum
				p.pl = nil
			}
			if stored != p.Payload.StoredDigest {
				p.err = fmt.Errorf("%w: stored bytes of payload %s", ErrDigest, p.Payload.Name)
				return Chunk{}, p.err
			}
			if sum != p.Payload.Digest {
				p.err = fmt.Errorf("%w: payload %s as a whole", ErrDigest, p.Payload.Name)
				return Chunk{}, p.err
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
	p.pl.hashQ <- s
	p.held = s
	c := Chunk{Index: p.i, Offset: p.off, Entry: s.e, Data: s.data}
	p.i++
	p.off += uint64(s.e.Size)
	return c, nil
}

// stop ends the pipeline (after an error, Skip or Close); it does not wait
// for a read in progress.
func (p *PayloadReader) stop() {
	if p.pl != nil {
		p.pl.stop()
	}
}

// verifyChunk decompresses a chunk's stored bytes into buf when they are a
// zstd frame (never producing more than the declared size) and checks the
// content digest.
func verifyChunk(dec *zstd.Decoder, e *Entry, stored, buf []byte) ([]byte, error) {
	if len(stored) != int(e.StoredSize) {
		return nil, fmt.Errorf("%w: %d stored bytes, the table says %d", ErrChunk, len(stored), e.StoredSize)
	}
	data := stored
	if e.Compressed() {
		if err := oneFrame(stored, e.Size); err != nil {
			return nil, fmt.Errorf("%w: not one zstd frame: %w", ErrChunk, err)
		}
		if cap(buf) < int(e.Size)+1 {
			buf = make([]byte, 0, int(e.Size)+1)
		}
		var err error
		data, err = dec.DecodeAll(stored, buf[:0:int(e.Size)+1])
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrChunk, err)
		}
	}
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
func (p *PayloadReader) Read(b []byte) (int, error) { return ReadChunks(b, &p.pending, p.Next) }

// ReadChunks implements io.Reader over a source of verified chunks: it
// copies from *pending, refilling it from next. Chunk sources (the stream
// reader, delta installs) share it.
func ReadChunks(b []byte, pending *[]byte, next func() (Chunk, error)) (int, error) {
	for len(*pending) == 0 {
		c, err := next()
		if err != nil {
			return 0, err
		}
		*pending = c.Data
	}
	n := copy(b, *pending)
	*pending = (*pending)[n:]
	return n, nil
}

// Skip discards the rest of the payload's data unverified (for inspection
// only: nothing of it may be used).
func (p *PayloadReader) Skip() error {
	if p.err != nil {
		return p.err
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
	n, err := io.CopyN(io.Discard, p.r.r, int64(rest))
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
	e         *Entry
	stored    []byte
	buf       []byte // decompression buffer
	data      []byte // the verified content (stored or buf)
	err       error
	verifyErr bool          // err is the chunk's (else a read error, reported as is)
	done      chan struct{} // one token when data/err are set
	refs      atomic.Int32
	free      chan<- *slot
}

// A slot read from the input has three holders: the stored-bytes hasher,
// the caller (from Next to the next Next) and the whole-payload hasher.
const slotHolders = 3

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
	work    chan *slot    // read, to verify
	ordered chan *slot    // read, in payload order, for Next
	hashQ   chan *slot    // handed out, in order, for the whole-payload hash
	sum     chan [32]byte // the whole-payload digest, after hashQ closed
	// storedQ has every slot read, in order, for the stored-bytes digest;
	// storedSum gets it once the last chunk was read.
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
		maxSize = max(maxSize, int(p.Entries[i].Size)+1)
	}
	n := min(max(pipelineBudget/(maxStored+maxSize), 1), maxSlots, len(p.Entries)-p.i)
	workers := min(runtime.GOMAXPROCS(0), maxWorkers, n)
	pl := &pipeline{
		free: make(chan *slot, n), work: make(chan *slot, n), ordered: make(chan *slot, n),
		hashQ: make(chan *slot, n), sum: make(chan [32]byte, 1),
		storedQ: make(chan *slot, n), storedSum: make(chan [32]byte, 1),
		quit: make(chan struct{}), fed: make(chan struct{}),
	}
	for range n {
		pl.free <- &slot{done: make(chan struct{}, 1), free: pl.free}
	}
	go pl.read(p, maxStored)
	for range workers {
		go pl.verify(p.r.dec, maxSize)
	}
	go pl.hash()
	go pl.hashStored()
	return pl
}

func (pl *pipeline) stop() { pl.once.Do(func() { close(pl.quit) }) }

// read reads the stored bytes of each chunk in order into a free slot.
func (pl *pipeline) read(p *PayloadReader, maxStored int) {
	defer close(pl.fed)
	defer close(pl.work)
	defer close(pl.storedQ)
	for i := p.i; i < len(p.Entries); i++ {
		var s *slot
		select {
		case s = <-pl.free:
		case <-pl.quit:
			pl.next = i
			return
		}
		e := &p.Entries[i]
		if s.stored == nil {
			s.stored = make([]byte, maxStored)
		}
		s.e, s.stored, s.data, s.err, s.verifyErr = e, s.stored[:e.StoredSize], nil, nil, false
		if err := readFull(p.r.r, s.stored, fmt.Sprintf("chunk %d of payload %s", i, p.Payload.Name)); err != nil {
			s.err, pl.next, pl.readErr = err, i, err
			s.done <- struct{}{}
			pl.ordered <- s
			return
		}
		s.refs.Store(slotHolders)
		pl.ordered <- s
		pl.work <- s
		pl.storedQ <- s
	}
	pl.next = len(p.Entries)
}

// verify checks and decompresses the chunks the reader hands it.
func (pl *pipeline) verify(dec *zstd.Decoder, maxSize int) {
	for s := range pl.work {
		select {
		case <-pl.quit:
			s.err = errors.New("bundle: reader stopped")
		default:
			if s.buf == nil && s.e.Compressed() {
				s.buf = make([]byte, 0, maxSize)
			}
			s.data, s.err = verifyChunk(dec, s.e, s.stored, s.buf)
			s.verifyErr = s.err != nil
		}
		s.done <- struct{}{}
	}
}

// hash feeds the handed-out chunks, in order, to the whole-payload digest.
func (pl *pipeline) hash() {
	h := sha256.New()
	for {
		select {
		case s, ok := <-pl.hashQ:
			if !ok {
				var d [32]byte
				h.Sum(d[:0])
				pl.sum <- d
				return
			}
			h.Write(s.data)
			s.release()
		case <-pl.quit:
			return
		}
	}
}

// hashStored feeds the stored bytes of every chunk read, in order, to the
// payload's stored digest: a full read checks every byte of the payload,
// including the bytes of a zstd frame that decompress to the same content
// whatever they are.
func (pl *pipeline) hashStored() {
	h := sha256.New()
	for {
		select {
		case s, ok := <-pl.storedQ:
			if !ok {
				var d [32]byte
				h.Sum(d[:0])
				pl.storedSum <- d
				return
			}
			h.Write(s.stored)
			s.release()
		case <-pl.quit:
			return
		}
	}
}

// Random access, for delta installs that fetch parts of a remote bundle.

// PayloadOffsets returns where payload i's chunk table and chunk data start
// in the bundle, from the sizes in the header and signature section.
func (r *Reader) PayloadOffsets(i int) (table, data int64) {
	off := int64(len(r.HeaderBytes) + len(r.SigBytes))
	for j := 0; j < i; j++ {
		p := &r.Header.Payloads[j]
		off += int64(p.TableSize()) + int64(p.StoredSize)
	}
	return off, off + int64(r.Header.Payloads[i].TableSize())
}

// BundleSize returns the total size of the bundle.
func (r *Reader) BundleSize() int64 {
	n := len(r.Header.Payloads)
	_, data := r.PayloadOffsets(n - 1)
	return data + int64(r.Header.Payloads[n-1].StoredSize)
}

// Table checks payload i's chunk table bytes against the verified header
// and parses them. It needs Verify first.
func (r *Reader) Table(i int, table []byte) ([]Entry, error) {
	if !r.verified {
		return nil, ErrVerify
	}
	p := &r.Header.Payloads[i]
	if TableDigest(table) != p.TableDigest {
		return nil, fmt.Errorf("%w: chunk table of payload %s", ErrDigest, p.Name)
	}
	return ParseTable(table, p)
}

// VerifyChunk decompresses a chunk's stored bytes (into buf when it is large
// enough; never more than the entry's size) and checks the content against
// the entry's digest. Only the returned bytes may be used. The stored bytes
// themselves are not authenticated (a full read checks them as a whole with
// the payload's stored digest): every byte returned is.
func VerifyChunk(e *Entry, stored, buf []byte) ([]byte, error) {
	dec, err := zstdDecoder()
	if err != nil {
		return nil, err
	}
	return verifyChunk(dec, e, stored, buf)
}

// Info returns the payload's description and chunk table.
func (p *PayloadReader) Info() (*Payload, []Entry) { return p.Payload, p.Entries }
