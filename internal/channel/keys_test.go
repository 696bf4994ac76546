package channel

import (
	"path/filepath"
	"testing"

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
