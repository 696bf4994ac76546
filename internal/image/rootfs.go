package image

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// tree is a root file system unpacked under a host directory inside a
// fakeroot session (its state in db): the owners, set-id bits and device
// nodes an ordinary user cannot create live in fakeroot's database, and
// mkfs.ext4 -d, run in the same session, copies them into the image. So the
// image is right without root.
type tree struct {
	dir, db string
	root    *os.Root
	added   []string // mode, path pairs of tandem's files (owned by root)
}

// unpackScript copies a directory or extracts a tar archive (GNU tar tells
// gzip and zstd by their first bytes) into the tree, keeping owners but no
// extended attributes (xattr.go sets those in the image).
const unpackScript = `set -e
if [ -d "$1" ]; then cp -dR --preserve=mode,ownership,timestamps,links "$1/." "$2"; else tar -x -p --numeric-owner --no-xattrs -f "$1" -C "$2"; fi`

// ownScript gives tandem's files (mode, path pairs) to root and makes the
// file system, in the session that holds the root file system's owners.
const ownScript = `set -e
tree=$1; shift
while [ "$1" != -- ]; do chown 0:0 "$tree/$2"; chmod "$1" "$tree/$2"; shift 2; done
shift
exec mkfs.ext4 "$@"`

// unpack makes the tree dir from src, a directory or a tar archive.
func unpack(src, dir, db string) (*tree, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	if magic, _ := readHead(src, 4); bytes.Equal(magic, zstdMagic) {
		if err := CheckTools("zstd"); err != nil {
			return nil, err
		}
	}
	if err := Run("fakeroot", "-s", db, "--", "sh", "-c", unpackScript, "sh", src, dir); err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &tree{dir: dir, db: db, root: r}, nil
}

// zstdMagic starts a zstd frame (a .tar.zst archive).
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

func readHead(name string, n int) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	n, err = f.Read(b)
	return b[:n], err
}

// mkdirs makes the missing directories of name (a path in the tree),
// owned by root.
func (t *tree) mkdirs(name string) error {
	p := ""
	for _, el := range strings.Split(name, "/") {
		p = path.Join(p, el)
		if _, err := t.root.Lstat(p); err == nil {
			continue
		}
		if err := t.root.Mkdir(p, 0o755); err != nil {
			return err
		}
		t.added = append(t.added, "0755", p)
	}
	return nil
}

// add writes a file owned by root into the tree (tandem's own files).
func (t *tree) add(name string, data []byte, mode fs.FileMode) error {
	if err := t.mkdirs(path.Dir(name)); err != nil {
		return err
	}
	if err := t.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := t.root.WriteFile(name, data, mode); err != nil {
		return err
	}
	t.added = append(t.added, fmt.Sprintf("%04o", mode.Perm()), name)
	return nil
}

// resolve follows symbolic links of the last element of p (a path in the
// tree; absolute link targets are read in the tree) to a regular file and
// returns its path relative to the tree.
func (t *tree) resolve(p string) (string, error) {
	for range 40 {
		rel := strings.TrimPrefix(p, "/")
		fi, err := t.root.Lstat(rel)
		if err != nil {
			return "", err
		}
		if fi.Mode().IsRegular() {
			return rel, nil
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return "", fmt.Errorf("%s is not a regular file", p)
		}
		target, err := t.root.Readlink(rel)
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir("/"+rel), target)
		}
		p = target
	}
	return "", fmt.Errorf("%s: too many symbolic links", p)
}

// ext4 makes the file system image out of the tree.
func (t *tree) ext4(out string, size int64, label string) error {
	if err := os.Remove(out); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	args := append([]string{"-i", t.db, "--", "sh", "-c", ownScript, "sh", t.dir}, t.added...)
	return Run("fakeroot", append(append(args, "--"), ext4Args(out, size, label, t.dir, RoleSlot)...)...)
}
