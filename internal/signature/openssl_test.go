package signature

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/testutil"
)

// openssl runs openssl in dir and returns its standard output.
func openssl(t *testing.T, bin, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOpenSSLKeys: keys written by the real openssl parse, have the key id
// of `openssl pkey -pubout -outform DER | sha256sum`, sign bundles that
// verify under their openssl-exported public key, and openssl's own
// signatures over Message verify here.
func TestOpenSSLKeys(t *testing.T) {
	bin := testutil.NeedTool(t, "openssl")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "msg"), Message(hashA), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		gen  [][]string // commands that write key.pem
		alg  Algorithm
		sign []string // openssl command signing msg into sig
	}{
		{"ed25519", [][]string{{"genpkey", "-algorithm", "ed25519", "-out", "key.pem"}}, Ed25519,
			[]string{"pkeyutl", "-sign", "-inkey", "key.pem", "-rawin", "-in", "msg", "-out", "sig"}},
		{"P-256 PKCS#8", [][]string{{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "key.pem"}}, ECDSAP256SHA256,
			[]string{"dgst", "-sha256", "-sign", "key.pem", "-out", "sig", "msg"}},
		{"P-256 SEC1", [][]string{{"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "key.pem"}}, ECDSAP256SHA256,
			[]string{"dgst", "-sha256", "-sign", "key.pem", "-out", "sig", "msg"}},
		{"P-256 SEC1 converted by openssl ec", [][]string{
			{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "pk8.pem"},
			{"ec", "-in", "pk8.pem", "-out", "key.pem"}}, ECDSAP256SHA256,
			[]string{"dgst", "-sha256", "-sign", "key.pem", "-out", "sig", "msg"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, g := range c.gen {
				openssl(t, bin, dir, g...)
			}
			keyPEM := readFile(t, filepath.Join(dir, "key.pem"))
			if strings.Contains(c.name, "SEC1") && !bytes.HasPrefix(keyPEM, []byte("-----BEGIN EC PRIVATE KEY-----")) {
				t.Fatalf("openssl wrote %q, not SEC1", bytes.SplitN(keyPEM, []byte("\n"), 2)[0])
			}
			key, err := ParsePrivateKey(keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			openssl(t, bin, dir, "pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem")
			pubPEM := readFile(t, filepath.Join(dir, "pub.pem"))
			pubDER := openssl(t, bin, dir, "pkey", "-in", "key.pem", "-pubout", "-outform", "DER")
			trust, err := ParseTrust(pubPEM)
			if err != nil {
				t.Fatal(err)
			}
			id, err := KeyIDOf(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			if want := sha256.Sum256(pubDER); id != want {
				t.Fatalf("key id %x, openssl's DER hashes to %x", id, want)
			}

			// Signed here.
			s := mustSign(t, key, nil, hashA)
			if s.Algorithm != c.alg {
				t.Fatalf("algorithm %v", s.Algorithm)
			}
			got, err := Verify([]Signature{s}, trust, hashA, atClock)
			if err != nil {
				t.Fatal(err)
			}
			if got.KeyID != hex.EncodeToString(id[:]) {
				t.Fatalf("signer %+v", got)
			}
			if _, err := Verify([]Signature{s}, trust, hashB, atClock); err == nil {
				t.Fatal("signature verifies for another hash")
			}

			// Signed by openssl (which does not normalise ECDSA's s:
			// Detached does, and Verify takes the result).
			openssl(t, bin, dir, c.sign...)
			theirs := readFile(t, filepath.Join(dir, "sig"))
			attached, err := Detached(theirs, pubPEM, nil, hashA)
			if err != nil {
				t.Fatalf("Detached(openssl's signature): %v", err)
			}
			if attached.Algorithm != c.alg || attached.KeyID != id {
				t.Fatalf("Detached = %+v", attached)
			}
			if _, err := Verify([]Signature{attached}, trust, hashA, atClock); err != nil {
				t.Fatalf("openssl's signature: %v", err)
			}
			// And openssl verifies ours.
			if err := os.WriteFile(filepath.Join(dir, "sig"), s.Sig, 0o644); err != nil {
				t.Fatal(err)
			}
			if c.alg == Ed25519 {
				openssl(t, bin, dir, "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg", "-sigfile", "sig")
			} else {
				openssl(t, bin, dir, "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig", "msg")
			}
		})
	}
}

// TestOpenSSLRefusedKeys: what openssl writes for unsupported keys is
// refused with an error that says why.
func TestOpenSSLRefusedKeys(t *testing.T) {
	bin := testutil.NeedTool(t, "openssl")
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		gen  []string
		err  string
	}{
		{"RSA", []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "key.pem"}, "RSA"},
		{"P-384", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "key.pem"}, "P-384"},
		{"secp256k1", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1", "-out", "key.pem"}, "PKCS#8"},
		{"X25519", []string{"genpkey", "-algorithm", "X25519", "-out", "key.pem"}, "not supported"},
		{"encrypted", []string{"genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", "pass:secret", "-out", "key.pem"}, "encrypted"},
		{"SEC1 with EC PARAMETERS", []string{"ecparam", "-name", "prime256v1", "-genkey", "-out", "key.pem"}, "several PEM blocks"},
	} {
		t.Run(c.name, func(t *testing.T) {
			openssl(t, bin, dir, c.gen...)
			_, err := ParsePrivateKey(readFile(t, filepath.Join(dir, "key.pem")))
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("ParsePrivateKey error = %v, want one containing %q", err, c.err)
			}
		})
	}
	t.Run("public keys of refused types", func(t *testing.T) {
		openssl(t, bin, dir, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem")
		if _, err := ParseTrust(openssl(t, bin, dir, "pkey", "-in", "rsa.pem", "-pubout")); err == nil || !strings.Contains(err.Error(), "RSA") {
			t.Fatalf("ParseTrust error = %v", err)
		}
	})
}

// TestOpenSSLCertificates: a CA and leaf made by openssl work as trust
// anchor and signing chain, with the real clock (zero TimePolicy).
func TestOpenSSLCertificates(t *testing.T) {
	bin := testutil.NeedTool(t, "openssl")
	dir := t.TempDir()
	ext := "[leaf]\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = codeSigning\nbasicConstraints = CA:FALSE\n"
	if err := os.WriteFile(filepath.Join(dir, "ext.cnf"), []byte(ext), 0o644); err != nil {
		t.Fatal(err)
	}
	openssl(t, bin, dir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ca.pem")
	openssl(t, bin, dir, "req", "-x509", "-new", "-key", "ca.pem", "-subj", "/CN=OpenSSL Root", "-days", "30",
		"-config", "/dev/null", "-addext", "keyUsage=critical,keyCertSign", "-addext", "basicConstraints=critical,CA:TRUE", "-out", "ca.crt")
	openssl(t, bin, dir, "genpkey", "-algorithm", "ed25519", "-out", "leaf.pem")
	openssl(t, bin, dir, "req", "-new", "-key", "leaf.pem", "-subj", "/CN=OpenSSL Release", "-config", "/dev/null", "-out", "leaf.csr")
	openssl(t, bin, dir, "x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.pem", "-CAcreateserial",
		"-days", "10", "-extfile", "ext.cnf", "-extensions", "leaf", "-out", "leaf.crt")

	trust, err := ParseTrust(readFile(t, filepath.Join(dir, "ca.crt")))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(readFile(t, filepath.Join(dir, "leaf.crt")))
	key, err := ParsePrivateKey(readFile(t, filepath.Join(dir, "leaf.pem")))
	if err != nil {
		t.Fatal(err)
	}
	s := mustSign(t, key, [][]byte{block.Bytes}, hashA)
	got, err := Verify([]Signature{s}, trust, hashA, TimePolicy{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "OpenSSL Release" || !got.TimeChecked || got.TimeSource != TimeClock || len(got.Chain) != 2 {
		t.Fatalf("signer %+v", got)
	}
	// The same chain on a device booted in 1970 with the bundle's time.
	if _, err := Verify([]Signature{s}, trust, hashA, TimePolicy{Now: boot1970, Created: got.Chain[0].NotBefore}); err != nil {
		t.Fatal(err)
	}
	// The openssl CA key signing directly (it lacks digitalSignature) is refused.
	caKey, err := ParsePrivateKey(readFile(t, filepath.Join(dir, "ca.pem")))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := caKey.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("CA key is %T", caKey)
	}
	if _, ok := key.(ed25519.PrivateKey); !ok {
		t.Fatalf("leaf key is %T", key)
	}
	caBlock, _ := pem.Decode(readFile(t, filepath.Join(dir, "ca.crt")))
	if _, err := Sign(caKey, [][]byte{caBlock.Bytes}, hashA); err == nil || !strings.Contains(err.Error(), "digitalSignature") {
		t.Fatalf("Sign with the CA certificate: %v", err)
	}
}
