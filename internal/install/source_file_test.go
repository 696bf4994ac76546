package install

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// issue 11, hardening 5: a bundle source that is not a regular file — a
// FIFO (whose open would block), a device node (whose open may act), a
// directory — is refused before anything is read; a regular file, also
// through a symlink, is opened.
func TestOpenFileRegularOnly(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, "/dev/zero", "/dev/null", dir} {
		done := make(chan error, 1)
		go func() {
			f, err := OpenFile(p)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("open %s as a bundle: %v, want a refusal", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("open %s as a bundle blocked", p)
		}
	}
	file := filepath.Join(dir, "v2.tandem")
	if err := os.WriteFile(file, []byte("TANDEMBN"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "current.tandem")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, link} {
		f, err := OpenFile(p)
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		f.Close()
	}
}
