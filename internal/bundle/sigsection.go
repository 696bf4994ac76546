package bundle

import (
	"encoding/binary"
	"fmt"

	"github.com/tandem-ota/tandem/internal/signature"
)

// Signature section (docs/bundle-format.md, "Signature section"): outside
// the hashed header, so adding a signature does not change the bundle hash.
// The section is canonical: every record is one that signature.Check
// accepts (known algorithm, one encoding of the signature, low-s ECDSA,
// certificates that parse and form the carried chain), so a reader refuses
// what no signer makes before any policy runs.
const (
	SigMagic       = "TSIG"
	sigPrefixSize  = 8 // magic + section size
	maxSigCertSize = 16 << 10
)

// MarshalSignatures encodes the signature section. It checks every
// signature as the reader will, so a section it makes is always one the
// reader accepts.
func MarshalSignatures(sigs []signature.Signature) ([]byte, error) {
	if len(sigs) > signature.MaxSignatures {
		return nil, fmt.Errorf("%w: %d signatures (limit %d)", ErrTooLarge, len(sigs), signature.MaxSignatures)
	}
	e := &encoder{b: make([]byte, 0, 256)}
	e.b = append(e.b, SigMagic...)
	e.u32(0) // size, patched below
	e.u16(uint16(len(sigs)))
	e.u16(0)
	for i, s := range sigs {
		if len(s.Certs) > signature.MaxCerts || len(s.Sig) > signature.MaxSigSize {
			return nil, fmt.Errorf("%w: signature %d with %d certificates and %d signature bytes", ErrTooLarge, i, len(s.Certs), len(s.Sig))
		}
		if err := s.Check(); err != nil {
			return nil, fmt.Errorf("%w: signature %d: %w", ErrFormat, i, err)
		}
		blob := &encoder{}
		blob.u8(uint8(s.Algorithm))
		blob.b = append(blob.b, 0, 0, 0)
		blob.b = append(blob.b, s.KeyID[:]...)
		blob.u16(uint16(len(s.Certs)))
		for _, c := range s.Certs {
			if len(c) > maxSigCertSize {
				return nil, fmt.Errorf("%w: certificate of %d bytes (limit %d)", ErrTooLarge, len(c), maxSigCertSize)
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
		return 0, fmt.Errorf("%w: signature section magic is not %q", ErrFormat, SigMagic)
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

// ParseSignatures decodes the section body (after the 8-byte prefix) and
// checks every record (signature.Check): a count, length or number of
// certificates above its limit is ErrTooLarge, anything else ErrFormat.
func ParseSignatures(body []byte) ([]signature.Signature, error) {
	d := newDecoder(body, 0)
	count := int(d.U16())
	d.Zero(2, "signatures.reserved")
	if count > signature.MaxSignatures {
		return nil, fmt.Errorf("%w: signature section: %d signatures (limit %d)", ErrTooLarge, count, signature.MaxSignatures)
	}
	var sigs []signature.Signature
	for i := 0; i < count && d.Err == nil; i++ {
		n := int(d.U32())
		blob := newDecoder(d.Take(n), 0)
		if d.Err != nil {
			break
		}
		var s signature.Signature
		s.Algorithm = signature.Algorithm(blob.U8())
		if r := blob.Take(3); blob.Err == nil && !allZero(r) {
			blob.Fail("reserved bytes of signature %d are not zero", i)
		}
		copy(s.KeyID[:], blob.Take(32))
		nc := int(blob.U16())
		if nc > signature.MaxCerts {
			blob.Over("signature %d carries %d certificates (limit %d)", i, nc, signature.MaxCerts)
		}
		for j := 0; j < nc && blob.Err == nil; j++ {
			switch cl := int(blob.U32()); {
			case cl == 0:
				blob.Fail("certificate of 0 bytes")
			case cl > maxSigCertSize:
				blob.Over("certificate of %d bytes (limit %d)", cl, maxSigCertSize)
			default:
				if c := blob.Take(cl); c != nil {
					s.Certs = append(s.Certs, append([]byte(nil), c...))
				}
			}
		}
		switch sl := int(blob.U16()); {
		case blob.Err != nil:
		case sl == 0:
			blob.Fail("signature of 0 bytes")
		case sl > signature.MaxSigSize:
			blob.Over("signature of %d bytes (limit %d)", sl, signature.MaxSigSize)
		default:
			s.Sig = append([]byte(nil), blob.Take(sl)...)
		}
		if blob.Err == nil && blob.Off != len(blob.B) {
			blob.Fail("%d unused bytes in signature %d", len(blob.B)-blob.Off, i)
		}
		if blob.Err != nil {
			return nil, fmt.Errorf("signature section: %w", blob.Err)
		}
		if err := s.Check(); err != nil {
			return nil, fmt.Errorf("%w: signature section: signature %d: %w", ErrFormat, i, err)
		}
		sigs = append(sigs, s)
	}
	if d.Err != nil {
		return nil, fmt.Errorf("signature section: %w", d.Err)
	}
	if d.Off != len(body) {
		return nil, fmt.Errorf("%w: %d unused bytes in the signature section", ErrFormat, len(body)-d.Off)
	}
	return sigs, nil
}
