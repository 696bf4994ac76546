package initsys

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// probe recognises a file system and its label, calls only an all-zero
// (or all-0xff) start blank, and never calls a damaged one blank (issue 12:
// mkfs only ever runs on an empty partition).
func TestProbe(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ext4 := make([]byte, 8192)
	binary.LittleEndian.PutUint16(ext4[1080:], 0xef53)
	copy(ext4[1144:], "data")
	erased := make([]byte, 4096)
	for i := range erased {
		erased[i] = 0xff
	}
	damaged := make([]byte, 8192)
	damaged[5000] = 1
	for _, c := range []struct {
		name          string
		b             []byte
		fstype, label string
		blank         bool
	}{
		{"ext4", ext4, "ext4", "data", false},
		{"zero", make([]byte, 2<<20), "", "", true},
		{"erased", erased, "", "", true},
		{"damaged", damaged, "", "", false},
		{"xfs", append([]byte("XFSB"), make([]byte, 200)...), "xfs", "", false},
	} {
		fstype, label, blank, err := probe(write(c.name, c.b))
		if err != nil || fstype != c.fstype || label != c.label || blank != c.blank {
			t.Errorf("%s: got %q %q blank=%v %v", c.name, fstype, label, blank, err)
		}
	}
	if _, _, _, err := probe(write("empty", nil)); err == nil {
		t.Error("an empty device: want an error")
	}
}
