package bounded

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(p, 5); err != nil || string(b) != "12345" {
		t.Fatalf("at the limit: %q, %v", b, err)
	}
	_, err := ReadFile(p, 4)
	if !IsTooLarge(err) || !strings.Contains(err.Error(), p) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing"), 4); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := ReadFile(dir, 4); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("a directory: %v", err)
	}
}
