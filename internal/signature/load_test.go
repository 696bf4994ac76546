package signature

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// LoadTrust is the one assembly of a trust store (issue 11, "trust-store
// assembly is written three times"): a keys directory that may be absent,
// plus the operator's files; a bad file is named.
func TestLoadTrust(t *testing.T) {
	dir := t.TempDir()
	_, pub1, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	_, pub2, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keys, "release.pub"), pub1, 0o644); err != nil {
		t.Fatal(err)
	}
	extra := filepath.Join(dir, "extra.pub")
	if err := os.WriteFile(extra, pub2, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.pub")
	if err := os.WriteFile(bad, []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		dir   string
		files []string
		want  int
		err   string
	}{
		{name: "dir and file", dir: keys, files: []string{extra}, want: 2},
		{name: "no dir", files: []string{extra}, want: 1},
		{name: "missing dir", dir: filepath.Join(dir, "none"), files: []string{extra}, want: 1},
		{name: "nothing", want: 0},
		{name: "missing file", dir: keys, files: []string{filepath.Join(dir, "none.pub")}, err: "trust file " + filepath.Join(dir, "none.pub") + ": "},
		{name: "bad file", dir: keys, files: []string{bad}, err: "trust file " + bad + ": "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := LoadTrust(tc.dir, tc.files)
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error starting %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ts.Len(); got != tc.want {
				t.Fatalf("%d keys, want %d", got, tc.want)
			}
		})
	}
}
