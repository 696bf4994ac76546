package signature

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
)

// TestLoadTrustNamed checks that a named keys directory must exist, while
// LoadTrust reads a missing one as empty.
func TestLoadTrustNamed(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "keys")
	if _, err := LoadTrust(missing, nil); err != nil {
		t.Fatalf("LoadTrust: %v", err)
	}
	if _, err := LoadTrustNamed(missing, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadTrustNamed of a missing directory: %v", err)
	}
	if _, err := LoadTrustNamed(t.TempDir(), nil); err != nil {
		t.Errorf("an empty directory: %v", err)
	}
}
