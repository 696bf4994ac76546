package signature

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tandem-ota/tandem/internal/bounded"

	"github.com/tandem-ota/tandem/internal/filetrust"
)

// MaxTrustFileSize is the largest trust file LoadTrustDir reads.
const MaxTrustFileSize = 1 << 20

// TrustStore is the set of trusted public keys and certificates. The zero
// value is an empty store, ready for Add. Verify may run concurrently with
// other Verify calls, but not with Add.
type TrustStore struct {
	keys     map[[32]byte]trustedKey
	rootsRaw map[string]string // certificate DER -> source
	roots    *x509.CertPool
	rootList []*x509.Certificate
	// bySubject indexes the trusted certificates by their subject DER, so
	// that Verify finds the ones that may have issued a certificate
	// without trying all.
	bySubject map[string][]*x509.Certificate
}

type trustedKey struct {
	pub    crypto.PublicKey
	alg    Algorithm
	source string
}

// ParseTrust parses PEM data holding any number (at least one) of "PUBLIC
// KEY" blocks (PKIX, Ed25519 or ECDSA P-256) and "CERTIFICATE" blocks
// (trusted root or anchor certificates, any key type crypto/x509 verifies).
func ParseTrust(pemData []byte) (*TrustStore, error) {
	t := &TrustStore{}
	if err := t.Add(pemData); err != nil {
		return nil, err
	}
	return t, nil
}

// Add adds the keys and certificates of pemData (see ParseTrust). Text
// outside PEM blocks (comments) is ignored, but a damaged or truncated block,
// a block of another type (a private key, say) or data without any block is
// an error, and then nothing is added.
func (t *TrustStore) Add(pemData []byte) error { return t.add(pemData, "") }

func (t *TrustStore) add(data []byte, source string) error {
	type parsed struct {
		id   [32]byte
		key  trustedKey
		cert *x509.Certificate
	}
	var items []parsed
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		where := fmt.Sprintf("PEM block %d (%s)", n, block.Type)
		if len(block.Headers) != 0 {
			return fmt.Errorf("%s: unexpected PEM headers", where)
		}
		switch block.Type {
		case "PUBLIC KEY":
			if err := noTrailingDER(block.Bytes); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			alg, err := algorithmOf(pub)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			id, err := KeyIDOf(pub)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			items = append(items, parsed{id: id, key: trustedKey{pub: pub, alg: alg, source: source}})
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			items = append(items, parsed{cert: c})
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY":
			return fmt.Errorf("%s: a private key does not belong in the trust store (export its public key: openssl pkey -in KEY -pubout)", where)
		default:
			return fmt.Errorf("%s: unsupported block type (want PUBLIC KEY or CERTIFICATE)", where)
		}
	}
	begins := bytes.Count(data, []byte("-----BEGIN"))
	switch {
	case begins == 0:
		return errors.New("no PEM block (want PUBLIC KEY or CERTIFICATE blocks)")
	case begins != len(items):
		return fmt.Errorf("%d BEGIN lines but %d well-formed PEM blocks: a block is damaged or truncated", begins, len(items))
	}
	if t.keys == nil {
		t.keys = make(map[[32]byte]trustedKey)
	}
	if t.rootsRaw == nil {
		t.rootsRaw = make(map[string]string)
	}
	if t.roots == nil {
		t.roots = x509.NewCertPool()
		t.bySubject = make(map[string][]*x509.Certificate)
	}
	for _, it := range items {
		if it.cert == nil {
			if _, dup := t.keys[it.id]; !dup {
				t.keys[it.id] = it.key
			}
			continue
		}
		if _, dup := t.rootsRaw[string(it.cert.Raw)]; !dup {
			t.rootsRaw[string(it.cert.Raw)] = source
			t.roots.AddCert(it.cert)
			t.rootList = append(t.rootList, it.cert)
			t.bySubject[string(it.cert.RawSubject)] = append(t.bySubject[string(it.cert.RawSubject)], it.cert)
		}
	}
	return nil
}

// touches reports whether a trusted certificate is one of certs or issued
// one of them (its subject is the issuer name and its signature verifies):
// only then can a path from certs[0] to a trusted certificate exist. Cost:
// map look-ups, and one signature check per trusted certificate whose
// subject matches an issuer name of certs.
func (t *TrustStore) touches(certs []*x509.Certificate) bool {
	for _, c := range certs {
		if _, ok := t.rootsRaw[string(c.Raw)]; ok {
			return true
		}
		for _, a := range t.bySubject[string(c.RawIssuer)] {
			if c.CheckSignatureFrom(a) == nil {
				return true
			}
		}
	}
	return false
}

// Len is the number of distinct trusted keys and certificates.
func (t *TrustStore) Len() int {
	if t == nil {
		return 0
	}
	return len(t.keys) + len(t.rootsRaw)
}

// trustExts are the file name endings LoadTrustDir reads.
var trustExts = []string{".pem", ".pub", ".crt"}

// LoadTrustDir loads every *.pem, *.pub and *.crt file of dir (not of its
// subdirectories, which are skipped whatever their name), in name order,
// into a new TrustStore; symbolic links are followed. Each must be a file
// root would trust (filetrust.Check: owned by root or tandem's user, not
// writable by group or others, in a directory that is not either, and so
// every link on the way), a regular file of at most MaxTrustFileSize bytes,
// and hold at least one block (see Add); an error names the file. A directory without such files gives an empty store, which
// Verify refuses with ErrNoTrust. When dir cannot be read the error is the
// one from os.ReadDir, so os.IsNotExist works on it.
func LoadTrustDir(dir string) (*TrustStore, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	t := &TrustStore{}
	for _, e := range entries {
		name := e.Name()
		ok := false
		for _, ext := range trustExts {
			ok = ok || strings.HasSuffix(name, ext)
		}
		if !ok {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := readTrustFile(path)
		if errors.Is(err, errIsDir) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("trust file %s: %w", path, err)
		}
		if err := t.add(data, path); err != nil {
			return nil, fmt.Errorf("trust file %s: %w", path, err)
		}
	}
	return t, nil
}

var errIsDir = errors.New("is a directory")

// readTrustFile reads a regular file of at most MaxTrustFileSize bytes that
// root would trust (filetrust.Check).
func readTrustFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, errIsDir
	}
	if _, err := filetrust.Check(path); err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Size() > MaxTrustFileSize {
		return nil, fmt.Errorf("%d bytes (limit %d)", fi.Size(), MaxTrustFileSize)
	}
	data, err := bounded.ReadFile(path, MaxTrustFileSize)
	if bounded.IsTooLarge(err) {
		return nil, fmt.Errorf("more than %d bytes", MaxTrustFileSize)
	}
	return data, err
}
