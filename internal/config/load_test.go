package config

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes data to root+DefaultPath and returns that host path.
func writeConfig(t *testing.T, root string, data []byte) string {
	t.Helper()
	file := filepath.Join(root, DefaultPath)
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

var minimal = lines(compat, grubFlow, grubType)

func TestLoadUnderRoot(t *testing.T) {
	root := t.TempDir()
	file := writeConfig(t, root, minimal)
	for _, path := range []string{"", DefaultPath} {
		cfg, err := Load(root, path)
		if err != nil {
			t.Fatalf("Load(%q, %q): %v", root, path, err)
		}
		if cfg.File != file {
			t.Errorf("File = %q, want %q", cfg.File, file)
		}
		if cfg.Compatible != "gw" {
			t.Errorf("Compatible = %q", cfg.Compatible)
		}
	}
}

func TestLoadWithoutRoot(t *testing.T) {
	file := filepath.Join(t.TempDir(), "system.toml")
	if err := os.WriteFile(file, minimal, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{"", "/"} {
		cfg, err := Load(root, file)
		if err != nil {
			t.Fatalf("Load(%q, %q): %v", root, file, err)
		}
		if cfg.File != file {
			t.Errorf("File = %q, want %q", cfg.File, file)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	root := t.TempDir()
	_, err := Load(root, "")
	file := filepath.Join(root, DefaultPath)
	if got, want := err.Error(), file+": no such file or directory"; got != want {
		t.Errorf("error\n got: %s\nwant: %s", got, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("error does not wrap fs.ErrNotExist")
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != file {
		t.Errorf("error does not wrap the *fs.PathError of %s", file)
	}
	if errors.Is(err, ErrInvalid) {
		t.Error("a missing file is not an invalid configuration")
	}
}

func TestLoadDirectory(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, DefaultPath)
	if err := os.MkdirAll(file, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Load(root, "")
	if got, want := err.Error(), file+": is a directory"; got != want {
		t.Errorf("error\n got: %s\nwant: %s", got, want)
	}
}

func TestLoadSizeLimit(t *testing.T) {
	root := t.TempDir()
	// A valid file of exactly MaxFileSize bytes loads.
	exact := append(bytes.Clone(minimal), '#')
	exact = append(exact, bytes.Repeat([]byte{'x'}, MaxFileSize-len(exact))...)
	writeConfig(t, root, exact)
	if _, err := Load(root, ""); err != nil {
		t.Fatalf("file of MaxFileSize bytes: %v", err)
	}
	// One byte more does not, whatever it holds.
	file := writeConfig(t, root, append(exact, 'x'))
	_, err := Load(root, "")
	if got, want := err.Error(), file+": file is larger than the limit of 1048576 bytes (1 MiB)"; got != want {
		t.Errorf("error\n got: %s\nwant: %s", got, want)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Error("error does not wrap ErrInvalid")
	}
	if _, err := Parse(testFile, append(exact, 'x')); err == nil || err.Error() != testFile+": file is larger than the limit of 1048576 bytes (1 MiB)" {
		t.Errorf("Parse of an oversize document: %v", err)
	}
}

func TestLoadInvalid(t *testing.T) {
	root := t.TempDir()
	file := writeConfig(t, root, lines(compat, grubFlow, `type = "lilo"`))
	_, err := Load(root, "")
	want := file + `:3:8: boot-flow.type: unknown boot flow "lilo" (use grub, uboot, rpi-tryboot, systemd-boot, custom, mender-grub, mender-uboot, rauc-grub, rauc-uboot or rugix-grub)`
	if err == nil || err.Error() != want {
		t.Errorf("error\n got: %v\nwant: %s", err, want)
	}
}

func TestErrorOneLine(t *testing.T) {
	err := &Error{File: "/etc/odd\nname.toml", Line: 1, Column: 2, Msg: "a\r\nb\x1b[31m\u2028\xff\tc é"}
	if got, want := err.Error(), `/etc/odd\nname.toml:1:2: a\r\nb\u001b[31m\u2028\xff\u0009c é`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestLoadSlotsResolved: issue 11, hardening 9. Slots whose paths differ
// only as written were accepted: two slots reaching one file or device
// through a symbolic link (absolute targets taken under the root prefix,
// as the device sees them) or a hard link, and a slot reaching into a
// directory slot. Parse alone (no file system) still accepts them.
func TestLoadSlotsResolved(t *testing.T) {
	slots := func(a, b string) []byte {
		return lines(compat, `[slots]`, `system-a = `+a, `system-b = `+b, grubFlow, grubType)
	}
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, root string)
		doc   []byte
		want  string // "" = accepted
	}{
		{"distinct files", func(t *testing.T, root string) {}, slots(`{ type = "file", path = "/data/a.img" }`, `{ type = "file", path = "/data/b.img" }`), ""},
		{"absolute symlink under the root", func(t *testing.T, root string) {
			mkfile(t, root, "/data/a.img")
			link(t, root, "/data/a.img", "/data/b.img")
		}, slots(`{ type = "file", path = "/data/a.img" }`, `{ type = "file", path = "/data/b.img" }`),
			`4:36: slots.system-b.path: "/data/b.img" is the same path as "/data/a.img" of slot "system-a"`},
		{"symlinked directory, image not yet written", func(t *testing.T, root string) {
			mkdirs(t, root, "/data/real")
			link(t, root, "real", "/data/alias")
		}, slots(`{ type = "file", path = "/data/real/x.img" }`, `{ type = "file", path = "/data/alias/x.img" }`),
			`slots.system-b.path: "/data/alias/x.img" is the same path as "/data/real/x.img"`},
		{"hard link", func(t *testing.T, root string) {
			mkfile(t, root, "/data/a.img")
			if err := os.Link(filepath.Join(root, "data/a.img"), filepath.Join(root, "data/b.img")); err != nil {
				t.Fatal(err)
			}
		}, slots(`{ type = "file", path = "/data/a.img" }`, `{ type = "file", path = "/data/b.img" }`), `is the same path as "/data/a.img"`},
		{"device symlink", func(t *testing.T, root string) {
			mkfile(t, root, "/dev/vda2")
			link(t, root, "../../vda2", "/dev/disk/by-partlabel/system-b")
		}, slots(`{ type = "block", device = "/dev/vda2" }`, `{ type = "block", device = "/dev/disk/by-partlabel/system-b" }`),
			`slots.system-b.device: "/dev/disk/by-partlabel/system-b" is the same device as "/dev/vda2" of slot "system-a"`},
		{"file slot reaching into a directory slot", func(t *testing.T, root string) {
			mkdirs(t, root, "/data/tree")
			link(t, root, "/data/tree", "/images")
		}, slots(`{ type = "directory", path = "/data/tree" }`, `{ type = "file", path = "/images/b.img" }`),
			`slots.system-b.path: "/images/b.img" lies inside directory slot "system-a"`},
		{"dot-dot in a link stays under the root", func(t *testing.T, root string) {
			mkfile(t, root, "/a.img")
			link(t, root, "../../../../../../../a.img", "/data/b.img")
		}, slots(`{ type = "file", path = "/a.img" }`, `{ type = "file", path = "/data/b.img" }`), `is the same path as "/a.img"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			c.setup(t, root)
			writeConfig(t, root, c.doc)
			_, err := Load(root, "")
			if c.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load = %v, want an error containing %q", err, c.want)
			}
			if _, err := Parse("system.toml", c.doc); err != nil {
				t.Fatalf("Parse (no file system) refused it: %v", err)
			}
		})
	}
}

func mkdirs(t *testing.T, root, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
		t.Fatal(err)
	}
}

func mkfile(t *testing.T, root, p string) {
	t.Helper()
	mkdirs(t, root, filepath.Dir(p))
	if err := os.WriteFile(filepath.Join(root, p), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// link makes the symbolic link p (a device path under root) to target.
func link(t *testing.T, root, target, p string) {
	t.Helper()
	mkdirs(t, root, filepath.Dir(p))
	if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
		t.Fatal(err)
	}
}
