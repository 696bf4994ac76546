package channel

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/patch"
	"github.com/tandem-ota/tandem/internal/signature"
)

// publishNow is a publishing clock past signature.DefaultFloor.
var publishNow = time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)

// writeBundle writes a small bundle signed by key into dir.
func writeBundle(t *testing.T, dir, name string, key ed25519.PrivateKey) (string, bundle.Hash) {
	t.Helper()
	path := filepath.Join(dir, name)
	sign := func(h bundle.Hash) ([]signature.Signature, error) {
		return signature.SignAll([]signature.SigningKey{{Key: key}}, h)
	}
	hash, err := bundle.WriteFile(path, bundle.Header{Compatible: "acme-gw", Version: "2.0.0", Created: publishNow.Unix()},
		[]bundle.PayloadSpec{{Name: "system", Kind: bundle.KindSlot, Target: "system",
			Source: bytes.NewReader(bytes.Repeat([]byte(name), 3000))}}, bundle.Options{Sign: sign})
	if err != nil {
		t.Fatal(err)
	}
	return path, hash
}

func readOut(t *testing.T, out string) string {
	t.Helper()
	b, err := os.ReadFile(out)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// Publish: the bundle's facts go into the file; the automatic sequence is
// the clock's seconds, or the existing file's + 1 when that is higher; an
// explicit sequence not above the existing one is a replay and nothing is
// written; an existing file of another channel is never overwritten.
func TestPublishSequence(t *testing.T) {
	dir := t.TempDir()
	key, trust := edKey(t)
	bundlePath, hash := writeBundle(t, dir, "v2.tandem", key)
	out := filepath.Join(dir, "stable.json")
	pub := Publication{Out: out, Channel: "stable", BundleFile: bundlePath, Validity: 24 * time.Hour,
		Signers: []Signer{{Key: key}}, Now: publishNow.Add(500 * time.Millisecond)}

	p, err := Publish(pub)
	if err != nil {
		t.Fatal(err)
	}
	c := p.File.Channel
	if c.Sequence != uint64(publishNow.Unix()) || c.Release.Bundle != "v2.tandem" || c.Release.BundleHash != hash.String() ||
		c.Release.Version != "2.0.0" || c.Compatible != "acme-gw" || !c.Issued.Equal(publishNow) || !c.Expires.Equal(publishNow.Add(24*time.Hour)) {
		t.Fatalf("published %+v", c)
	}
	if p.BundleSigner.KeyID == "" {
		t.Fatal("no bundle signer")
	}
	f, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Accept(f, Policy{Trust: trust, Channel: "stable", Compatible: "acme-gw", Now: publishNow}); err != nil {
		t.Fatalf("a device refuses the published file: %v", err)
	}

	// The same second again: the existing file's sequence + 1.
	pub.Release.Bundle = "../b/v2.tandem"
	if p, err := Publish(pub); err != nil || p.File.Channel.Sequence != c.Sequence+1 || p.File.Channel.Release.Bundle != "../b/v2.tandem" {
		t.Fatalf("second publish: %v, %+v", err, p)
	}
	before := readOut(t, out)
	pub.Sequence = c.Sequence + 1
	if _, err := Publish(pub); !errors.Is(err, ErrReplay) || !strings.Contains(err.Error(), "not above") {
		t.Fatalf("publish at the existing sequence: %v, want ErrReplay", err)
	}
	pub.Sequence, pub.Channel = 0, "beta"
	if _, err := Publish(pub); err == nil || !strings.Contains(err.Error(), `is channel "stable", not "beta"`) {
		t.Fatalf("publish over another channel's file: %v", err)
	}
	if readOut(t, out) != before {
		t.Fatal("a refused publish changed the file")
	}
	os.WriteFile(out, []byte("{}"), 0o644)
	if _, err := Publish(pub); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "existing") {
		t.Fatalf("publish over a malformed file: %v", err)
	}
}

