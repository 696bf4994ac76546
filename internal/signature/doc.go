// Package signature signs and verifies tandem update bundles.
//
// # What is signed
//
// A bundle is identified by its bundle hash, the SHA-256 of its header
// bytes; the header lists the digest of every payload chunk, so the hash
// commits to the whole bundle. A signature never covers the hash alone but
// the message
//
//	MessagePrefix || bundleHash   ("tandem bundle signature v1\x00" + 32 bytes)
//
// The prefix separates these signatures from anything else the same key
// might sign. Ed25519 signs the message itself (pure Ed25519);
// ECDSA P-256 signs SHA-256(message) and the signature is ASN.1 DER, as
// crypto/ecdsa and `openssl dgst -sha256 -sign` write it.
//
// # Trust model
//
// The device holds a [TrustStore]: public keys and certificates an operator
// installed (by default every *.pem, *.pub and *.crt file in
// /etc/tandem/keys; files and directories that root would not trust are
// refused, see LoadTrustDir). Nothing else is trusted: not the system
// certificate store, not a key or certificate the bundle carries. A bundle
// is accepted when AT LEAST ONE of its signatures is valid under the trust
// store AND no signature that the device can check is broken:
//
//   - Raw key: the signature's KeyID (SHA-256 of the signer's PKIX
//     SubjectPublicKeyInfo DER) names a trusted PUBLIC KEY, the key's type
//     matches the signature's Algorithm, and the signature verifies.
//   - Certificate: the signature carries a chain (leaf first, then
//     intermediates, each the issuer of the one before). The leaf key is
//     Ed25519 or ECDSA P-256, its KeyID is the signature's KeyID, it
//     verifies the signature, and crypto/x509 builds a chain from the leaf
//     through the carried intermediates to a trusted CERTIFICATE (a root,
//     or any anchor certificate: an anchor need not be self-signed, and a
//     trusted certificate may be the leaf itself). Every certificate that
//     issues another in that path is a CA (basicConstraints cA true, and
//     keyCertSign when it has a KeyUsage extension); no certificate of the
//     path has a critical extension other than keyUsage, basicConstraints,
//     extKeyUsage, subjectAltName and nameConstraints. The leaf must allow
//     digitalSignature when it has a KeyUsage extension. Extended key
//     usage: every certificate of the path, the trusted one included, that
//     has the extension must list codeSigning or anyExtendedKeyUsage.
//     Certificate validity is checked as [TimePolicy] says.
//
// A signature that carries certificates is accepted on the raw-key rule
// too when its KeyID names a trusted PUBLIC KEY (so one signature serves
// devices that trust the key and devices that trust the CA).
//
// Several signatures allow key rotation: a bundle signed by the old and the
// new key installs on devices that trust either; a signature by a raw key
// the device does not hold cannot be checked and is passed over. Every
// other signature must be right: each must pass [Signature.Check] (known
// algorithm, canonical encoding, low-s ECDSA, certificates that parse and
// form the carried chain), and each whose key is known (a trusted raw key,
// or any leaf certificate) must verify, or the bundle is refused with
// ErrBadSignature even when another signature is valid. So the only bytes
// of a signature section that a device does not check are those of
// raw-key signatures by keys it does not trust, and which signatures are
// there at all. Verification fails closed: an empty trust store
// ([ErrNoTrust]) or no valid signature is an error, never a warning.
//
// # Time
//
// Devices without a real-time clock boot in 1970, where every certificate
// looks "not yet valid". [TimePolicy] decides which instant certificates are
// checked at: the device clock when it is after a build-time floor, else the
// bundle's signed creation time, else (neither is known) no instant at all.
// Raw keys have no validity period and are never time-checked; revoking a
// raw key means removing it from the trust store.
//
// # Malleability
//
// ECDSA signatures (r, s) and (r, n-s) are both valid mathematically; the
// format takes only the low-s form (s ≤ (n-1)/2). Sign and Detached
// normalise s (openssl, crypto/ecdsa and HSMs do not), and Check refuses a
// high s. Encodings are otherwise strict: the DER must be canonical and
// Ed25519 signatures exactly 64 bytes with a canonical S.
package signature
