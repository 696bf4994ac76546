package config

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
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
	want := file + `:3:8: boot-flow.type: unknown boot flow "lilo" (use grub, uboot, rpi-tryboot, systemd-boot or custom)`
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
