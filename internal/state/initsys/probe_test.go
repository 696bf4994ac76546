package initsys

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestProbeUUID reads the UUID and size of file systems made by their own
// mkfs, and compares the UUID with blkid's (the peer; tandem init does not
// need it).
func TestProbeUUID(t *testing.T) {
	if _, err := exec.LookPath("blkid"); err != nil {
		t.Skip("blkid (util-linux) is the reference here")
	}
	dir := t.TempDir()
	for _, c := range []struct {
		fstype string
		size   int64
		mkfs   []string
	}{
		{"ext4", 16 << 20, []string{"mkfs.ext4", "-q", "-F", "-L", "e"}},
		{"vfat", 16 << 20, []string{"mkfs.vfat", "-n", "V"}},
		{"vfat", 40 << 20, []string{"mkfs.vfat", "-F", "32"}},
		{"xfs", 320 << 20, []string{"mkfs.xfs", "-q", "-f"}},
		{"btrfs", 128 << 20, []string{"mkfs.btrfs", "-q", "-f"}},
	} {
		if _, err := exec.LookPath(c.mkfs[0]); err != nil {
			t.Logf("%s: not installed (scripts/install-deps.sh); not checked", c.mkfs[0])
			continue
		}
		img := filepath.Join(dir, c.fstype+".img")
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, c.size); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(c.mkfs[0], append(c.mkfs[1:], img)...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", c.mkfs[0], err, out)
		}
		out, err := exec.Command("blkid", "-p", "-o", "value", "-s", "UUID", img).Output()
		if err != nil {
			t.Fatalf("blkid %s: %v", img, err)
		}
		fi, blank, err := probeFS(img)
		if err != nil || blank || fi.Type != c.fstype || fi.UUID != strings.TrimSpace(string(out)) {
			t.Errorf("%s: got %+v %v, blkid says UUID %s", c.mkfs, fi, err, out)
		}
		if c.fstype != "vfat" && (fi.Size <= 0 || fi.Size > c.size || fi.Size < c.size*9/10) {
			t.Errorf("%s: size %d on a %d-byte device", c.fstype, fi.Size, c.size)
		}
	}
}
