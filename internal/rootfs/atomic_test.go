package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func writeStream(fsys FS, name, data string) error {
	a, err := CreateAtomic(fsys, name, 0o644)
	if err != nil {
		return err
	}
	for _, part := range strings.SplitAfter(data, " ") {
		if _, err := a.Write([]byte(part)); err != nil {
			a.Abort()
			return err
		}
	}
	return a.Commit()
}

// What Commit reported is durable: the simulated disk loses everything not
// made durable when the power goes off right after it, so a Commit without
// the directory fsync loses the new name (issue 11: the atomic writes of
// the CLI, bundle_create.go's without a directory fsync, are one function).
func TestAtomicCommitIsDurable(t *testing.T) {
	for _, old := range []string{"", "old content"} {
		root := t.TempDir()
		if old != "" {
			writeHost(t, root, "/d/out", old)
		} else {
			writeHost(t, root, "/d/other", "x")
		}
		s := NewSim(root, SimOptions{Mode: CutDrop})
		if err := writeStream(s, "/d/out", "new content in parts"); err != nil {
			t.Fatal(err)
		}
		if err := s.PowerOff(); err != nil {
			t.Fatal(err)
		}
		if got, ok := readHost(root, "/d/out"); !ok || got != "new content in parts" {
			t.Fatalf("old %q: after a power cut /d/out = %q (present %v), want the committed content", old, got, ok)
		}
	}
}

// A cut at any point leaves the old or the new content, in every mode.
func TestAtomicEveryCut(t *testing.T) {
	for _, mode := range []CutMode{CutDrop, CutTear, CutKeep} {
		for cut := 1; ; cut++ {
			root := t.TempDir()
			writeHost(t, root, "/d/out", "old content")
			s := NewSim(root, SimOptions{CutAt: cut, Mode: mode})
			err := writeStream(s, "/d/out", "new content in parts")
			got, ok := readHost(root, "/d/out")
			if !ok || (got != "old content" && got != "new content in parts") {
				t.Fatalf("mode %v cut %d: /d/out = %q (present %v), want old or new", mode, cut, got, ok)
			}
			if err == nil {
				if got != "new content in parts" {
					t.Fatalf("mode %v: no cut but content %q", mode, got)
				}
				break
			}
			if !errors.Is(err, ErrPowerCut) {
				t.Fatalf("mode %v cut %d: %v", mode, cut, err)
			}
		}
	}
}

func TestAtomicAbortKeepsTheOldFile(t *testing.T) {
	root := t.TempDir()
	writeHost(t, root, "/d/out", "old")
	o := NewOS(root)
	a, err := CreateAtomic(o, "/d/out", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	a.Abort()
	a.Abort()
	if got, _ := readHost(root, "/d/out"); got != "old" {
		t.Fatalf("after Abort /d/out = %q, want old", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "d")); len(ents) != 1 {
		t.Fatalf("after Abort the directory holds %d entries, want 1 (no temporary file left)", len(ents))
	}
}

// A host file gets exactly the mode asked for, whatever the umask, and no
// temporary file is left.
func TestWriteHostFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	defer syscall.Umask(syscall.Umask(0o077))
	if err := os.WriteFile("out.json", []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteHostFile("out.json", []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "out.json"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("out.json: %v, mode %v; want 0644", err, fi.Mode())
	}
	if b, _ := os.ReadFile("out.json"); string(b) != "new" {
		t.Fatalf("out.json = %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d entries, want 1 (no temporary file left)", len(ents))
	}
}
