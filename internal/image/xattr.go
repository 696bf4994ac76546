package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Extended attributes (file capabilities such as ping's cap_net_raw,
// SELinux labels) do not survive fakeroot: fakeroot 1.31 keeps no
// attribute in its saved state and, once one is set, reports the file
// without its type, so mkfs.ext4 -d skips it. The builder therefore
// unpacks without them, reads them from the source itself (the archive's
// PAX records, or the directory), and sets them in the finished ext4 image
// with debugfs.

// xattr is one extended attribute of a file of the root file system.
type xattr struct {
	path, name string // path: clean, relative to the root
	value      []byte
}

// maxXattrValue bounds one attribute's value (ext4 keeps at most a block).
const maxXattrValue = 64 << 10

// readXattrs returns the extended attributes of the root file system src
// (a directory or a tar archive), sorted by path and name.
func readXattrs(src string) ([]xattr, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	var xs []xattr
	if fi.IsDir() {
		xs, err = dirXattrs(src)
	} else {
		xs, err = tarXattrs(src)
	}
	sort.Slice(xs, func(i, j int) bool {
		if xs[i].path != xs[j].path {
			return xs[i].path < xs[j].path
		}
		return xs[i].name < xs[j].name
	})
	return xs, err
}

// tarXattrs reads the SCHILY.xattr.* PAX records (GNU tar --xattrs, bsdtar)
// of a plain, gzip or zstd tar archive.
func tarXattrs(src string) ([]xattr, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	head, _ := br.Peek(4)
	var r io.Reader = br
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		defer gz.Close()
		r = gz
	case bytes.Equal(head, zstdMagic):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	var xs []xattr
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return xs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the extended attributes: %w", err)
		}
		p, ok := cleanMember(h.Name)
		if !ok {
			continue // tar skips it too
		}
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				xs = append(xs, xattr{path: p, name: name, value: []byte(v)})
			}
		}
	}
}

// cleanMember returns an archive member's path relative to the root, or
// false for the root itself and names with "..".
func cleanMember(name string) (string, bool) {
	p := path.Clean("/" + name)
	if p == "/" || slices.Contains(strings.Split(name, "/"), "..") {
		return "", false
	}
	return p[1:], true
}

// dirXattrs reads the extended attributes of the files under dir (symbolic
// links not followed).
func dirXattrs(dir string) ([]xattr, error) {
	var xs []xattr
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		names, err := listXattrs(p)
		if err != nil {
			return fmt.Errorf("extended attributes of %s: %w", p, err)
		}
		for _, n := range names {
			v := make([]byte, maxXattrValue)
			sz, err := unix.Lgetxattr(p, n, v)
			if err != nil {
				return fmt.Errorf("extended attribute %s of %s: %w", n, p, err)
			}
			xs = append(xs, xattr{path: filepath.ToSlash(rel), name: n, value: v[:sz]})
		}
		return nil
	})
	return xs, err
}

func listXattrs(p string) ([]string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range bytes.Split(buf[:n], []byte{0}) {
		if len(n) > 0 {
			names = append(names, string(n))
		}
	}
	return names, nil
}

// setXattrs sets the attributes in the ext4 image img with one debugfs run
// (its value files under work), leaving out the paths of skip (tandem's own
// files, which replaced the root file system's).
func setXattrs(img, work string, xs []xattr, skip map[string]bool) error {
	var cmds strings.Builder
	n := 0
	for _, x := range xs {
		if skip[x.path] {
			continue
		}
		if len(x.value) > maxXattrValue || strings.ContainsAny(x.path+x.name, "\"\n\\") {
			return fmt.Errorf("extended attribute %s of /%s: a value over %d bytes, or a quote, backslash or newline in the name", x.name, x.path, maxXattrValue)
		}
		v := filepath.Join(work, fmt.Sprintf("xattr-%d", n))
		if err := os.WriteFile(v, x.value, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(&cmds, "ea_set -f \"%s\" \"/%s\" \"%s\"\n", v, x.path, x.name)
		n++
	}
	if n == 0 {
		return nil
	}
	if err := CheckTools("debugfs"); err != nil {
		return err
	}
	script := filepath.Join(work, "xattrs.debugfs")
	if err := os.WriteFile(script, []byte(cmds.String()), 0o600); err != nil {
		return err
	}
	// debugfs exits 0 after a failed request: its error lines on stderr
	// (all but the version banner) are the failures.
	cmd := exec.Command("debugfs", "-w", "-f", script, img)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var bad []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "debugfs ") {
			bad = append(bad, l)
		}
	}
	if err != nil || len(bad) > 0 {
		return fmt.Errorf("debugfs: setting extended attributes: %v %s", err, strings.Join(bad, "; "))
	}
	return nil
}
