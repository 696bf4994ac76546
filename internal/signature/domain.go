package signature

import (
	"crypto"
	"fmt"
	"strings"
)

// Domain-separated signatures let the same keys sign documents other than
// bundles (update channel files, for example) without a signature of one
// kind ever being valid as a signature of another kind. Such a signature
// covers the message
//
//	domain || digest
//
// where domain is a fixed ASCII text naming the kind and its version,
// ending in one NUL byte ("tandem channel signature v1\x00"), and digest
// is the 32-byte SHA-256 of the document. Bundle signatures are the domain
// MessagePrefix over the bundle hash: Sign and Verify are SignDigest and
// VerifyDigest with that domain, byte for byte. Because every domain ends
// in its only NUL byte, no message of one domain is a message of another.

// DomainMessage returns the bytes a signature in domain covers: domain ||
// digest. External signers (HSMs, openssl) sign these bytes as they sign
// Message for bundles.
func DomainMessage(domain string, digest [32]byte) ([]byte, error) {
	if err := checkDomain(domain); err != nil {
		return nil, err
	}
	m := make([]byte, 0, len(domain)+len(digest))
	m = append(m, domain...)
	return append(m, digest[:]...), nil
}

// checkDomain enforces the shape of a domain: printable ASCII, not empty,
// ending in its only NUL byte.
func checkDomain(domain string) error {
	body, ok := strings.CutSuffix(domain, "\x00")
	if !ok || body == "" {
		return fmt.Errorf("signature domain %q: must be text ending in one NUL byte", domain)
	}
	for _, c := range []byte(body) {
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("signature domain %q: only printable ASCII before the final NUL", domain)
		}
	}
	return nil
}

// SignDigest signs digest in domain with key, as Sign does for bundles
// (same keys, algorithms, certificate chains and self-check).
func SignDigest(key crypto.Signer, chain [][]byte, domain string, digest [32]byte) (Signature, error) {
	msg, err := DomainMessage(domain, digest)
	if err != nil {
		return Signature{}, fmt.Errorf("sign: %w", err)
	}
	return sign(key, chain, msg)
}

// VerifyDigest checks that at least one of sigs is a valid signature of
// digest in domain under trust, with Verify's rules and errors.
func VerifyDigest(sigs []Signature, trust *TrustStore, domain string, digest [32]byte, policy TimePolicy) (Signer, error) {
	msg, err := DomainMessage(domain, digest)
	if err != nil {
		return Signer{}, err
	}
	return verify(sigs, trust, msg, policy)
}
