package rootfs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func writeHost(t *testing.T, root, name, data string) {
	t.Helper()
	p := Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readHost(root, name string) (string, bool) {
	b, err := os.ReadFile(Join(root, name))
	return string(b), err == nil
}

// WriteAtomic must leave old or new content at every cut point in every mode.
func TestWriteAtomicEveryCut(t *testing.T) {
	for _, mode := range []CutMode{CutDrop, CutTear, CutKeep} {
		for cut := 1; ; cut++ {
			root := t.TempDir()
			writeHost(t, root, "/boot/env", "old content")
			s := NewSim(root, SimOptions{CutAt: cut, Mode: mode})
			err := WriteAtomic(s, "/boot/env", []byte("new content!"), 0o644)
			got, ok := readHost(root, "/boot/env")
			if !ok || (got != "old content" && got != "new content!") {
				t.Fatalf("mode %v cut %d: /boot/env = %q (present %v), want old or new", mode, cut, got, ok)
			}
			if err == nil {
				if got != "new content!" {
					t.Fatalf("mode %v: no cut but content %q", mode, got)
				}
				if cut < 6 {
					t.Fatalf("mode %v: only %d cut points, want write, fsync, rename, fsync, dir fsync", mode, cut-1)
				}
				break
			}
			if !errors.Is(err, ErrPowerCut) {
				t.Fatalf("mode %v cut %d: %v", mode, cut, err)
			}
		}
	}
}

// The model must catch a writer that renames before fsyncing the data: after
// the rename is made durable the data is not.
func TestDropCatchesMissingFsync(t *testing.T) {
	root := t.TempDir()
	writeHost(t, root, "/boot/env", "old")
	s := NewSim(root, SimOptions{CutAt: 4, Mode: CutDrop})
	f, err := s.OpenFile("/boot/env.new", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, write(f, "new"))                                        // point 1
	mustOK(t, s.Rename("/boot/env.new", "/boot/env"))                 // point 2
	mustOK(t, s.SyncDir("/boot"))                                     // point 3
	if err := s.Remove("/boot/other"); !errors.Is(err, ErrPowerCut) { // point 4: cut
		t.Fatalf("want power cut, got %v", err)
	}
	if got, _ := readHost(root, "/boot/env"); got != "" {
		t.Fatalf("after cut /boot/env = %q, want empty (data never synced)", got)
	}
	if _, err := s.ReadFile("/boot/env"); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("a dead device must not read: %v", err)
	}
}

func TestDropUndoesUnsyncedRenameAndRemove(t *testing.T) {
	root := t.TempDir()
	writeHost(t, root, "/d/a", "A")
	writeHost(t, root, "/d/b", "B")
	s := NewSim(root, SimOptions{CutAt: 3, Mode: CutDrop})
	mustOK(t, s.Rename("/d/a", "/d/b"))
	mustOK(t, s.Remove("/d/b"))
	if err := s.SyncDir("/d"); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("want cut, got %v", err)
	}
	for name, want := range map[string]string{"/d/a": "A", "/d/b": "B"} {
		if got, ok := readHost(root, name); !ok || got != want {
			t.Errorf("%s = %q (%v), want %q", name, got, ok, want)
		}
	}
}

func TestTearInPlace(t *testing.T) {
	for _, tc := range []struct {
		mode CutMode
		want string
	}{{CutDrop, "aaaaaaaa"}, {CutTear, "bbbbaaaa"}, {CutKeep, "bbbbaaaa"}} {
		root := t.TempDir()
		writeHost(t, root, "/f", "aaaaaaaa")
		s := NewSim(root, SimOptions{CutAt: 1, Mode: tc.mode})
		f, err := s.OpenFile("/f", os.O_WRONLY, 0)
		mustOK(t, err)
		if _, err := f.WriteAt([]byte("bbbbbbbb"), 0); !errors.Is(err, ErrPowerCut) {
			t.Fatalf("want cut, got %v", err)
		}
		f.Close()
		if got, _ := readHost(root, "/f"); got != tc.want {
			t.Errorf("mode %v: %q, want %q", tc.mode, got, tc.want)
		}
	}
}

