package filetrust

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nobody is the uid files are given to that root must not trust.
const nobody = 65534

func write(t *testing.T, p string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func mkdir(t *testing.T, p string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func chown(t *testing.T, p string, uid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	if err := os.Lchown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// TestCheck: issue 11, hardening 9. Every refused case was accepted before
// (hooks ran and trust files loaded whatever their owner or mode).
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		make func(t *testing.T, dir string) string // returns the path to check
		want string                                // "" = trusted; else a part of the error
	}{
		{"root file 0644", func(t *testing.T, d string) string { return write(t, filepath.Join(d, "f"), 0o644) }, ""},
		{"root file 0755", func(t *testing.T, d string) string { return write(t, filepath.Join(d, "f"), 0o755) }, ""},
		{"world-writable file", func(t *testing.T, d string) string { return write(t, filepath.Join(d, "f"), 0o666) }, "writable by its group or others (mode 0666)"},
		{"group-writable file", func(t *testing.T, d string) string { return write(t, filepath.Join(d, "f"), 0o775) }, "mode 0775"},
		{"file of another user", func(t *testing.T, d string) string {
			p := write(t, filepath.Join(d, "f"), 0o755)
			chown(t, p, nobody)
			return p
		}, "owned by uid 65534"},
		{"world-writable directory", func(t *testing.T, d string) string {
			return write(t, filepath.Join(mkdir(t, filepath.Join(d, "sub"), 0o777), "f"), 0o644)
		}, "directory"},
		{"sticky world-writable directory", func(t *testing.T, d string) string {
			return write(t, filepath.Join(mkdir(t, filepath.Join(d, "sub"), 0o777|os.ModeSticky), "f"), 0o644)
		}, ""},
		{"directory of another user", func(t *testing.T, d string) string {
			sub := mkdir(t, filepath.Join(d, "sub"), 0o755)
			chown(t, sub, nobody)
			return write(t, filepath.Join(sub, "f"), 0o644)
		}, "owned by uid 65534"},
		{"symlink to a good file", func(t *testing.T, d string) string {
			write(t, filepath.Join(d, "f"), 0o644)
			return symlink(t, "f", filepath.Join(d, "link"))
		}, ""},
		{"symlink to a world-writable file", func(t *testing.T, d string) string {
			write(t, filepath.Join(d, "f"), 0o666)
			return symlink(t, "f", filepath.Join(d, "link"))
		}, "f is writable"},
		{"symlink to a file of another user", func(t *testing.T, d string) string {
			chown(t, write(t, filepath.Join(d, "f"), 0o644), nobody)
			return symlink(t, filepath.Join(d, "f"), filepath.Join(d, "link"))
		}, "owned by uid 65534"},
		{"symlink owned by another user", func(t *testing.T, d string) string {
			write(t, filepath.Join(d, "f"), 0o644)
			l := symlink(t, "f", filepath.Join(d, "link"))
			chown(t, l, nobody)
			return l
		}, "link is owned by uid 65534"},
		{"symlink into a world-writable directory", func(t *testing.T, d string) string {
			write(t, filepath.Join(mkdir(t, filepath.Join(d, "sub"), 0o777), "f"), 0o644)
			return symlink(t, "sub/f", filepath.Join(d, "link"))
		}, "directory"},
		{"symlink chain to a world-writable file", func(t *testing.T, d string) string {
			write(t, filepath.Join(d, "f"), 0o646)
			symlink(t, "f", filepath.Join(d, "l1"))
			return symlink(t, "l1", filepath.Join(d, "l2"))
		}, "mode 0646"},
		{"symlink loop", func(t *testing.T, d string) string {
			symlink(t, "b", filepath.Join(d, "a"))
			return symlink(t, "a", filepath.Join(d, "b"))
		}, "symbolic links"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := c.make(t, t.TempDir())
			_, err := Check(p)
			if c.want == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v", p, err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check(%s) = %v, want ErrUntrusted containing %q", p, err, c.want)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func symlink(t *testing.T, target, p string) string {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckReturnsTarget(t *testing.T) {
	d := t.TempDir()
	f := write(t, filepath.Join(d, "f"), 0o644)
	got, err := Check(symlink(t, "f", filepath.Join(d, "link")))
	if err != nil || got != f {
		t.Fatalf("Check = %q, %v; want %q", got, err, f)
	}
	if _, err := Check(filepath.Join(d, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}
