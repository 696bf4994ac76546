package signature

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
)

// SigningKey is a private key with the certificate chain (DER, leaf first)
// its signatures carry; Chain is nil for a raw key.
type SigningKey struct {
	Key   crypto.Signer
	Chain [][]byte
}

// LoadSigningKeys loads signing keys named as on tandem's command line and
// in bundle specs: PATH (a PEM private key, see ParsePrivateKey) or
// PATH:CHAIN (CHAIN a PEM certificate chain, leaf first, see ReadCertChain).
func LoadSigningKeys(args []string) ([]SigningKey, error) {
	var ks []SigningKey
	for _, k := range args {
		keyPath, chainPath, _ := strings.Cut(k, ":")
		b, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		key, err := ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", keyPath, err)
		}
		var chain [][]byte
		if chainPath != "" {
			if chain, err = ReadCertChain(chainPath); err != nil {
				return nil, err
			}
		}
		ks = append(ks, SigningKey{key, chain})
	}
	return ks, nil
}

// SignAll signs bundleHash with every key, in order (see Sign).
func SignAll(keys []SigningKey, bundleHash [32]byte) ([]Signature, error) {
	var sigs []Signature
	for _, k := range keys {
		sig, err := Sign(k.Key, k.Chain, bundleHash)
		if err != nil {
			return nil, err
		}
		sigs = append(sigs, sig)
	}
	return sigs, nil
}

// ReadCertChain reads a file of PEM certificates (leaf first) as DER. Any
// other PEM block is an error, and so is a file without a certificate.
func ReadCertChain(name string) ([][]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("certificate chain: %w", err)
	}
	var chain [][]byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("certificate chain %s: unexpected PEM block %q", name, blk.Type)
		}
		chain = append(chain, blk.Bytes)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("certificate chain %s: no PEM certificates", name)
	}
	return chain, nil
}

// AddFiles adds the public keys and certificates of each file to t (see
// Add). Each file must be one LoadTrustDir would read (a regular file root
// would trust, at most MaxTrustFileSize bytes); an error names the file.
func (t *TrustStore) AddFiles(files []string) error {
	for _, f := range files {
		b, err := readTrustFile(f)
		if err != nil {
			return fmt.Errorf("trust file %s: %w", f, err)
		}
		if err := t.Add(b); err != nil {
			return fmt.Errorf("trust file %s: %w", f, err)
		}
	}
	return nil
}

// PublicKeyPEM returns the public key of k as PEM "PUBLIC KEY" (PKIX), the
// form a trust file holds.
func PublicKeyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// GenerateKeyFiles makes a new key pair (GenerateKey) and writes it to
// name.key (the private key, mode 0600) and name.pub (mode 0644). Neither
// file may exist yet: an existing key is never overwritten.
func GenerateKeyFiles(name string) error {
	priv, pub, err := GenerateKey()
	if err != nil {
		return err
	}
	if err := writeNew(name+".key", priv, 0o600); err != nil {
		return err
	}
	return writeNew(name+".pub", pub, 0o644)
}

// writeNew writes a file that must not exist yet.
func writeNew(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
