package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestWithPauseStopsBeforeTheOperation(t *testing.T) {
	dir := t.TempDir()
	var out syncBuf
	fsys, err := WithPause(NewOS(dir), "rename:1", &out)
	if err != nil {
		t.Fatal(err)
	}
	// The paused goroutine sleeps forever, as the real process does until QEMU is killed.
	go func() { _ = WriteAtomic(fsys, "/f", []byte("new"), 0o644) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "tandem: test pause before rename #1 (/f.new)") {
		if time.Now().After(deadline) {
			t.Fatalf("no pause line; got %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "f.new")); err != nil || string(b) != "new" {
		t.Fatalf("f.new = %q, %v; want written and synced before the pause", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); !os.IsNotExist(err) {
		t.Fatalf("f exists: the rename ran past the pause (%v)", err)
	}
}

func TestWithPausePassesOtherPoints(t *testing.T) {
	dir := t.TempDir()
	fsys, err := WithPause(NewOS(dir), "syncdir:2", &syncBuf{})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(fsys, "/f", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "x" {
		t.Fatalf("f = %q", b)
	}
}

func TestWithPauseRefusesBadSpecs(t *testing.T) {
	for _, spec := range []string{"", "rename", "rename:0", "rename:x", "chmod:1", ":1"} {
		if _, err := WithPause(NewOS(t.TempDir()), spec, &syncBuf{}); err == nil || !strings.Contains(err.Error(), "pause point") {
			t.Errorf("WithPause(%q) = %v, want a pause point error", spec, err)
		}
	}
}
