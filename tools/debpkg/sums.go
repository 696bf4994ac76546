package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"github.com/tandem-ota/tandem/internal/signature"
)

// SumsFile and SigFile are the names of the checksum list and of its
// signature in a release directory.
const (
	SumsFile = "SHA256SUMS"
	SigFile  = "SHA256SUMS.sig"
)

// maxSums bounds the checksum list Sign reads.
const maxSums = 1 << 20

// sumsLine is one line of sha256sum's output for a plain file name; Sign
// signs nothing else. Such a text never starts like tandem's bundle or
// channel signing messages ("tandem bundle signature v1\0", "tandem channel
// signature v1\0"), so a signature over it is never valid as one of those.
var sumsLine = regexp.MustCompile(`^[0-9a-f]{64}  [A-Za-z0-9][A-Za-z0-9._+~-]*$`)

// WriteSums writes dir/SHA256SUMS, in the format of sha256sum (so that
// `sha256sum -c SHA256SUMS` checks it), over every regular file in dir but
// the list and its signature, sorted by name.
func WriteSums(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && e.Name() != SumsFile && e.Name() != SigFile {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("%s: no release files to list", dir)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, n := range names {
		if !sumsLine.MatchString(fmt.Sprintf("%064x  %s", 0, n)) {
			return fmt.Errorf("%s: file name %q is not allowed in %s (letters, digits, . _ + ~ -)", dir, n, SumsFile)
		}
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		fmt.Fprintf(&b, "%x  %s\n", h.Sum(nil), n)
	}
	os.Remove(filepath.Join(dir, SigFile)) // a signature over an older list
	return os.WriteFile(filepath.Join(dir, SumsFile), b.Bytes(), 0o644)
}

// Sign signs dir/SHA256SUMS with a tandem signing key (`tandem key
// generate`: ed25519 or ECDSA P-256, PEM) into dir/SHA256SUMS.sig, in the
// form openssl checks: ed25519 over the file's bytes (openssl pkeyutl
// -verify -rawin), ECDSA over its SHA-256 as DER (openssl dgst -sha256
// -verify). It returns the key id (SHA-256 of the public key's PKIX DER,
// as tandem names keys).
func Sign(dir, keyFile string) (keyID string, err error) {
	pemKey, err := os.ReadFile(keyFile)
	if err != nil {
		return "", fmt.Errorf("signing key: %w", err)
	}
	key, err := signature.ParsePrivateKey(pemKey)
	if err != nil {
		return "", fmt.Errorf("signing key %s: %w", keyFile, err)
	}
	sums, err := readSums(filepath.Join(dir, SumsFile))
	if err != nil {
		return "", err
	}
	var sig []byte
	switch key.(type) {
	case ed25519.PrivateKey:
		sig, err = key.Sign(nil, sums, crypto.Hash(0))
	case *ecdsa.PrivateKey:
		d := sha256.Sum256(sums)
		sig, err = key.Sign(rand.Reader, d[:], crypto.SHA256)
	default:
		err = fmt.Errorf("unsupported key type %T", key)
	}
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", SumsFile, err)
	}
	if err := VerifySums(dir, key.Public(), sig); err != nil {
		return "", fmt.Errorf("the new signature does not verify: %w", err)
	}
	id, err := signature.KeyIDOf(key.Public())
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", id), os.WriteFile(filepath.Join(dir, SigFile), sig, 0o644)
}

// VerifySums checks sig over dir/SHA256SUMS with pub, as Sign made it.
func VerifySums(dir string, pub crypto.PublicKey, sig []byte) error {
	sums, err := readSums(filepath.Join(dir, SumsFile))
	if err != nil {
		return err
	}
	ok := false
	switch k := pub.(type) {
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, sums, sig)
	case *ecdsa.PublicKey:
		d := sha256.Sum256(sums)
		ok = ecdsa.VerifyASN1(k, d[:], sig)
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	if !ok {
		return fmt.Errorf("%s: bad signature", SumsFile)
	}
	return nil
}

// readSums reads a checksum list and refuses anything that is not one.
func readSums(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSums+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSums {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxSums)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, fmt.Errorf("%s: empty or not ending in a newline", name)
	}
	for i, l := range bytes.Split(b[:len(b)-1], []byte("\n")) {
		if !sumsLine.Match(l) {
			return nil, fmt.Errorf("%s:%d: not a sha256sum line", name, i+1)
		}
	}
	return b, nil
}
