package fleettest

import (
	"bytes"
	"crypto"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/patch"
	"github.com/tandem-ota/tandem/internal/signature"
	"github.com/tandem-ota/tandem/internal/sim"
)

// The fixtures below are shared by the adapters' own tests: a release key,
// an image, a signed bundle and a simulated device.

// NewKey generates a signing key, writes its public key to dir/name.pub and
// returns the key and that file.
func NewKey(t testing.TB, dir, name string) (crypto.Signer, string) {
	t.Helper()
	priv, pub, err := signature.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".pub")
	if err := os.WriteFile(p, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	key, err := signature.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return key, p
}

// Image returns n incompressible bytes, the same for the same seed.
func Image(n int, seed string) []byte {
	var s [32]byte
	copy(s[:], seed)
	img := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(img)
	return img
}

// SignedBundle builds a bundle with hdr (Compatible defaults to the
// simulator's "tandem-sim") and one slot payload, "system", holding image,
// signed by key. It returns the bundle and its hash.
func SignedBundle(t testing.TB, hdr bundle.Header, image []byte, key crypto.Signer) ([]byte, bundle.Hash) {
	t.Helper()
	if hdr.Compatible == "" {
		hdr.Compatible = "tandem-sim"
	}
	sign := func(h bundle.Hash) ([]signature.Signature, error) {
		s, err := signature.Sign(key, nil, h)
		return []signature.Signature{s}, err
	}
	var b bytes.Buffer
	h, err := bundle.Write(&b, hdr, []bundle.PayloadSpec{{Name: "system", Kind: bundle.KindSlot, Target: "system",
		Chunker: bundle.ChunkerBuzhash, Source: bytes.NewReader(image)}},
		bundle.Options{Level: bundle.LevelDefault, Workers: 2, TempDir: t.TempDir(), Sign: sign})
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), h
}

// NewDevice makes a simulated device at root with opts, boots it once and
// returns a function that opens it (fresh state every call).
func NewDevice(t testing.TB, root string, opts sim.Options) func() (*device.Device, error) {
	t.Helper()
	if err := sim.New(root, opts); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sim.Reboot(root, false); err != nil {
		t.Fatal(err)
	}
	return func() (*device.Device, error) { return device.Open(device.Options{Root: root}) }
}

// SetSource puts source at the start of slot system-a of the simulated
// device at root: the source of a patch (Patch) for a device whose active
// group a was not installed by tandem.
func SetSource(t testing.TB, root string, source []byte) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(root, "slots/system-a.img"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(source, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// Patch returns the patch from source (release fromVersion) to the bundle
// b, signed by key, and its file name (version-<fromVersion>.tpatch).
func Patch(t testing.TB, source, b []byte, key crypto.Signer, fromVersion string) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	bundleFile, img := filepath.Join(dir, "b.tandem"), filepath.Join(dir, "source.img")
	if err := os.WriteFile(bundleFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, source, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := patch.Create(patch.Options{Bundle: bundleFile, From: patch.From{Images: map[string]string{"system": img}, Version: fromVersion},
		Keys: []signature.SigningKey{{Key: key}}, SegmentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.ReadFile(res.Paths[0])
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(res.Paths[0]), p
}

// Changed returns a copy of img with a few bytes changed here and there:
// the source of a patch to img.
func Changed(img []byte) []byte {
	out := bytes.Clone(img)
	for i := 1000; i < len(out); i += 100 << 10 {
		out[i] ^= 0xff
	}
	return out
}
