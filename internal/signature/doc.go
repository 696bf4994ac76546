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
// /etc/tandem/keys). Nothing else is trusted: not the system certificate
// store, not a key or certificate the bundle carries. A bundle is accepted
// when AT LEAST ONE of its signatures is valid under the trust store:
//
//   - Raw key: the signature's KeyID (SHA-256 of the signer's PKIX
//     SubjectPublicKeyInfo DER) names a trusted PUBLIC KEY, the key's type
//     matches the signature's Algorithm, and the signature verifies.
//   - Certificate: the signature carries a chain (leaf first, then any
//     intermediates). The leaf key is Ed25519 or ECDSA P-256, its KeyID is
//     the signature's KeyID, it verifies the signature, and crypto/x509
//     builds a chain from the leaf through the carried intermediates to a
//     trusted CERTIFICATE (a root, or any anchor certificate: an anchor
//     need not be self-signed, and a trusted certificate may be the leaf
//     itself). The leaf must allow digitalSignature when it has a KeyUsage
//     extension. Extended key usage: a leaf (or intermediate) without the
//     extension, or with anyExtendedKeyUsage, is accepted; otherwise it
//     must list codeSigning (intermediates with the extension must allow it
//     too, as crypto/x509 nests usages). Certificate validity is checked as
//     [TimePolicy] says.
//
// A signature that carries certificates is accepted on the raw-key rule
// too when its KeyID names a trusted PUBLIC KEY (so one signature serves
// devices that trust the key and devices that trust the CA).
//
// Several signatures allow key rotation: a bundle signed by the old and the
// new key installs on devices that trust either. Signatures by unknown keys,
// with unknown algorithms or with chains to unknown roots are ignored, so a
// new algorithm can be added without breaking old devices. Verification
// fails closed: an empty trust store ([ErrNoTrust]) or no valid signature
// is an error, never a warning.
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
// ECDSA signatures (r, s) and (r, n-s) are both valid; verification accepts
// both, because common signers (openssl, crypto/ecdsa, HSMs) do not
// normalise s. Nothing in tandem uses signature bytes as an identifier, so
// this is harmless. Encodings are otherwise strict: the DER must be
// canonical and Ed25519 signatures exactly 64 bytes with a canonical S.
package signature
