package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandem-ota/tandem/internal/rootfs"
)

// TestCheckTrialSpace: the snapshot's size counts whole blocks (1,000 files
// of one byte need 1,000 blocks, not 1,000 bytes), leaves shared paths out,
// and a data partition without a layout is not checked (issue 12, "refuse
// the trial before it starts").
func TestCheckTrialSpace(t *testing.T) {
	root := t.TempDir()
	conf := "[data-partition]\nlabel = \"d\"\n[persist.\"/var/lib/app\"]\n[persist.\"/var/log\"]\nshared = true\n"
	if err := os.MkdirAll(filepath.Join(root, ConfigDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigDir, "a.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	fsys := rootfs.NewOS(root)
	if err := os.MkdirAll(fsys.Path(DefaultMount), 0o755); err != nil {
		t.Fatal(err)
	}
	full := func(string) (int64, error) { return 0, nil }
	if n, err := CheckTrialSpace(fsys, "/var/lib/tandem", full); n != nil || err != nil {
		t.Fatalf("no layout yet: %+v %v, want nothing checked", n, err)
	}
	s := &Store{FS: fsys, Mount: DefaultMount}
	l, err := s.Format()
	if err != nil {
		t.Fatal(err)
	}
	fill := func(gen int, p string, files int) {
		dir := fsys.Path(s.GenPath(gen, p))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range files {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill(l.Committed.Gen, "/var/lib/app", 1000)
	fill(l.Shared, "/var/log", 5000)
	free := int64(1 << 30)
	n, err := CheckTrialSpace(fsys, "/var/lib/tandem", func(string) (int64, error) { return free, nil })
	if err != nil || n.Snapshot != 1001*block || n.Need != n.Snapshot+n.Snapshot/10+SnapshotMargin {
		t.Fatalf("1,000 small files: %+v %v, want %d bytes (1,000 files and their directory in blocks)", n, err, 1001*block)
	}
	free = n.Need - 1
	if _, err := CheckTrialSpace(fsys, "/var/lib/tandem", func(string) (int64, error) { return free, nil }); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("one byte short: %v, want ErrNoSpace", err)
	}
	if _, err := CheckTrialSpace(fsys, "/var/lib/tandem", func(string) (int64, error) { return 0, errors.New("statfs: boom") }); err == nil || errors.Is(err, ErrNoSpace) {
		t.Fatalf("unreadable free space: %v", err)
	}
	if _, err := CheckTrialSpace(fsys, "/var/lib/tandem", nil); err != nil {
		t.Fatalf("statfs of a test directory: %v", err)
	}
}
