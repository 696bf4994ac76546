package hooks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/filetrust"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// hookDir makes <root>/hooks/op/stage and returns it.
func hookDir(t *testing.T, root string) string {
	t.Helper()
	d := filepath.Join(root, "hooks", "op", "stage")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// script writes a hook that creates <root>/ran-<name>, with mode.
func script(t *testing.T, root, p string, mode os.FileMode) {
	t.Helper()
	body := "#!/bin/sh\ntouch \"$TANDEM_ROOT/ran-" + filepath.Base(p) + "\"\n"
	if err := os.WriteFile(p, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func ran(root, name string) bool {
	_, err := os.Stat(filepath.Join(root, "ran-"+name))
	return err == nil
}

func TestRun(t *testing.T) {
	root := t.TempDir()
	d := hookDir(t, root)
	script(t, root, filepath.Join(d, "10-first"), 0o755)
	script(t, root, filepath.Join(d, "20-doc"), 0o666) // not executable: skipped, whatever its mode
	if err := Run(rootfs.NewOS(root), "/hooks", "op", "stage"); err != nil {
		t.Fatal(err)
	}
	if !ran(root, "10-first") || ran(root, "20-doc") {
		t.Fatal("the executable hook did not run, or the other one did")
	}
	if err := Run(rootfs.NewOS(root), "/missing", "op", "stage"); err != nil {
		t.Fatalf("no hooks directory: %v", err)
	}
}

// TestRunRefusesUntrustedHooks: issue 11, hardening 9. Each of these hooks
// ran as root before.
func TestRunRefusesUntrustedHooks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	for _, c := range []struct {
		name string
		make func(t *testing.T, root, d string)
		want string
	}{
		{"world-writable", func(t *testing.T, root, d string) { script(t, root, filepath.Join(d, "10-hook"), 0o777) }, "writable by its group or others"},
		{"owned by nobody", func(t *testing.T, root, d string) {
			script(t, root, filepath.Join(d, "10-hook"), 0o755)
			if err := os.Chown(filepath.Join(d, "10-hook"), 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 65534"},
		{"symlink to a world-writable file", func(t *testing.T, root, d string) {
			other := filepath.Join(root, "elsewhere")
			script(t, root, other, 0o757)
			if err := os.Symlink(other, filepath.Join(d, "10-hook")); err != nil {
				t.Fatal(err)
			}
		}, "elsewhere is writable"},
		{"world-writable hook directory", func(t *testing.T, root, d string) {
			script(t, root, filepath.Join(d, "10-hook"), 0o755)
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
		}, "directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			d := hookDir(t, root)
			c.make(t, root, d)
			err := Run(rootfs.NewOS(root), "/hooks", "op", "stage")
			if !errors.Is(err, filetrust.ErrUntrusted) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "10-hook refused") {
				t.Fatalf("Run = %v, want a refusal naming 10-hook and %q", err, c.want)
			}
			if ran(root, "10-hook") || ran(root, "elsewhere") {
				t.Fatal("the refused hook ran")
			}
		})
	}
}