func TestKeepKeepsUnsynced(t *testing.T) {
	root := t.TempDir()
	s := NewSim(root, SimOptions{CutAt: 2, Mode: CutKeep})
	mustOK(t, os.MkdirAll(Join(root, "/d"), 0o755))
	f, err := s.OpenFile("/d/x", os.O_WRONLY|os.O_CREATE, 0o644)
	mustOK(t, err)
	mustOK(t, write(f, "data"))
	if err := f.Sync(); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("want cut, got %v", err)
	}
	if got, _ := readHost(root, "/d/x"); got != "data" {
		t.Fatalf("keep mode lost data: %q", got)
	}
}

func TestEfivarfsSemantics(t *testing.T) {
	root := t.TempDir()
	vars := "/sys/firmware/efi/efivars"
	writeHost(t, root, vars+"/Old-x", "\x07\x00\x00\x00old")
	s := NewSim(root, SimOptions{SyncDirs: []string{vars}})
	if _, err := s.OpenFile(vars+"/Old-x", os.O_WRONLY, 0); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("write to an immutable variable: got %v, want EPERM", err)
	}
	if err := s.Remove(vars + "/Old-x"); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("remove of an immutable variable: got %v, want EPERM", err)
	}
	mustOK(t, s.ClearImmutable(vars+"/Old-x"))
	f, err := s.OpenFile(vars+"/Old-x", os.O_WRONLY, 0)
	mustOK(t, err)
	mustOK(t, write(f, "\x07\x00\x00\x00n"))
	mustOK(t, f.Close())
	if got, _ := readHost(root, vars+"/Old-x"); got != "\x07\x00\x00\x00n" {
		t.Fatalf("variable = %q", got)
	}
	if err := s.Rename(vars+"/Old-x", vars+"/New-x"); err == nil {
		t.Fatal("rename in efivarfs must fail")
	}
	// A cut at a variable write leaves the old value whole.
	s = NewSim(root, SimOptions{SyncDirs: []string{vars}, CutAt: 1, Mode: CutTear})
	mustOK(t, s.ClearImmutable(vars+"/Old-x"))
	f, err = s.OpenFile(vars+"/Old-x", os.O_WRONLY, 0)
	mustOK(t, err)
	if _, err := f.Write([]byte("\x07\x00\x00\x00zzzz")); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("want cut, got %v", err)
	}
	if got, _ := readHost(root, vars+"/Old-x"); got != "\x07\x00\x00\x00n" {
		t.Fatalf("variable after cut = %q", got)
	}
}

