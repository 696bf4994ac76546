package bundle

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

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

// Close releases the reader's resources.
func (r *Reader) Close() {}

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
	r.cur = &PayloadReader{Payload: p, Entries: entries, r: r, sum: sha256.New()}
	return r.cur, nil
}

// PayloadReader yields the verified chunks of one payload.
type PayloadReader struct {
	Payload *Payload
	Entries []Entry

	r       *Reader
	i       int    // next chunk
	off     uint64 // uncompressed offset of the next chunk
	stored  []byte
	data    []byte
	sum     hash.Hash // of the whole payload
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
	if p.i == len(p.Entries) {
		if !p.done {
			var d [32]byte
			if !bytes.Equal(p.sum.Sum(d[:0]), p.Payload.Digest[:]) {
				return Chunk{}, fmt.Errorf("%w: payload %s as a whole", ErrDigest, p.Payload.Name)
			}
			p.done = true
		}
		return Chunk{}, io.EOF
	}
	e := &p.Entries[p.i]
	if cap(p.stored) < int(e.StoredSize) {
		p.stored = make([]byte, e.StoredSize)
	}
	p.stored = p.stored[:e.StoredSize]
	if err := readFull(p.r.r, p.stored, fmt.Sprintf("chunk %d of payload %s", p.i, p.Payload.Name)); err != nil {
		return Chunk{}, err
	}
	data, err := verifyChunk(p.r.dec, e, p.stored, p.data)
	if err != nil {
		return Chunk{}, fmt.Errorf("chunk %d of payload %s: %w", p.i, p.Payload.Name, err)
	}
	if e.Compression != Stored {
		p.data = data
	}
	p.sum.Write(data)
	c := Chunk{Index: p.i, Offset: p.off, Entry: e, Data: data}
	p.i++
	p.off += uint64(e.Size)
	return c, nil
}

// verifyChunk checks the stored bytes against the table, decompresses them
// into buf (bounded by the declared size) and checks the content digest.
func verifyChunk(dec *zstd.Decoder, e *Entry, stored, buf []byte) ([]byte, error) {
	if sha256.Sum256(stored) != e.StoredDigest {
		return nil, fmt.Errorf("%w: stored bytes", ErrDigest)
	}
	data := stored
	if e.Compression == Zstd {
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
// only: nothing of it may be used).
func (p *PayloadReader) Skip() error {
	var rest uint64
	for _, e := range p.Entries[p.i:] {
		rest += uint64(e.StoredSize)
	}
	n, err := io.CopyN(io.Discard, p.r.r, int64(rest))
	if err != nil && uint64(n) < rest {
		return fmt.Errorf("%w: in the data of payload %s", ErrTruncated, p.Payload.Name)
	}
	p.i, p.pending, p.skipped = len(p.Entries), nil, true
	return nil
}