// Without Trust the bundle must verify under the public keys of the raw
// signing keys (a key with a chain adds nothing); a bundle they did not sign
// is refused and nothing is written.
func TestPublishTrust(t *testing.T) {
	dir := t.TempDir()
	releaseKey, releaseTrust := edKey(t)
	otherKey, _ := edKey(t)
	bundlePath, _ := writeBundle(t, dir, "v2.tandem", releaseKey)
	out := filepath.Join(dir, "stable.json")
	pub := Publication{Out: out, Channel: "stable", BundleFile: bundlePath, Validity: time.Hour, Now: publishNow}
	for _, tc := range []struct {
		signers []Signer
		want    error
	}{
		{[]Signer{{Key: otherKey}}, signature.ErrUntrusted},
		{[]Signer{{Key: releaseKey, Chain: [][]byte{{1}}}}, signature.ErrNoTrust},
	} {
		pub.Signers = tc.signers
		if _, err := Publish(pub); !errors.Is(err, tc.want) {
			t.Errorf("signers %+v: %v, want %v", tc.signers, err, tc.want)
		}
		if readOut(t, out) != "" {
			t.Fatal("a refused publish wrote the file")
		}
	}
	// With explicit trust another key may sign the channel file.
	pub.Signers, pub.Trust = []Signer{{Key: otherKey}}, releaseTrust
	if _, err := Publish(pub); err != nil {
		t.Fatal(err)
	}
}

func TestNewSelector(t *testing.T) {
	if s, err := NewSelector(nil, nil); s != nil || err != nil {
		t.Fatalf("empty: %+v, %v", s, err)
	}
	s, err := NewSelector([]string{"dev1"}, []string{"ring=beta", "site=a=b"})
	if err != nil || len(s.Devices) != 1 || s.Labels["ring"] != "beta" || s.Labels["site"] != "a=b" {
		t.Fatalf("%+v, %v", s, err)
	}
	if _, err := NewSelector(nil, []string{"ring"}); err == nil || !strings.Contains(err.Error(), `"ring": want LABEL=VALUE`) {
		t.Fatalf("a label without a value: %v", err)
	}
}

