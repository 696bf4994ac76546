package channel

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/signature"
)

// TestPublishFlagsCheck checks channel publish's options: the required
// ones, --url or --relative, and the parsed validity, rollout and selector.
func TestPublishFlagsCheck(t *testing.T) {
	ok := PublishFlags{Channel: "stable", Bundle: "v2.tandem", Out: "stable.json", Keys: []string{"k"}, Expires: "2d",
		Rollout: "10", Selects: []string{"ring=beta"}, Devices: []string{"d1"}, Relative: "b/v2.tandem", Sequence: 4}
	p, err := ok.Check()
	if err != nil {
		t.Fatal(err)
	}
	if p.Release.Bundle != "b/v2.tandem" || p.Validity != 48*time.Hour || p.Release.Rollout == nil || *p.Release.Rollout != 1000 ||
		p.Release.Select == nil || p.Release.Select.Labels["ring"] != "beta" || p.Sequence != 4 || p.Out != "stable.json" {
		t.Errorf("publication: %+v", p)
	}
	for _, tc := range []struct {
		edit func(*PublishFlags)
		want string
	}{
		{func(f *PublishFlags) { f.Keys = nil }, "required"},
		{func(f *PublishFlags) { f.URL = "https://cdn.example/v2.tandem" }, "exclude"},
		{func(f *PublishFlags) { f.Expires = "soon" }, "--expires"},
		{func(f *PublishFlags) { f.Rollout = "200" }, "rollout"},
		{func(f *PublishFlags) { f.Selects = []string{"ring"} }, "--select"},
	} {
		f := ok
		tc.edit(&f)
		if _, err := f.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", f, err, tc.want)
		}
	}
}

// TestPublicationLoad checks that Load reads the signers and, only when
// given, the trust files.
func TestPublicationLoad(t *testing.T) {
	name := filepath.Join(t.TempDir(), "release")
	if err := signature.GenerateKeyFiles(name); err != nil {
		t.Fatal(err)
	}
	var p Publication
	if err := p.Load([]string{name + ".key"}, nil); err != nil || len(p.Signers) != 1 || p.Trust != nil {
		t.Fatalf("without trust: %+v, %v", p, err)
	}
	if err := p.Load([]string{name + ".key"}, []string{name + ".pub"}); err != nil || p.Trust == nil {
		t.Fatalf("with trust: %+v, %v", p, err)
	}
	if err := p.Load([]string{name + ".key"}, []string{name + ".missing"}); err == nil {
		t.Error("a missing trust file: no error")
	}
}
