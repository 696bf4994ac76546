package bundle

import (
	"encoding/binary"
	"fmt"

	"github.com/tandem-ota/tandem/internal/signature"
)

// Signature section (docs/bundle-format.md, "Signatures"): outside the
// hashed header, so adding a signature does not change the bundle hash.
const (
	SigMagic       = "TSIG"
	sigPrefixSize  = 8 // magic + section size
	maxSigCerts    = 8
	maxSigCertSize = 16 << 10
	maxSigSize     = 1024
)

// MarshalSignatures encodes the signature section.
func MarshalSignatures(sigs []signature.Signature) ([]byte, error) {
	e := &encoder{b: make([]byte, 0, 256)}
	e.b = append(e.b, SigMagic...)
	e.u32(0) // size, patched below
	e.u16(uint16(len(sigs)))
	e.u16(0)
	for _, s := range sigs {
		if len(s.Certs) > maxSigCerts || len(s.Sig) > maxSigSize || len(s.Sig) == 0 {
			return nil, fmt.Errorf("%w: signature with %d certificates and %d signature bytes", ErrFormat, len(s.Certs), len(s.Sig))
		}
		blob := &encoder{}
		blob.u8(uint8(s.Algorithm))
		blob.b = append(blob.b, 0, 0, 0)
		blob.b = append(blob.b, s.KeyID[:]...)
		blob.u16(uint16(len(s.Certs)))
		for _, c := range s.Certs {
			if len(c) == 0 || len(c) > maxSigCertSize {
				return nil, fmt.Errorf("%w: certificate of %d bytes", ErrFormat, len(c))
			}
			blob.u32(uint32(len(c)))
			blob.b = append(blob.b, c...)
		}
		blob.u16(uint16(len(s.Sig)))
		blob.b = append(blob.b, s.Sig...)
		e.u32(uint32(len(blob.b)))
		e.b = append(e.b, blob.b...)
	}
	if len(e.b)-sigPrefixSize > MaxSigSectionSize {
		return nil, fmt.Errorf("%w: signature section of %d bytes (limit %d)", ErrTooLarge, len(e.b)-sigPrefixSize, MaxSigSectionSize)
	}
	binary.LittleEndian.PutUint32(e.b[4:], uint32(len(e.b)-sigPrefixSize))
	return e.b, nil
}

// SigSectionSize reads the size of the section body from its 8-byte prefix.
func SigSectionSize(prefix []byte) (int, error) {
	if string(prefix[:4]) != SigMagic {
		return 0, fmt.Errorf("%w: signature section magic %q", ErrFormat, prefix[:4])
	}
	n := binary.LittleEndian.Uint32(prefix[4:])
	if n > MaxSigSectionSize {
		return 0, fmt.Errorf("%w: signature section of %d bytes (limit %d)", ErrTooLarge, n, MaxSigSectionSize)
	}
	if n < 4 {
		return 0, fmt.Errorf("%w: signature section of %d bytes", ErrFormat, n)
	}
	return int(n), nil
}

// ParseSignatures decodes the section body (after the 8-byte prefix).
func ParseSignatures(body []byte) ([]signature.Signature, error) {
	d := &decoder{b: body}
	count := int(d.u16())
	d.zero16("signatures.reserved")
	var sigs []signature.Signature
	for i := 0; i < count && d.err == nil; i++ {
		n := int(d.u32())
		blob := &decoder{b: d.take(n)}
		if d.err != nil {
			break
		}
		var s signature.Signature
		s.Algorithm = signature.Algorithm(blob.u8())
		if r := blob.take(3); blob.err == nil && !allZero(r) {
			blob.fail("reserved bytes of signature %d are not zero", i)
		}
		copy(s.KeyID[:], blob.take(32))
		nc := int(blob.u16())
		if nc > maxSigCerts {
			blob.fail("signature %d carries %d certificates (limit %d)", i, nc, maxSigCerts)
		}
		for j := 0; j < nc && blob.err == nil; j++ {
			cl := int(blob.u32())
			if cl == 0 || cl > maxSigCertSize {
				blob.fail("certificate of %d bytes", cl)
			}
			if c := blob.take(cl); c != nil {
				s.Certs = append(s.Certs, append([]byte(nil), c...))
			}
		}
		sl := int(blob.u16())
		if sl == 0 || sl > maxSigSize {
			blob.fail("signature of %d bytes", sl)
		}
		s.Sig = append([]byte(nil), blob.take(sl)...)
		if blob.err == nil && blob.off != len(blob.b) {
			blob.fail("%d unused bytes in signature %d", len(blob.b)-blob.off, i)
		}
		if blob.err != nil {
			return nil, fmt.Errorf("signature section: %w", blob.err)
		}
		sigs = append(sigs, s)
	}
	if d.err != nil {
		return nil, fmt.Errorf("signature section: %w", d.err)
	}
	if d.off != len(body) {
		return nil, fmt.Errorf("%w: %d unused bytes in the signature section", ErrFormat, len(body)-d.off)
	}
	return sigs, nil
}
