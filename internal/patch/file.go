package patch

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/signature"
)

// Head is a patch read up to its data: the header, its hash and the
// signatures, none of them verified yet.
type Head struct {
	Header     *Header
	Hash       Hash
	Signatures []signature.Signature
	DataOffset int64 // where the segments start: header and signature section
}

// Size is the size of the whole patch file.
func (h *Head) Size() int64 { return h.DataOffset + int64(h.Header.DataSize()) }

// sigPrefix is the size of the signature section's magic and size fields.
const sigPrefix = 8

// ReadHead reads and parses the header and the signature section (the same
// section as a bundle's, docs/bundle-format.md). It reads no more than
// MaxHeaderSize + bundle.MaxSigSectionSize + 8 bytes.
func ReadHead(r io.Reader) (*Head, error) {
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
	sp := make([]byte, sigPrefix)
	if err := readFull(r, sp, "signature section"); err != nil {
		return nil, err
	}
	sn, err := bundle.SigSectionSize(sp)
	if err != nil {
		return nil, fmt.Errorf("patch: %w", err)
	}
	sb := make([]byte, sn)
	if err := readFull(r, sb, "signature section"); err != nil {
		return nil, err
	}
	sigs, err := bundle.ParseSignatures(sb)
	if err != nil {
		return nil, fmt.Errorf("patch: %w", err)
	}
	return &Head{Header: h, Hash: sha256.Sum256(hb), Signatures: sigs, DataOffset: int64(n + sigPrefix + sn)}, nil
}

func readFull(r io.Reader, b []byte, what string) error {
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: the patch ends in its %s", ErrFormat, what)
		}
		return fmt.Errorf("read patch %s: %w", what, err)
	}
	return nil
}

// Write writes a patch: the header, the signatures sign makes for its hash
// (none when sign is nil), the segments' stored bytes in order.
func Write(w io.Writer, h *Header, stored [][]byte, sign func(Hash) ([]signature.Signature, error)) (Hash, error) {
	hb, err := h.Marshal()
	if err != nil {
		return Hash{}, err
	}
	hash := Hash(sha256.Sum256(hb))
	var sigs []signature.Signature
	if sign != nil {
		if sigs, err = sign(hash); err != nil {
			return hash, err
		}
	}
	sb, err := bundle.MarshalSignatures(sigs)
	if err != nil {
		return hash, err
	}
	for _, b := range append([][]byte{hb, sb}, stored...) {
		if _, err := w.Write(b); err != nil {
			return hash, err
		}
	}
	return hash, nil
}

// ApplySection reads the segments of section s from data (the patch data,
// at its offset 0), checks each, applies it to src and hands the output
// chunk by chunk to emit, unverified: the caller checks each chunk (the
// installer through the bundle's PayloadReader). For tests and tools; the
// installer fetches segments by ranges instead.
func ApplySection(s *Section, entries []bundle.Entry, data io.ReaderAt, src io.ReaderAt, emit func(i int, b []byte) error) error {
	var stored, raw, out []byte
	for _, g := range s.Segments {
		if uint64(cap(stored)) < uint64(g.StoredSize) {
			stored = make([]byte, g.StoredSize)
		}
		stored = stored[:g.StoredSize]
		if _, err := data.ReadAt(stored, int64(g.Offset)); err != nil {
			return fmt.Errorf("read segment at %d: %w", g.Offset, err)
		}
		var err error
		if raw, err = DecodeSegment(g, stored, raw); err != nil {
			return err
		}
		a, err := NewApplier(raw, SegmentOutput(g, entries), src, int64(s.SourceSize))
		if err != nil {
			return err
		}
		for i := g.FirstChunk; i < g.FirstChunk+g.Chunks; i++ {
			if cap(out) < int(entries[i].Size) {
				out = make([]byte, entries[i].Size)
			}
			b := out[:entries[i].Size]
			if err := a.Read(b); err != nil {
				return err
			}
			if err := emit(int(i), b); err != nil {
				return err
			}
		}
	}
	return nil
}
