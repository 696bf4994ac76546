package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
)

// MessagePrefix separates tandem bundle signatures from anything else a key
// signs. A signature covers MessagePrefix followed by the 32-byte bundle
// hash; see Message.
const MessagePrefix = "tandem bundle signature v1\x00"

// Message returns the bytes a signature covers: MessagePrefix || bundleHash.
// External signers use it, e.g. `openssl pkeyutl -sign -rawin` (Ed25519) or
// `openssl dgst -sha256 -sign` (ECDSA P-256) over these bytes.
func Message(bundleHash [32]byte) []byte {
	m := make([]byte, 0, len(MessagePrefix)+len(bundleHash))
	m = append(m, MessagePrefix...)
	return append(m, bundleHash[:]...)
}

// Signature is one signature of a bundle hash.
type Signature struct {
	Algorithm Algorithm
	// KeyID is the SHA-256 of the signer's PKIX public key DER (KeyIDOf).
	KeyID [32]byte
	// Certs is the signer's certificate chain in DER, leaf first, then
	// intermediates (the root comes from the trust store). Empty for a raw
	// key.
	Certs [][]byte
	// Sig is the signature: 64 bytes for Ed25519, ASN.1 DER for ECDSA.
	Sig []byte
}

// Sign signs bundleHash with key (Ed25519 or ECDSA P-256; an
// ed25519.PrivateKey, an *ecdsa.PrivateKey or any crypto.Signer with such
// a public key, such as an HSM). chain, if not empty, is the DER
// certificate chain to carry (leaf first); the leaf's public key must be
// key's, and its key usages must allow signing bundles. Sign verifies the
// signature it made before returning it.
func Sign(key crypto.Signer, chain [][]byte, bundleHash [32]byte) (Signature, error) {
	return sign(key, chain, Message(bundleHash))
}

// sign signs msg (see Sign).
func sign(key crypto.Signer, chain [][]byte, msg []byte) (Signature, error) {
	if key == nil {
		return Signature{}, errors.New("sign: no key")
	}
	if k, ok := key.(ed25519.PrivateKey); ok && len(k) != ed25519.PrivateKeySize {
		return Signature{}, errors.New("sign: malformed ed25519 private key")
	}
	pub := key.Public()
	alg, err := algorithmOf(pub)
	if err != nil {
		return Signature{}, fmt.Errorf("sign: %w", err)
	}
	id, err := KeyIDOf(pub)
	if err != nil {
		return Signature{}, fmt.Errorf("sign: %w", err)
	}
	s := Signature{Algorithm: alg, KeyID: id}
	if len(chain) > MaxCerts {
		return Signature{}, fmt.Errorf("sign: %d certificates (limit %d)", len(chain), MaxCerts)
	}
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return Signature{}, fmt.Errorf("sign: certificate %d: %w", i, err)
		}
		if i == 0 {
			eq, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
			if !ok || !eq.Equal(pub) {
				return Signature{}, errors.New("sign: the leaf certificate's public key is not the signing key's")
			}
			if err := checkLeafUsage(c); err != nil {
				return Signature{}, fmt.Errorf("sign: leaf certificate: %w", err)
			}
		}
		s.Certs = append(s.Certs, append([]byte(nil), der...))
	}
	switch alg {
	case Ed25519:
		s.Sig, err = key.Sign(rand.Reader, msg, crypto.Hash(0))
	case ECDSAP256SHA256:
		d := sha256.Sum256(msg)
		if s.Sig, err = key.Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
			// Signers (HSMs, openssl) need not normalise s; the format
			// takes only the low-s form.
			s.Sig, err = lowS(pub.(*ecdsa.PublicKey), s.Sig)
		}
	}
	if err != nil {
		return Signature{}, fmt.Errorf("sign: %w", err)
	}
	if err := verifyRaw(pub, alg, msg, s.Sig); err != nil {
		return Signature{}, fmt.Errorf("sign: the signer made an invalid signature: %w", err)
	}
	if err := s.Check(); err != nil {
		return Signature{}, fmt.Errorf("sign: %w", err)
	}
	return s, nil
}

// MaxCerts and MaxSigSize bound a Signature; Check refuses larger ones.
const (
	MaxCerts   = 8
	MaxSigSize = 1024
)

// verifyRaw checks sig over msg with pub, strictly: the encoding Check
// allows (64 bytes with a canonical S for Ed25519; canonical DER with low s
// for ECDSA), and then the signature itself.
func verifyRaw(pub crypto.PublicKey, alg Algorithm, msg, sig []byte) error {
	keyAlg, err := algorithmOf(pub)
	if err != nil {
		return err
	}
	if keyAlg != alg {
		return fmt.Errorf("%s signature from a %s key", alg, keyAlg)
	}
	switch alg {
	case Ed25519:
		if err := checkEd25519(sig); err != nil {
			return err
		}
		if !ed25519.Verify(pub.(ed25519.PublicKey), msg, sig) {
			return errors.New("ed25519 signature does not verify")
		}
		return nil
	case ECDSAP256SHA256:
		if err := checkECDSA(sig); err != nil {
			return err
		}
		d := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig) {
			return errors.New("ecdsa signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("unsupported %s", alg)
}
