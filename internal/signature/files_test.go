package signature

import (
	"bytes"
	"crypto/elliptic"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// GenerateKeyFiles writes a usable pair with the right modes and never
// overwrites a key; LoadSigningKeys, SignAll and PublicKeyPEM agree with it.
func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "release")
	if err := GenerateKeyFiles(name); err != nil {
		t.Fatal(err)
	}
	for ext, want := range map[string]os.FileMode{".key": 0o600, ".pub": 0o644} {
		fi, err := os.Stat(name + ext)
		if err != nil || fi.Mode().Perm()&want != fi.Mode().Perm() {
			t.Fatalf("%s: %v, mode %v; want at most %v", ext, err, fi.Mode(), want)
		}
	}
	priv, _ := os.ReadFile(name + ".key")
	if err := GenerateKeyFiles(name); err == nil {
		t.Fatal("GenerateKeyFiles overwrote an existing key")
	}
	if again, _ := os.ReadFile(name + ".key"); !bytes.Equal(again, priv) {
		t.Fatal("the private key changed")
	}

	keys, err := LoadSigningKeys([]string{name + ".key"})
	if err != nil || len(keys) != 1 || keys[0].Chain != nil {
		t.Fatalf("LoadSigningKeys: %v, %+v", err, keys)
	}
	sigs, err := SignAll(keys, hashA)
	if err != nil || len(sigs) != 1 {
		t.Fatalf("SignAll: %v", err)
	}
	pub, err := PublicKeyPEM(keys[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	if file, _ := os.ReadFile(name + ".pub"); !bytes.Equal(pub, file) {
		t.Fatalf("PublicKeyPEM = %q, the .pub file holds %q", pub, file)
	}
	ts := &TrustStore{}
	if err := ts.AddFiles([]string{name + ".pub"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(sigs, ts, hashA, atClock); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := ts.AddFiles([]string{name + ".key"}); err == nil || !strings.Contains(err.Error(), name+".key") {
		t.Fatalf("AddFiles of a private key: %v, want an error naming the file", err)
	}
}

// PATH:CHAIN loads the chain, leaf first; a chain file with a key in it or
// without certificates is refused.
func TestLoadSigningKeysWithChain(t *testing.T) {
	dir := t.TempDir()
	leafKey := newECDSA(t, elliptic.P256())
	p := newPKI(t, newEd25519(t), newEd25519(t), leafKey)
	keyPEM := pkcs8PEM(t, leafKey)
	write := func(name string, parts ...[]byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, bytes.Join(parts, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	key := write("leaf.key", keyPEM)
	chain := write("chain.pem", certPEM(p.leaf), certPEM(p.inter))
	keys, err := LoadSigningKeys([]string{key + ":" + chain})
	if err != nil || len(keys) != 1 || len(keys[0].Chain) != 2 || !bytes.Equal(keys[0].Chain[0], p.leaf.Raw) {
		t.Fatalf("LoadSigningKeys: %v, %+v", err, keys)
	}
	for name, data := range map[string][]byte{"empty.pem": nil, "mixed.pem": append(certPEM(p.leaf), keyPEM...)} {
		if _, err := ReadCertChain(write(name, data)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("ReadCertChain(%s): %v, want an error naming the file", name, err)
		}
	}
	if _, err := LoadSigningKeys([]string{filepath.Join(dir, "missing.key")}); err == nil {
		t.Error("a missing key file loaded")
	}
}
