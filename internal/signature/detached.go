package signature

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
)

// Detached turns a signature made elsewhere (an HSM, an offline machine)
// over Message(bundleHash) into a Signature, after checking it: the signer
// is the PEM public key (exactly one "PUBLIC KEY" block), or the leaf of
// chain (DER, leaf first) when chain is given; when both are given they must
// name the same key. The leaf's key usages must allow signing bundles, as
// for Sign, and the chain must be in order (see Check). sig is checked as
// strictly as Verify checks it (64 bytes for Ed25519, canonical DER for
// ECDSA P-256, whose s is first normalised to the low-s form, as openssl
// does not); a signature that does not verify is ErrBadSignature. sig and
// chain are copied.
func Detached(sig, publicKeyPEM []byte, chain [][]byte, bundleHash [32]byte) (Signature, error) {
	var pub crypto.PublicKey
	if len(publicKeyPEM) > 0 {
		block, err := singleBlock(publicKeyPEM, "public key")
		if err != nil {
			return Signature{}, fmt.Errorf("signature: %w", err)
		}
		if block.Type != "PUBLIC KEY" || len(block.Headers) != 0 {
			return Signature{}, fmt.Errorf("signature: public key: want one PEM \"PUBLIC KEY\" block, not %q", block.Type)
		}
		if err := noTrailingDER(block.Bytes); err != nil {
			return Signature{}, fmt.Errorf("signature: public key: %w", err)
		}
		if pub, err = x509.ParsePKIXPublicKey(block.Bytes); err != nil {
			return Signature{}, fmt.Errorf("signature: public key: %w", err)
		}
	}
	if len(chain) > MaxCerts {
		return Signature{}, fmt.Errorf("signature: %d certificates (limit %d)", len(chain), MaxCerts)
	}
	s := Signature{Sig: bytes.Clone(sig)}
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return Signature{}, fmt.Errorf("signature: certificate %d: %w", i, err)
		}
		if i == 0 {
			if err := checkLeafUsage(c); err != nil {
				return Signature{}, fmt.Errorf("signature: leaf certificate: %w", err)
			}
			if pub != nil {
				if eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(c.PublicKey) {
					return Signature{}, errors.New("signature: the public key is not the leaf certificate's")
				}
			}
			pub = c.PublicKey
		}
		s.Certs = append(s.Certs, bytes.Clone(der))
	}
	if pub == nil {
		return Signature{}, errors.New("signature: no public key or certificate chain for the detached signature")
	}
	alg, err := algorithmOf(pub)
	if err != nil {
		return Signature{}, fmt.Errorf("signature: %w", err)
	}
	if len(sig) > MaxSigSize {
		return Signature{}, fmt.Errorf("%w: detached signature of %d bytes (limit %d)", ErrBadSignature, len(sig), MaxSigSize)
	}
	if alg == ECDSAP256SHA256 {
		// openssl and HSMs need not normalise s; the format takes only the
		// low-s form, which is as valid.
		if s.Sig, err = lowS(pub.(*ecdsa.PublicKey), s.Sig); err != nil {
			return Signature{}, fmt.Errorf("%w: detached signature: %v", ErrBadSignature, err)
		}
	}
	if err := verifyRaw(pub, alg, Message(bundleHash), s.Sig); err != nil {
		return Signature{}, fmt.Errorf("%w: detached signature: %v", ErrBadSignature, err)
	}
	s.Algorithm = alg
	if s.KeyID, err = KeyIDOf(pub); err != nil {
		return Signature{}, fmt.Errorf("signature: %w", err)
	}
	if err := s.Check(); err != nil {
		return Signature{}, fmt.Errorf("signature: %w", err)
	}
	return s, nil
}
