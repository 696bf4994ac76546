package bundle

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/signature"
)

func trustIn(t *testing.T, key ed25519.PrivateKey) *signature.TrustStore {
	t.Helper()
	ts := &signature.TrustStore{}
	if err := ts.Add(pemPublic(t, key.Public())); err != nil {
		t.Fatal(err)
	}
	return ts
}

// writeTestFile writes a signed two-payload bundle file.
func writeTestFile(t *testing.T, dir string) (string, Hash, map[string][]byte) {
	t.Helper()
	data := map[string][]byte{"system": testData(200<<10, 1), "boot": testData(30<<10, 2)}
	var specs []PayloadSpec
	for _, n := range []string{"system", "boot"} {
		specs = append(specs, PayloadSpec{Name: n, Kind: KindSlot, Target: n, Chunker: ChunkerBuzhash, ChunkSize: 4096,
			Source: bytes.NewReader(data[n])})
	}
	name := filepath.Join(dir, "v2.tandem")
	hash, err := WriteFile(name, Header{Compatible: "test-device", Version: "2.0.0", Created: 1700000000}, specs, Options{Sign: sign})
	if err != nil {
		t.Fatal(err)
	}
	return name, hash, data
}

func onlyEntries(t *testing.T, dir string, want ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%s holds %v, want %v (no temporary file left)", dir, got, want)
	}
}

func TestWriteFileVerifyFile(t *testing.T) {
	dir := t.TempDir()
	name, hash, _ := writeTestFile(t, dir)
	onlyEntries(t, dir, "v2.tandem")
	var who signature.Signer
	h, got, err := VerifyFile(name, TrustVerifier(trustIn(t, testKey), time.Now(), &who))
	if err != nil || got != hash || h.Version != "2.0.0" || who.KeyID == "" {
		t.Fatalf("VerifyFile: %v, hash %s (want %s), signer %+v", err, got, hash, who)
	}
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32))
	if _, _, err := VerifyFile(name, TrustVerifier(trustIn(t, other), time.Now(), nil)); !errors.Is(err, signature.ErrUntrusted) {
		t.Fatalf("VerifyFile under another key: %v, want ErrUntrusted", err)
	}

	// A flipped byte in the last chunk is found by the full read.
	b, _ := os.ReadFile(name)
	b[len(b)-1] ^= 1
	bad := filepath.Join(dir, "bad.tandem")
	os.WriteFile(bad, b, 0o644)
	if _, _, err := VerifyFile(bad, acceptAny); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("VerifyFile of a corrupt bundle: %v, want an error naming the file", err)
	}
	// And ExtractFile of that payload leaves no output file.
	if err := ExtractFile(bad, "boot", filepath.Join(dir, "boot.out"), acceptAny); err == nil {
		t.Fatal("extracted a corrupt payload")
	}
	onlyEntries(t, dir, "bad.tandem", "v2.tandem")
}

// A failing payload source leaves neither the bundle nor a temporary file.
func TestWriteFileFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	src := io.MultiReader(bytes.NewReader(testData(10<<10, 3)), errReader{})
	_, err := WriteFile(filepath.Join(dir, "out.tandem"), Header{Compatible: "x", Version: "1.0.0"},
		[]PayloadSpec{{Name: "system", Kind: KindSlot, Target: "system", Source: src}}, Options{})
	if err == nil {
		t.Fatal("WriteFile succeeded with a failing source")
	}
	onlyEntries(t, dir)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestAddSignaturesKeepsTheHash(t *testing.T) {
	dir := t.TempDir()
	name, hash, data := writeTestFile(t, dir)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	got, err := AddSignatures(name, func(h Hash) ([]signature.Signature, error) {
		s, err := signature.Sign(other, nil, h)
		return []signature.Signature{s}, err
	})
	if err != nil || got != hash {
		t.Fatalf("AddSignatures: %v, hash %s, want %s", err, got, hash)
	}
	for _, k := range []ed25519.PrivateKey{testKey, other} {
		if _, got, err := VerifyFile(name, TrustVerifier(trustIn(t, k), time.Now(), nil)); err != nil || got != hash {
			t.Fatalf("VerifyFile after AddSignatures: %v", err)
		}
	}
	if _, err := AddSignatures(name, func(Hash) ([]signature.Signature, error) { return nil, errors.New("no") }); err == nil {
		t.Fatal("AddSignatures ignored the error of more")
	}
	out := filepath.Join(dir, "system.img")
	if err := ExtractFile(name, "system", out, TrustVerifier(trustIn(t, other), time.Now(), nil)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, data["system"]) {
		t.Fatal("the extracted payload differs")
	}
	if err := ExtractFile(name, "nope", out, acceptAny); err == nil || !strings.Contains(err.Error(), `no payload "nope"`) {
		t.Fatalf("ExtractFile of a missing payload: %v", err)
	}
	onlyEntries(t, dir, "system.img", "v2.tandem")
}

func TestInspect(t *testing.T) {
	name, hash, data := writeTestFile(t, t.TempDir())
	info, err := Inspect(name, true)
	if err != nil {
		t.Fatal(err)
	}
	if info.Hash != hash.String() || len(info.Signers) != 1 || info.Signers[0].Algorithm != "ed25519" || len(info.Payloads) != 2 {
		t.Fatalf("Inspect: %+v", info)
	}
	for _, p := range info.Payloads {
		var off uint64
		for _, c := range p.Chunks {
			if c.Offset != off {
				t.Fatalf("payload %s: chunk offset %d, want %d", p.Name, c.Offset, off)
			}
			off += uint64(c.Size)
		}
		if off != uint64(len(data[p.Name])) || p.Size != off {
			t.Fatalf("payload %s: chunks cover %d bytes, size %d, want %d", p.Name, off, p.Size, len(data[p.Name]))
		}
	}
	if info, err := Inspect(name, false); err != nil || info.Payloads[0].Chunks != nil {
		t.Fatalf("Inspect without chunks: %v, %+v", err, info)
	}
}

// A payload digest that does not match the content (a writer bug: the
// header is signed, so nobody else can make one) is no risk to an install,
// which reads only chunks that match the signed table and so does not
// recompute the digest; VerifyFile, the build-host check, recomputes it and
// reports it.
func TestPayloadDigestCheckedByVerifyFile(t *testing.T) {
	data := testData(120_000, 9)
	good, _ := makeBundle(t, LevelDefault, true, testPayload{"system", KindSlot, data})
	b := withHeader(t, good, func(h *Header) { h.Payloads[0].Digest[0] ^= 1 })

	got, _, err := readAllAs(b, TrustVerifier(trustIn(t, testKey), time.Now(), nil), false)
	if err != nil || !bytes.Equal(got["system"], data) {
		t.Fatalf("install read: %v (%d bytes), want the signed content", err, len(got["system"]))
	}
	name := filepath.Join(t.TempDir(), "b.tandem")
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyFile(name, TrustVerifier(trustIn(t, testKey), time.Now(), nil)); !errors.Is(err, ErrDigest) ||
		!strings.Contains(err.Error(), "as a whole") {
		t.Fatalf("VerifyFile: %v, want the payload digest mismatch", err)
	}
	good2 := filepath.Join(t.TempDir(), "good.tandem")
	os.WriteFile(good2, good, 0o644)
	if _, _, err := VerifyFile(good2, TrustVerifier(trustIn(t, testKey), time.Now(), nil)); err != nil {
		t.Fatalf("VerifyFile of the unchanged bundle: %v", err)
	}
}
