package channel

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/signature"
)

// TestLoadSigners checks that each --key becomes a signer, and that a
// missing key file is an error.
func TestLoadSigners(t *testing.T) {
	name := filepath.Join(t.TempDir(), "release")
	if err := signature.GenerateKeyFiles(name); err != nil {
		t.Fatal(err)
	}
	ss, err := LoadSigners([]string{name + ".key", name + ".key"})
	if err != nil || len(ss) != 2 || ss[0].Key == nil || ss[0].Chain != nil {
		t.Fatalf("got %+v, %v", ss, err)
	}
	if _, err := LoadSigners([]string{name + ".missing"}); err == nil {
		t.Error("a missing key: no error")
	}
}

// TestVerifyFile checks channel verify's steps: load, check (the error
// names the file) and the pinned bundle.
func TestVerifyFile(t *testing.T) {
	dir := t.TempDir()
	key, trust := edKey(t)
	bundlePath, _ := writeBundle(t, dir, "v2.tandem", key)
	otherBundle, _ := writeBundle(t, dir, "v3.tandem", key)
	out := filepath.Join(dir, "stable.json")
	if _, err := Publish(Publication{Out: out, Channel: "stable", BundleFile: bundlePath, Sequence: 7, Validity: time.Hour,
		Signers: []Signer{{Key: key}}, Now: publishNow}); err != nil {
		t.Fatal(err)
	}
	o := CheckOptions{Trust: trust, Now: publishNow}
	f, acc, err := VerifyFile(out, o, bundlePath)
	if err != nil || f.Channel.Sequence != 7 || acc == nil {
		t.Fatalf("got %v, %v, %v", f, acc, err)
	}
	if _, _, err := VerifyFile(out, o, otherBundle); !errors.Is(err, signature.ErrUntrusted) {
		t.Errorf("another bundle: %v", err)
	}
	o.Channel = "beta"
	if _, _, err := VerifyFile(out, o, ""); !errors.Is(err, ErrWrongChannel) || !strings.HasPrefix(err.Error(), out+": ") {
		t.Errorf("another channel: %v", err)
	}
	if _, _, err := VerifyFile(filepath.Join(dir, "missing.json"), o, ""); err == nil {
		t.Error("a missing file: no error")
	}
}

// TestParseRollout checks --rollout: none, a share, and a bad one.
func TestParseRollout(t *testing.T) {
	if r, err := ParseRollout(""); r != nil || err != nil {
		t.Errorf("none: %v, %v", r, err)
	}
	if r, err := ParseRollout("12.5%"); r == nil || *r != 1250 || err != nil {
		t.Errorf("12.5%%: %v, %v", r, err)
	}
	if _, err := ParseRollout("101"); err == nil {
		t.Error("101: no error")
	}
}
