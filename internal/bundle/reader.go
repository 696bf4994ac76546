package bundle

import (
	"crypto/sha256"
	"errors"
	"fmt"
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
	// CheckPayloadDigests makes each payload reader also recompute its
	// payload's whole-content digest (the header's `digest`) and, from the
	// bundle stream, the digest of its stored bytes (`stored_digest`), and
	// fail at the end when one differs. That checks the bundle file as a
	// whole (a writer's bug, a stored byte changed in a way that
	// decompresses to the same content), not what is installed: the
	// verified chunk table already fixes every content byte, and each is
	// checked before it is released (docs/bundle-format.md, "Reading a
	// whole bundle"). The check of a bundle file (VerifyFile, `tandem
	// bundle verify`) sets it; an install does not, and so hashes every
	// installed byte once and nothing else.
	CheckPayloadDigests bool

	verified bool
	next     int // index of the next payload
	cur      *PayloadReader
	dec      *zstd.Decoder // shared by the payload readers
}

// readFull reads exactly len(b) bytes; a short input is ErrTruncated.
func readFull(r io.Reader, b []byte, what string) error {
	if _, err := io.ReadFull(r, b); err != nil {
		return readError(err, what)
	}
	return nil
}

// readError is readFull's error for what, from io.ReadFull's err.
func readError(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: in the %s", ErrTruncated, what)
	}
	return fmt.Errorf("read %s: %w", what, err)
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

// zstdDecoder is the package's zstd decoder, made once and shared by every
// reader: DecodeAll is safe for concurrent use (up to maxWorkers calls run
// at once, each on its own reused block decoder), and its output is bounded
// by the destination's capacity.
var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(maxWorkers), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(MaxChunk+DecodeSlack), zstd.WithDecoderMaxWindow(MaxChunk))
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
		if err := r.end(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	p := &r.Header.Payloads[r.next]
	r.next++
	table := make([]byte, p.TableSize())
	if err := readFull(r.r, table, "chunk table of payload "+p.Name); err != nil {
		return nil, err
	}
	t, err := r.Table(r.next-1, table)
	if err != nil {
		return nil, err
	}
	if r.Header.HasStoredTable() {
		st := make([]byte, r.Header.StoredTableSize(p))
		if err := readFull(r.r, st, "stored table of payload "+p.Name); err != nil {
			return nil, err
		}
		if err := t.AddStoredTable(st); err != nil {
			return nil, err
		}
	}
	r.cur, _ = t.Chunks(&streamSource{r: r, name: p.Name})
	return r.cur, nil
}

// end checks that the stream ends after the last payload.
func (r *Reader) end() error {
	var one [1]byte
	if n, _ := io.ReadFull(r.r, one[:]); n != 0 {
		return ErrTrailing
	}
	return nil
}

// Random access, for delta installs that fetch parts of a remote bundle.

// PayloadOffsets returns where payload i's chunk table and chunk data start
// in the bundle, from the sizes in the header and signature section. In
// format 3 the payload's stored table lies between them, at table +
// TableSize().
func (r *Reader) PayloadOffsets(i int) (table, data int64) {
	off := int64(len(r.HeaderBytes) + len(r.SigBytes))
	for j := 0; j < i; j++ {
		p := &r.Header.Payloads[j]
		off += int64(p.TableSize()) + int64(r.Header.StoredTableSize(p)) + int64(p.StoredSize)
	}
	p := &r.Header.Payloads[i]
	return off, off + int64(p.TableSize()) + int64(r.Header.StoredTableSize(p))
}

// BundleSize returns the total size of the bundle.
func (r *Reader) BundleSize() int64 {
	n := len(r.Header.Payloads)
	_, data := r.PayloadOffsets(n - 1)
	return data + int64(r.Header.Payloads[n-1].StoredSize)
}
