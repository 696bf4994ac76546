package signature

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// Algorithm is a signature algorithm. The numbers are part of the bundle
// format.
type Algorithm uint8

const (
	// Ed25519 is pure Ed25519 over the message (RFC 8032), 64-byte
	// signatures.
	Ed25519 Algorithm = 1
	// ECDSAP256SHA256 is ECDSA on P-256 over SHA-256(message), the
	// signature an ASN.1 DER SEQUENCE { r, s }.
	ECDSAP256SHA256 Algorithm = 2
)

func (a Algorithm) String() string {
	switch a {
	case Ed25519:
		return "ed25519"
	case ECDSAP256SHA256:
		return "ecdsa-p256-sha256"
	}
	return fmt.Sprintf("algorithm(%d)", uint8(a))
}

// ParsePrivateKey parses one PEM private key: "PRIVATE KEY" (PKCS#8, as
// `openssl genpkey -algorithm ed25519` and `openssl genpkey -algorithm EC
// -pkeyopt ec_paramgen_curve:P-256` write it) holding an Ed25519 or ECDSA
// P-256 key, or "EC PRIVATE KEY" (SEC1) holding a P-256 key. The data must
// be exactly one PEM block (surrounding whitespace allowed). RSA keys, other
// curves, encrypted keys and anything else are refused with an error that
// says why. The result is an ed25519.PrivateKey or an *ecdsa.PrivateKey.
func ParsePrivateKey(pemData []byte) (crypto.Signer, error) {
	block, err := singleBlock(pemData, "private key")
	if err != nil {
		return nil, err
	}
	if block.Headers["Proc-Type"] != "" || block.Headers["DEK-Info"] != "" {
		return nil, errors.New("private key: encrypted PEM keys are not supported (decrypt it first, e.g. openssl pkey -in KEY -out PLAIN)")
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("private key: unexpected PEM headers")
	}
	switch block.Type {
	case "PRIVATE KEY", "EC PRIVATE KEY":
		if err := noTrailingDER(block.Bytes); err != nil {
			return nil, fmt.Errorf("private key: %w", err)
		}
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("private key: PKCS#8: %w", err)
		}
		return checkPrivateKey(k)
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("private key: SEC1: %w", err)
		}
		return checkPrivateKey(k)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("private key: encrypted PKCS#8 keys are not supported (decrypt it first, e.g. openssl pkey -in KEY -out PLAIN)")
	case "RSA PRIVATE KEY":
		return nil, errors.New("private key: RSA keys are not supported (use ed25519 or ECDSA P-256)")
	case "PUBLIC KEY", "CERTIFICATE":
		return nil, fmt.Errorf("private key: the PEM block is a %s, not a private key", block.Type)
	}
	return nil, fmt.Errorf("private key: unsupported PEM block type %q (want PRIVATE KEY or EC PRIVATE KEY)", block.Type)
}

// checkPrivateKey accepts the key types tandem signs with.
func checkPrivateKey(k any) (crypto.Signer, error) {
	switch k := k.(type) {
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return nil, errors.New("private key: malformed ed25519 key")
		}
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("private key: ECDSA curve %s is not supported (use P-256)", k.Curve.Params().Name)
		}
		return k, nil
	case *rsa.PrivateKey:
		return nil, errors.New("private key: RSA keys are not supported (use ed25519 or ECDSA P-256)")
	}
	return nil, fmt.Errorf("private key: %T keys are not supported (use ed25519 or ECDSA P-256)", k)
}

// singleBlock decodes data that must be exactly one PEM block (surrounding
// whitespace allowed); what names the data in errors.
func singleBlock(data []byte, what string) (*pem.Block, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%s: empty input", what)
	}
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return nil, fmt.Errorf("%s: not PEM (data before the BEGIN line)", what)
	}
	block, rest := pem.Decode(trimmed)
	if block == nil || !bytes.HasPrefix(trimmed, []byte("-----BEGIN "+block.Type+"-----")) {
		// nil, or pem.Decode skipped a damaged first block.
		return nil, fmt.Errorf("%s: malformed PEM block", what)
	}
	rest = bytes.TrimSpace(rest)
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%s: several PEM blocks (the first is %s); the file must hold exactly one", what, block.Type)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%s: %d bytes of trailing data after the PEM block", what, len(rest))
	}
	return block, nil
}

// noTrailingDER checks that der is one complete ASN.1 element; the x509
// parsers silently ignore bytes after the key.
func noTrailingDER(der []byte) error {
	var v asn1.RawValue
	rest, err := asn1.Unmarshal(der, &v)
	if err != nil {
		return fmt.Errorf("malformed DER: %w", err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d bytes of trailing data after the DER key", len(rest))
	}
	return nil
}

// GenerateKey makes a new Ed25519 key pair: the private key as PEM
// "PRIVATE KEY" (PKCS#8) and the public key as PEM "PUBLIC KEY" (PKIX),
// ready for ParsePrivateKey and a trust file respectively.
func GenerateKey() (pemPrivate, pemPublic []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

// KeyIDOf returns the key id of an Ed25519 or ECDSA P-256 public key: the
// SHA-256 of its PKIX SubjectPublicKeyInfo DER (what `openssl pkey -pubout
// -outform DER | sha256sum` prints).
func KeyIDOf(pub crypto.PublicKey) ([32]byte, error) {
	if _, err := algorithmOf(pub); err != nil {
		return [32]byte{}, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(der), nil
}

// algorithmOf maps a public key to the algorithm that signs with it.
func algorithmOf(pub crypto.PublicKey) (Algorithm, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return 0, errors.New("malformed ed25519 public key")
		}
		return Ed25519, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return 0, fmt.Errorf("ECDSA curve %s is not supported (use P-256)", k.Curve.Params().Name)
		}
		return ECDSAP256SHA256, nil
	case *rsa.PublicKey:
		return 0, errors.New("RSA keys are not supported (use ed25519 or ECDSA P-256)")
	}
	return 0, fmt.Errorf("%T keys are not supported (use ed25519 or ECDSA P-256)", pub)
}

// keyIDString is the hex form used in errors and in Signer.
func keyIDString(id [32]byte) string { return hex.EncodeToString(id[:]) }
