package channel

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/testutil"
)

// TestVector checks the channel file in testdata against the spec: the
// ed25519 key from the seed SHA-256("tandem channel test vector") signs the
// document below, and ed25519 being deterministic, the file's bytes are
// fixed. Other implementations can check themselves against it
// (docs/integrations/channels.md). TANDEM_UPDATE_VECTORS=1 rewrites it.
func TestVector(t *testing.T) {
	seed := sha256.Sum256([]byte("tandem channel test vector"))
	key := ed25519.NewKeyFromSeed(seed[:])
	rollout := Percent(1250)
	c := &Channel{Format: Format, Channel: "stable", Compatible: "acme-gw", Sequence: 1795624000,
		Issued: time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC), Expires: time.Date(2026, 12, 25, 16, 0, 0, 0, time.UTC),
		Release: Release{Version: "2.0.0", Bundle: "v2.tandem",
			BundleHash: "7195df7a1de42d05e63b93df45bc898c6dc13bc3f8691a7e4cd16d28d6b3bc91", Rollout: &rollout,
			Select: &Selector{Labels: map[string]string{"ring": "beta"}}}}
	got, err := Sign(c, []Signer{{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join("testdata", "vector-stable.json")
	if os.Getenv("TANDEM_UPDATE_VECTORS") == "1" {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the channel file for the test vector changed:\n%s\nwant\n%s", got, want)
	}
	f, err := Parse(want)
	if err != nil {
		t.Fatal(err)
	}
	wantSigned := `{"format":1,"channel":"stable","compatible":"acme-gw","sequence":1795624000,"issued":"2026-11-25T16:00:00Z",` +
		`"expires":"2026-12-25T16:00:00Z","release":{"version":"2.0.0","bundle":"v2.tandem",` +
		`"bundleHash":"7195df7a1de42d05e63b93df45bc898c6dc13bc3f8691a7e4cd16d28d6b3bc91","rollout":12.5,"select":{"labels":{"ring":"beta"}}}}`
	if string(f.Signed) != wantSigned {
		t.Fatalf("signed bytes\n%s\nwant\n%s", f.Signed, wantSigned)
	}
	a, err := Accept(f, Policy{Trust: trustOf(t, key.Public()), Channel: "stable", Compatible: "acme-gw",
		Now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("digest %s, key id %s", a.Seen.Digest, a.Signer.KeyID)
}

// TestVectorOpenSSL verifies the test vector's signature with openssl over
// the message the spec defines, built here from its parts: the domain, then
// SHA-256 of the base64-decoded "signed" member.
func TestVectorOpenSSL(t *testing.T) {
	bin := testutil.NeedTool(t, "openssl")
	b, err := os.ReadFile(filepath.Join("testdata", "vector-stable.json"))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Signed     string
		Signatures []struct{ Sig string }
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	signed, err := base64.StdEncoding.DecodeString(env.Signed)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(signed)
	msg := append([]byte("tandem channel signature v1\x00"), digest[:]...)
	seed := sha256.Sum256([]byte("tandem channel test vector"))
	der, err := x509.MarshalPKIXPublicKey(ed25519.NewKeyFromSeed(seed[:]).Public())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"msg": msg, "sig": sig,
		"pub.pem": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg", "-sigfile", "sig")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl does not verify the vector's signature: %v\n%s", err, out)
	}
	// And refuses it over a bundle-domain message of the same digest.
	if err := os.WriteFile(filepath.Join(dir, "msg"), append([]byte("tandem bundle signature v1\x00"), digest[:]...), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(bin, "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg", "-sigfile", "sig")
	cmd.Dir = dir
	if err := cmd.Run(); err == nil {
		t.Fatalf("openssl verified the channel signature as a bundle-domain message")
	}
}