func TestRunCutPoints(t *testing.T) {
	root := t.TempDir()
	marker := filepath.Join(root, "ran")
	for cut, wantRan := range map[int]bool{1: false, 2: true} {
		os.Remove(marker)
		s := NewSim(root, SimOptions{CutAt: cut})
		err := s.Run(exec.Command("touch", marker))
		if !errors.Is(err, ErrPowerCut) {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if _, err := os.Stat(marker); (err == nil) != wantRan {
			t.Errorf("cut %d: program ran = %v, want %v", cut, err == nil, wantRan)
		}
	}
}

func TestJoinStaysUnderRoot(t *testing.T) {
	for _, tc := range []struct{ root, name, want string }{
		{"/r", "/etc/x", "/r/etc/x"},
		{"/r", "../../etc/x", "/r/etc/x"},
		{"", "/etc/x", "/etc/x"},
		{"/", "etc/x", "/etc/x"},
	} {
		if got := Join(tc.root, tc.name); got != tc.want {
			t.Errorf("Join(%q, %q) = %q, want %q", tc.root, tc.name, got, tc.want)
		}
	}
}

func write(f File, s string) error {
	_, err := f.Write([]byte(s))
	return err
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// On FAT (the boot partition) a rename over an existing name followed by a
// directory fsync is not durable: Linux's vfat writes the name's new start
// cluster only at inode write-back, and the replaced clusters are freed at
// the next FAT flush. The real-boot power-cut test lost both GRUB default
// copies this way (docs/testing.md); the model must show it.
func TestFATRenameNeedsFileFsync(t *testing.T) {
	root := t.TempDir()
	writeHost(t, root, "/boot/env", "old")
	s := NewSim(root, SimOptions{Mode: CutDrop, FATDirs: []string{"/boot"}})
	f, err := s.OpenFile("/boot/env.new", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, write(f, "new"))
	mustOK(t, f.Sync())
	mustOK(t, f.Close())
	mustOK(t, s.Rename("/boot/env.new", "/boot/env"))
	mustOK(t, s.SyncDir("/boot"))
	mustOK(t, s.PowerOff())
	if got, ok := readHost(root, "/boot/env"); ok {
		t.Fatalf("after the cut /boot/env = %q, want it lost (renamed over, never fsynced under its name)", got)
	}
}

// WriteAtomic on FAT: old or new content at every cut point, new after it
// returns (it fsyncs the file under its new name before anything else).
func TestWriteAtomicEveryCutFAT(t *testing.T) {
	for _, mode := range []CutMode{CutDrop, CutTear, CutKeep} {
		lost := 0
		for cut := 1; ; cut++ {
			root := t.TempDir()
			writeHost(t, root, "/boot/env", "old content")
			s := NewSim(root, SimOptions{CutAt: cut, Mode: mode, FATDirs: []string{"/boot"}})
			err := WriteAtomic(s, "/boot/env", []byte("new content!"), 0o644)
			if err == nil {
				mustOK(t, s.PowerOff())
			}
			got, ok := readHost(root, "/boot/env")
			switch {
			case !ok:
				lost++
			case got != "old content" && got != "new content!":
				t.Fatalf("mode %v cut %d: /boot/env = %q, want old or new", mode, cut, got)
			}
			if err == nil {
				if got != "new content!" {
					t.Fatalf("mode %v: completed but content %q (present %v)", mode, got, ok)
				}
				break
			}
			if !errors.Is(err, ErrPowerCut) {
				t.Fatalf("mode %v cut %d: %v", mode, cut, err)
			}
		}
		if lost != 0 {
			t.Errorf("mode %v: name lost at %d cut points", mode, lost)
		}
	}
}

// TestWriteAtomicDoesNotFollowSymlinks: issue 11, hardening 9. A symbolic
// link planted at name.new made WriteAtomic (O_TRUNC, following links)
// write the new content through it into any file the link named. It is
// now removed and the file created exclusively; a leftover regular
// name.new (a crash) is replaced too.
func TestWriteAtomicDoesNotFollowSymlinks(t *testing.T) {
	for _, c := range []struct {
		name string
		fsys func(root string) FS
	}{
		{"host", func(root string) FS { return NewOS(root) }},
		{"simulated", func(root string) FS { return NewSim(root, SimOptions{}) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			root, outside := t.TempDir(), t.TempDir()
			victim := filepath.Join(outside, "shadow")
			if err := os.WriteFile(victim, []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			writeHost(t, root, "/boot/env", "old")
			if err := os.Symlink(victim, Join(root, "/boot/env.new")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(outside, "absent"), Join(root, "/boot/other.new")); err != nil {
				t.Fatal(err)
			}
			writeHost(t, root, "/boot/third.new", "half-written leftover of a crash")
			fsys := c.fsys(root)
			for _, name := range []string{"/boot/env", "/boot/other", "/boot/third"} {
				if err := WriteAtomic(fsys, name, []byte("new"), 0o644); err != nil {
					t.Fatalf("WriteAtomic %s: %v", name, err)
				}
				if got, _ := readHost(root, name); got != "new" {
					t.Fatalf("%s = %q", name, got)
				}
				if fi, err := os.Lstat(Join(root, name)); err != nil || !fi.Mode().IsRegular() {
					t.Fatalf("%s is not a regular file: %v", name, err)
				}
			}
			if b, _ := os.ReadFile(victim); string(b) != "secret" {
				t.Fatalf("WriteAtomic wrote through the symlink: %s = %q", victim, b)
			}
			if _, err := os.Lstat(filepath.Join(outside, "absent")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("WriteAtomic created the dangling link's target: %v", err)
			}
		})
	}
}
