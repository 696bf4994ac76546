package signature

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// MaxSignatures bounds the signatures of one bundle: Verify refuses more
// (ErrBadSignature), and the bundle reader refuses a section with more.
const MaxSignatures = 64

// Check checks everything about one signature that needs neither a key from
// the trust store nor the signed message, so that a reader can refuse a
// non-canonical record before any policy runs (docs/bundle-format.md,
// "Signature section"):
//
//   - the algorithm is Ed25519 or ECDSAP256SHA256;
//   - the signature bytes are in the one encoding the algorithm allows:
//     64 bytes with S < L for Ed25519; for ECDSA the canonical DER
//     SEQUENCE { r, s } with 1 ≤ r < n and 1 ≤ s ≤ (n-1)/2 (low s: of the
//     two valid signatures (r, s) and (r, n-s) only the lower is accepted);
//   - at most MaxCerts certificates, each one X.509 DER certificate;
//   - with certificates: the leaf's key is an Ed25519 or ECDSA P-256 key
//     whose key id is KeyID and whose algorithm is Algorithm, and every
//     certificate after the leaf issued the one before it (it is a CA, its
//     signature over the one before verifies), so a carried chain holds no
//     certificate that is not part of the path.
//
// The error says what is wrong, without a prefix.
func (s *Signature) Check() error {
	_, err := s.check()
	return err
}

// check is Check; it also returns the parsed certificates.
func (s *Signature) check() ([]*x509.Certificate, error) {
	switch s.Algorithm {
	case Ed25519:
		if err := checkEd25519(s.Sig); err != nil {
			return nil, err
		}
	case ECDSAP256SHA256:
		if err := checkECDSA(s.Sig); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown algorithm %d (known: 1 ed25519, 2 ecdsa-p256-sha256)", uint8(s.Algorithm))
	}
	if len(s.Certs) > MaxCerts {
		return nil, fmt.Errorf("%d certificates (limit %d)", len(s.Certs), MaxCerts)
	}
	if len(s.Certs) == 0 {
		return nil, nil
	}
	certs := make([]*x509.Certificate, len(s.Certs))
	for i, der := range s.Certs {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	leaf := certs[0]
	alg, err := algorithmOf(leaf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("leaf certificate: %w", err)
	}
	if alg != s.Algorithm {
		return nil, fmt.Errorf("leaf certificate: %s key, but a %s signature", alg, s.Algorithm)
	}
	if id, _ := KeyIDOf(leaf.PublicKey); id != s.KeyID {
		return nil, fmt.Errorf("leaf certificate: its key id %s is not the signature's", keyIDString(id))
	}
	for i := 1; i < len(certs); i++ {
		if err := issued(certs[i], certs[i-1]); err != nil {
			return nil, fmt.Errorf("certificate %d did not issue certificate %d: %w", i, i-1, err)
		}
	}
	return certs, nil
}

// issued checks that parent issued child: parent is a CA (basicConstraints
// cA = TRUE; keyCertSign when it has a KeyUsage extension), child names it
// as issuer, and parent's signature over child verifies.
func issued(parent, child *x509.Certificate) error {
	if err := checkIssuer(parent); err != nil {
		return err
	}
	if !slices.Equal(child.RawIssuer, parent.RawSubject) {
		return errors.New("the issuer name is not its subject")
	}
	return child.CheckSignatureFrom(parent)
}

// checkIssuer enforces what a certificate that issues another must allow.
func checkIssuer(c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return fmt.Errorf("certificate %q is not a CA (basicConstraints cA is not true)", c.Subject.CommonName)
	}
	if hasExtension(c, oidKeyUsage) && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("certificate %q: key usage does not include keyCertSign", c.Subject.CommonName)
	}
	return nil
}

func hasExtension(c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return true
		}
	}
	return false
}

// ed25519L is the order of the Ed25519 base point, 2^252 +
// 27742317777372353535851937790883648493.
var ed25519L, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)

// checkEd25519 checks the shape of an Ed25519 signature R || S: 64 bytes,
// S (little-endian) below L. R is checked only by verification.
func checkEd25519(sig []byte) error {
	if len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("ed25519 signature of %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	le := slices.Clone(sig[32:])
	slices.Reverse(le)
	if new(big.Int).SetBytes(le).Cmp(ed25519L) >= 0 {
		return errors.New("ed25519 signature: S is not below the group order (non-canonical)")
	}
	return nil
}

// ecdsaSig is the ASN.1 form of an ECDSA signature.
type ecdsaSig struct {
	R, S *big.Int
}

var (
	p256N     = elliptic.P256().Params().N
	p256HalfN = new(big.Int).Rsh(p256N, 1) // (n-1)/2, n being odd
)

// checkECDSA checks that sig is the canonical DER encoding of a SEQUENCE of
// two INTEGERs with nothing after it (re-encoding the parsed values gives
// sig back), with 1 ≤ r < n and 1 ≤ s ≤ (n-1)/2 for P-256 (low s).
func checkECDSA(sig []byte) error {
	var v ecdsaSig
	rest, err := asn1.Unmarshal(sig, &v)
	if err != nil {
		return errors.New("ecdsa signature: malformed DER")
	}
	if len(rest) != 0 {
		return errors.New("ecdsa signature: trailing bytes after the DER")
	}
	if again, err := asn1.Marshal(v); err != nil || !slices.Equal(again, sig) {
		return errors.New("ecdsa signature: non-canonical DER")
	}
	if v.R.Sign() <= 0 || v.S.Sign() <= 0 || v.R.Cmp(p256N) >= 0 || v.S.Cmp(p256N) >= 0 {
		return errors.New("ecdsa signature: r or s outside 1 … n-1")
	}
	if v.S.Cmp(p256HalfN) > 0 {
		return errors.New("ecdsa signature: high s (s > n/2; only the low-s form is accepted)")
	}
	return nil
}

// lowS returns the DER ECDSA signature sig in its low-s form: (r, n-s) when
// s > n/2, else sig itself. Both verify; Check accepts only the low one.
func lowS(pub *ecdsa.PublicKey, sig []byte) ([]byte, error) {
	var v ecdsaSig
	if rest, err := asn1.Unmarshal(sig, &v); err != nil || len(rest) != 0 {
		return nil, errors.New("ecdsa signature: malformed DER")
	}
	n := pub.Curve.Params().N
	if v.S.Sign() <= 0 || v.S.Cmp(new(big.Int).Rsh(n, 1)) <= 0 {
		return sig, nil
	}
	v.S = new(big.Int).Sub(n, v.S)
	return asn1.Marshal(v)
}