func TestParseValidity(t *testing.T) {
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "12h": 12 * time.Hour, "1d": 24 * time.Hour,
		"0d": 0, "3651d": 0, "xd": 0, "-1h": 0, "0s": 0, "soon": 0} {
		got, err := ParseValidity(in)
		if (err != nil) != (want == 0) || got != want {
			t.Errorf("ParseValidity(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

// CheckFile: the file's own name and compatible by default, a minimum
// sequence (the file at exactly it passes), expiry unless allowed; and
// CheckBundle compares the pinned hash with a verified bundle.
func TestCheckFile(t *testing.T) {
	dir := t.TempDir()
	key, trust := edKey(t)
	bundlePath, _ := writeBundle(t, dir, "v2.tandem", key)
	otherBundle, _ := writeBundle(t, dir, "v3.tandem", key)
	out := filepath.Join(dir, "stable.json")
	if _, err := Publish(Publication{Out: out, Channel: "stable", BundleFile: bundlePath, Sequence: 7, Validity: time.Hour,
		Signers: []Signer{{Key: key}}, Now: publishNow}); err != nil {
		t.Fatal(err)
	}
	f, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	later := publishNow.Add(2 * time.Hour)
	for _, tc := range []struct {
		o    CheckOptions
		want error
	}{
		{CheckOptions{Now: publishNow}, nil},
		{CheckOptions{Now: publishNow, MinSequence: 7}, nil},
		{CheckOptions{Now: publishNow, MinSequence: 8}, ErrReplay},
		{CheckOptions{Now: publishNow, Channel: "beta"}, ErrWrongChannel},
		{CheckOptions{Now: publishNow, Compatible: "other"}, ErrWrongChannel},
		{CheckOptions{Now: later}, ErrExpired},
		{CheckOptions{Now: later, AllowExpired: true}, nil},
	} {
		tc.o.Trust = trust
		if _, err := CheckFile(f, tc.o); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%+v: %v, want %v", tc.o, err, tc.want)
		}
	}
	if err := f.CheckBundle(bundlePath, trust, publishNow); err != nil {
		t.Fatal(err)
	}
	if err := f.CheckBundle(otherBundle, trust, publishNow); !errors.Is(err, signature.ErrUntrusted) || !strings.Contains(err.Error(), "the channel pins") {
		t.Fatalf("CheckBundle of another bundle: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	key, _ := edKey(t)
	if err := os.WriteFile(filepath.Join(dir, "stable.json"), mustSign(t, sample(), key), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	for _, name := range []string{filepath.Join(dir, "stable.json"), srv.URL + "/stable.json"} {
		if f, err := Load(name); err != nil || f.Channel.Sequence != 7 || f.Info("").Signers[0].Algorithm != "ed25519" {
			t.Errorf("Load(%s): %v", name, err)
		}
	}
	if _, err := Load(srv.URL + "/missing.json"); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("Load of a missing URL: %v", err)
	}
}

// Publish lists the bundle's patches: verified, with the URL next to the
// bundle's and the source their name claims; a patch of another bundle, one
// named otherwise or signed by an untrusted key refuses the publish
// (nothing written); "-" lists none; no directory by default lists none.
func TestPublishPatches(t *testing.T) {
	dir := t.TempDir()
	key, _ := edKey(t)
	bundlePath, _ := writeBundle(t, dir, "v2.tandem", key)
	otherPath, _ := writeBundle(t, dir, "v3.tandem", key)
	src := filepath.Join(dir, "v1.img")
	if err := os.WriteFile(src, bytes.Repeat([]byte("v1.tandem"), 3000), 0o644); err != nil {
		t.Fatal(err)
	}
	mk := func(bundleFile, version, out string, k ed25519.PrivateKey) {
		t.Helper()
		trust := &signature.TrustStore{}
		pub, _ := signature.PublicKeyPEM(key)
		if err := trust.Add(pub); err != nil {
			t.Fatal(err)
		}
		if _, err := patch.Create(patch.Options{Bundle: bundleFile, From: patch.From{Images: map[string]string{"system": src}, Version: version},
			Keys: []signature.SigningKey{{Key: k}}, Trust: trust, OutDir: out, Now: publishNow}); err != nil {
			t.Fatal(err)
		}
	}
	mk(bundlePath, "1.0.0", "", key)
	out := filepath.Join(dir, "stable.json")
	pub := Publication{Out: out, Channel: "stable", BundleFile: bundlePath, Validity: 24 * time.Hour,
		Signers: []Signer{{Key: key}}, Now: publishNow, Release: Release{Bundle: "https://cdn.example/b/v2.tandem?sig=x"}}
	p, err := Publish(pub)
	if err != nil {
		t.Fatal(err)
	}
	ps := p.File.Channel.Release.Patches
	if len(ps) != 1 || ps[0].URL != "https://cdn.example/b/v2.tandem.patches/version-1.0.0.tpatch" || ps[0].FromVersion != "1.0.0" ||
		ps[0].FromBundle != "" || len(ps[0].Hash) != 64 {
		t.Fatalf("listed %+v", ps)
	}
	var text strings.Builder
	if err := p.File.WriteText(&text, ""); err != nil || !strings.Contains(text.String(), "patch:       from version 1.0.0: https://cdn.example/b/v2.tandem.patches/version-1.0.0.tpatch") {
		t.Errorf("inspect text:\n%s", text.String())
	}
	none := pub
	none.PatchDir, none.Out = "-", filepath.Join(dir, "none.json")
	if p, err := Publish(none); err != nil || len(p.File.Channel.Release.Patches) != 0 {
		t.Fatalf("--patches -: %+v, %v", p, err)
	}
	nodir := pub
	nodir.BundleFile, nodir.Out = otherPath, filepath.Join(dir, "nodir.json")
	if p, err := Publish(nodir); err != nil || len(p.File.Channel.Release.Patches) != 0 {
		t.Fatalf("no patch directory: %+v, %v", p, err)
	}
	for name, prepare := range map[string]func(d string){
		"another bundle": func(d string) { mk(otherPath, "1.0.0", d, key) },
		"untrusted key":  func(d string) { other, _ := edKey(t); mk(bundlePath, "1.0.0", d, other) },
		"another name": func(d string) {
			mk(bundlePath, "1.0.0", d, key)
			if err := os.Rename(filepath.Join(d, "version-1.0.0.tpatch"), filepath.Join(d, "from-v1.tpatch")); err != nil {
				t.Fatal(err)
			}
		},
		"missing directory": func(d string) { os.Remove(d) },
	} {
		t.Run(name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "patches")
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			prepare(d)
			bad := pub
			bad.PatchDir, bad.Out = d, filepath.Join(t.TempDir(), "bad.json")
			if _, err := Publish(bad); err == nil {
				t.Fatal("published")
			}
			if readOut(t, bad.Out) != "" {
				t.Fatal("a file was written")
			}
		})
	}
}
