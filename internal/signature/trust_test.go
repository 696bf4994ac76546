package signature

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tandem-ota/tandem/internal/filetrust"
)

func TestParseTrust(t *testing.T) {
	ed, p256 := newEd25519(t), newECDSA(t, elliptic.P256())
	p := newPKI(t, newEd25519(t), newEd25519(t), newEd25519(t))
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, ecPub, root := pubPEM(t, ed.Public()), pubPEM(t, p256.Public()), certPEM(p.root)
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	for _, c := range []struct {
		name string
		in   []byte
		len  int    // when err is ""
		err  string // substring
	}{
		{name: "one key", in: edPub, len: 1},
		{name: "keys and a certificate with comments", in: join([]byte("# release key 2026\n"), edPub, []byte("# old key\n"), ecPub, root, []byte("\n# end\n")), len: 3},
		{name: "duplicates count once", in: join(edPub, edPub, root, root), len: 2},
		{name: "empty", in: nil, err: "no PEM block"},
		{name: "only text", in: []byte("hello\n"), err: "no PEM block"},
		{name: "private key", in: pkcs8PEM(t, ed), err: "private key does not belong"},
		{name: "RSA public key", in: pubPEM(t, rsaKey.Public()), err: "RSA"},
		{name: "P-384 public key", in: pubPEM(t, newECDSA(t, elliptic.P384()).Public()), err: "P-384"},
		{name: "unknown block", in: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{1}}), err: "unsupported block type"},
		{name: "damaged second block", in: join(edPub, []byte(strings.Replace(string(ecPub), "M", "!", 1))), err: "damaged or truncated"},
		{name: "truncated", in: join(edPub, root[:len(root)-20]), err: "damaged or truncated"},
		{name: "garbage certificate", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x00}}), err: "PEM block 1 (CERTIFICATE)"},
		{name: "garbage key", in: join(edPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{0x30, 0x00}})), err: "PEM block 2 (PUBLIC KEY)"},
		{name: "headers", in: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"A": "b"}, Bytes: []byte{1}}), err: "headers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts, err := ParseTrust(c.in)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("ParseTrust error = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ts.Len() != c.len {
				t.Fatalf("Len = %d, want %d", ts.Len(), c.len)
			}
		})
	}

	t.Run("failed Add adds nothing", func(t *testing.T) {
		ts := trustOf(t, edPub)
		if err := ts.Add(join(ecPub, []byte("-----BEGIN PUBLIC KEY-----\nAAAA"))); err == nil {
			t.Fatal("Add accepted a truncated block")
		}
		if ts.Len() != 1 {
			t.Fatalf("Len = %d", ts.Len())
		}
		s := mustSign(t, p256, nil, hashA)
		if _, err := Verify([]Signature{s}, ts, hashA, atClock); err == nil {
			t.Fatal("key of a failed Add is trusted")
		}
	})
}

