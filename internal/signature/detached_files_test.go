package signature

import (
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestReadDetached checks bundle attach's files: a signature and a public
// key become a checked Signature; a missing file fails before any hash is
// given, a signature over another hash fails the check.
func TestReadDetached(t *testing.T) {
	dir := t.TempDir()
	k := newEd25519(t)
	sigFile, pubFile := filepath.Join(dir, "sig"), filepath.Join(dir, "pub")
	if err := os.WriteFile(sigFile, ed25519.Sign(k, Message(hashA)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, pubPEM(t, k.Public()), 0o600); err != nil {
		t.Fatal(err)
	}
	detached, err := ReadDetached(sigFile, pubFile, "")
	if err != nil {
		t.Fatal(err)
	}
	if s, err := detached(hashA); err != nil || s.Algorithm != Ed25519 {
		t.Errorf("hash A: %+v, %v", s, err)
	}
	if _, err := detached(hashB); !errors.Is(err, ErrBadSignature) {
		t.Errorf("hash B: %v, want ErrBadSignature", err)
	}
	for _, files := range [][3]string{{sigFile + ".x", pubFile, ""}, {sigFile, pubFile + ".x", ""}, {sigFile, "", filepath.Join(dir, "chain")}} {
		if _, err := ReadDetached(files[0], files[1], files[2]); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%v: %v, want a missing file", files, err)
		}
	}
}