func writeFiles(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadTrustDir(t *testing.T) {
	ed, p256, other := newEd25519(t), newECDSA(t, elliptic.P256()), newEd25519(t)
	p := newPKI(t, newEd25519(t), newEd25519(t), newEd25519(t))

	t.Run("loads pem, pub and crt", func(t *testing.T) {
		dir := writeFiles(t, map[string][]byte{
			"a-release.pub": pubPEM(t, ed.Public()),
			"b-release.pem": pubPEM(t, ed.Public()), // duplicate: a-release.pub wins, being first
			"c-backup.pem":  pubPEM(t, p256.Public()),
			"d-ca.crt":      certPEM(p.root),
			"README":        []byte("not a key"),
			"e.key":         pkcs8PEM(t, ed),
			"f.pem.bak":     pubPEM(t, other.Public()),
		})
		if err := os.Mkdir(filepath.Join(dir, "sub.pem"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "sub.pem", "x.pem"), pubPEM(t, other.Public()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(dir, "c-backup.pem"), filepath.Join(dir, "g-link.pub")); err != nil {
			t.Fatal(err)
		}
		ts, err := LoadTrustDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if ts.Len() != 3 {
			t.Fatalf("Len = %d, want 3", ts.Len())
		}
		got, err := Verify([]Signature{mustSign(t, ed, nil, hashA)}, ts, hashA, atClock)
		if err != nil {
			t.Fatal(err)
		}
		if got.Source != filepath.Join(dir, "a-release.pub") {
			t.Errorf("Source = %q", got.Source)
		}
		got, err = Verify([]Signature{mustSign(t, p.leafKey, p.chain(), hashA)}, ts, hashA, atClock)
		if err != nil {
			t.Fatal(err)
		}
		if got.Source != filepath.Join(dir, "d-ca.crt") || !strings.Contains(got.String(), "d-ca.crt") {
			t.Errorf("Source = %q (%s)", got.Source, got)
		}
		if _, err := Verify([]Signature{mustSign(t, other, nil, hashA)}, ts, hashA, atClock); err == nil {
			t.Error("a key from an ignored file is trusted")
		}
	})
	t.Run("error names the first bad file", func(t *testing.T) {
		dir := writeFiles(t, map[string][]byte{
			"a.pem": pubPEM(t, ed.Public()),
			"b.crt": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n"),
			"c.pub": pkcs8PEM(t, ed),
		})
		_, err := LoadTrustDir(dir)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "b.crt")) || strings.Contains(err.Error(), "c.pub") {
			t.Fatalf("LoadTrustDir error = %v", err)
		}
	})
	t.Run("size limit", func(t *testing.T) {
		big := append([]byte(strings.Repeat("#\n", MaxTrustFileSize/2)), pubPEM(t, ed.Public())...)
		dir := writeFiles(t, map[string][]byte{"big.pem": big})
		if _, err := LoadTrustDir(dir); err == nil || !strings.Contains(err.Error(), "big.pem") || !strings.Contains(err.Error(), "limit") {
			t.Fatalf("LoadTrustDir error = %v", err)
		}
		ok := append([]byte(strings.Repeat("#\n", (MaxTrustFileSize-len(pubPEM(t, ed.Public())))/2)), pubPEM(t, ed.Public())...)
		dir = writeFiles(t, map[string][]byte{"ok.pem": ok})
		if _, err := LoadTrustDir(dir); err != nil {
			t.Fatalf("file of %d bytes: %v", len(ok), err)
		}
	})
	t.Run("fifo", func(t *testing.T) {
		dir := t.TempDir()
		if err := syscall.Mkfifo(filepath.Join(dir, "k.pem"), 0o644); err != nil {
			t.Skip(err)
		}
		if _, err := LoadTrustDir(dir); err == nil || !strings.Contains(err.Error(), "k.pem") || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("LoadTrustDir error = %v", err)
		}
	})
	t.Run("dangling symlink", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "k.pem")); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadTrustDir(dir); err == nil || !strings.Contains(err.Error(), "k.pem") {
			t.Fatalf("LoadTrustDir error = %v", err)
		}
	})
	t.Run("empty directory fails closed", func(t *testing.T) {
		dir := writeFiles(t, map[string][]byte{"notes.txt": []byte("x")})
		ts, err := LoadTrustDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Verify([]Signature{mustSign(t, ed, nil, hashA)}, ts, hashA, atClock); err != ErrNoTrust {
			t.Fatalf("Verify error = %v, want ErrNoTrust", err)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		ts, err := LoadTrustDir(filepath.Join(t.TempDir(), "nope"))
		if ts != nil || !os.IsNotExist(err) {
			t.Fatalf("LoadTrustDir = %v, %v; want nil and a not-exist error", ts, err)
		}
	})
}

// TestTrustFilesRootWouldNotTrust: issue 11, hardening 9. Each of these
// trust files was loaded before, so any local user who could write it
// could make the device accept their bundles.
func TestTrustFilesRootWouldNotTrust(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	key := pubPEM(t, newEd25519(t).Public())
	for _, c := range []struct {
		name string
		make func(t *testing.T, dir string) string // returns the file AddFiles gets
		want string
	}{
		{"world-writable key", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "k.pem")
			must(t, os.WriteFile(p, key, 0o644), os.Chmod(p, 0o666))
			return p
		}, "k.pem is writable by its group or others"},
		{"key owned by nobody", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "k.pem")
			must(t, os.WriteFile(p, key, 0o644), os.Chown(p, 65534, 65534))
			return p
		}, "owned by uid 65534"},
		{"symlink to a world-writable key", func(t *testing.T, dir string) string {
			other := filepath.Join(t.TempDir(), "real.pem")
			must(t, os.WriteFile(other, key, 0o644), os.Chmod(other, 0o646))
			p := filepath.Join(dir, "k.pem")
			must(t, os.Symlink(other, p))
			return p
		}, "real.pem is writable"},
		{"world-writable keys directory", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "k.pem")
			must(t, os.WriteFile(p, key, 0o644), os.Chmod(dir, 0o777))
			return p
		}, "directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := c.make(t, dir)
			_, err := LoadTrustDir(dir)
			if !errors.Is(err, filetrust.ErrUntrusted) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "trust file "+p) {
				t.Fatalf("LoadTrustDir = %v, want a refusal of %s saying %q", err, p, c.want)
			}
			err = (&TrustStore{}).AddFiles([]string{p})
			if !errors.Is(err, filetrust.ErrUntrusted) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("AddFiles = %v, want a refusal saying %q", err, c.want)
			}
		})
	}
}

func must(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
