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
	"strings"

	"github.com/klauspost/compress/zstd"
)

// tree is a root file system unpacked under a host directory, plus the
// owners, special modes and device nodes the directory cannot hold when
// tandem does not run as root. mkfs.ext4 -d copies the directory; fixups
// then sets the rest with debugfs, so the image is right without root.
type tree struct {
	dir      string
	root     *os.Root
	uid, gid int
	fixups   []string // debugfs commands
}

func newTree(dir string) (*tree, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &tree{dir: dir, root: r, uid: os.Geteuid(), gid: os.Getegid()}, nil
}

// unpack fills the tree from src: a directory, or a tar archive (plain,
// gzip or zstd, told by its first bytes).
func (t *tree) unpack(src string) (int, error) {
	st, err := os.Stat(src)
	if err != nil {
		return 0, err
	}
	if !st.IsDir() {
		f, err := os.Open(src)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		r, err := decompress(bufio.NewReaderSize(f, 1<<20))
		if err != nil {
			return 0, fmt.Errorf("%s: %w", src, err)
		}
		n, err := t.untar(tar.NewReader(r))
		if err != nil {
			return n, fmt.Errorf("%s: %w", src, err)
		}
		return n, nil
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarDir(pw, src)) }()
	n, err := t.untar(tar.NewReader(pr))
	pr.CloseWithError(errors.New("stopped"))
	if err != nil {
		return n, fmt.Errorf("%s: %w", src, err)
	}
	return n, nil
}

func decompress(br *bufio.Reader) (io.Reader, error) {
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return br, nil
}

// tarDir writes the directory dir as a tar stream (owners, modes, links
// and device numbers as they are).
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// clean turns an archive name into a path relative to the root ("" for the
// root itself) and refuses one that leaves it or that debugfs cannot quote.
func clean(name string) (string, error) {
	p := path.Clean("/" + name)
	if strings.ContainsAny(p, "\"\n\\") || contains(strings.Split(name, "/"), "..") {
		return "", fmt.Errorf("entry %q: a name with \"..\", a quote, a backslash or a newline", name)
	}
	return strings.TrimPrefix(p, "/"), nil
}

// untar writes the archive's entries into the tree.
func (t *tree) untar(tr *tar.Reader) (int, error) {
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		name, err := clean(h.Name)
		if err != nil {
			return n, err
		}
		n++
		if name == "" {
			continue // the root directory is root's (mkfs.ext4 root_owner)
		}
		if err := t.entry(name, h, tr); err != nil {
			return n, fmt.Errorf("entry %q: %w", h.Name, err)
		}
	}
}

func (t *tree) entry(name string, h *tar.Header, r io.Reader) error {
	mode := fs.FileMode(h.Mode).Perm()
	if dir := path.Dir(name); dir != "." {
		if err := t.root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := t.root.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := t.root.Chmod(name, mode|0o700); err != nil {
			return err
		}
	case tar.TypeReg:
		_ = t.root.Remove(name)
		f, err := t.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := t.root.Chmod(name, mode); err != nil {
			return err
		}
	case tar.TypeSymlink:
		_ = t.root.Remove(name)
		if err := t.root.Symlink(h.Linkname, name); err != nil {
			return err
		}
	case tar.TypeLink:
		target, err := clean(h.Linkname)
		if err != nil {
			return err
		}
		_ = t.root.Remove(name)
		return t.root.Link(target, name) // owner and mode are the target's
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]string{tar.TypeChar: "c", tar.TypeBlock: "b", tar.TypeFifo: "p"}[h.Typeflag]
		// debugfs's mknod makes the node in its working directory.
		cmd := fmt.Sprintf("cd \"/%s\"\nmknod \"%s\" %s", path.Dir(name), path.Base(name), kind)
		if kind != "p" {
			cmd += fmt.Sprintf(" %d %d", h.Devmajor, h.Devminor)
		}
		t.fixups = append(t.fixups, cmd, "cd /")
		t.own(name, h.Uid, h.Gid, h.Mode, h.Typeflag, true)
		return nil
	default:
		return fmt.Errorf("unsupported tar entry type %q", h.Typeflag)
	}
	t.own(name, h.Uid, h.Gid, h.Mode, h.Typeflag, false)
	return nil
}

// typeBits are the inode type bits of the tar entry types.
var typeBits = map[byte]int64{tar.TypeReg: 0o100000, tar.TypeDir: 0o040000, tar.TypeSymlink: 0o120000,
	tar.TypeChar: 0o020000, tar.TypeBlock: 0o060000, tar.TypeFifo: 0o010000}

// own records that name must be owned by uid:gid and, when the mode has
// set-id or sticky bits (or always), have the mode: what the directory
// cannot say when tandem does not run as root.
func (t *tree) own(name string, uid, gid int, mode int64, typ byte, always bool) {
	if uid != t.uid {
		t.fixups = append(t.fixups, fmt.Sprintf("sif \"/%s\" uid %d", name, uid))
	}
	if gid != t.gid {
		t.fixups = append(t.fixups, fmt.Sprintf("sif \"/%s\" gid %d", name, gid))
	}
	if always || mode&0o7000 != 0 {
		t.fixups = append(t.fixups, fmt.Sprintf("sif \"/%s\" mode 0%o", name, mode&0o7777|typeBits[typ]))
	}
}

// add writes a file owned by root into the tree (tandem's own files).
func (t *tree) add(name string, data []byte, mode fs.FileMode) error {
	if err := t.root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	_ = t.root.Remove(name)
	if err := t.root.WriteFile(name, data, mode); err != nil {
		return err
	}
	if err := t.root.Chmod(name, mode); err != nil {
		return err
	}
	t.own(name, 0, 0, int64(mode), tar.TypeReg, false)
	return nil
}

// mkdir makes a directory owned by root unless it exists.
func (t *tree) mkdir(name string) error {
	if _, err := t.root.Lstat(name); err == nil {
		return nil
	}
	if err := t.root.MkdirAll(name, 0o755); err != nil {
		return err
	}
	t.own(name, 0, 0, 0o755, tar.TypeDir, false)
	return nil
}

// resolve follows symbolic links of the last element of p (a path in the
// tree; absolute link targets are read in the tree) and reports whether it
// ends at a regular file.
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

// ext4 makes the file system image out of the tree and applies the fixups.
func (t *tree) ext4(out string, size int64, label string) error {
	if err := Ext4(out, size, label, t.dir); err != nil {
		return err
	}
	if len(t.fixups) == 0 {
		return nil
	}
	script := out + ".debugfs"
	if err := os.WriteFile(script, []byte(strings.Join(t.fixups, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(script)
	return debugfs("-w", "-f", script, out)
}

// debugfs runs debugfs, which exits 0 when a command fails: any message on
// stderr other than its banner is an error.
func debugfs(args ...string) error {
	cmd := exec.Command("debugfs", args...)
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, io.Discard
	err := cmd.Run()
	var msgs []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "debugfs ") {
			msgs = append(msgs, l)
		}
	}
	if err != nil || len(msgs) > 0 {
		return fmt.Errorf("debugfs %s: %v: %s", strings.Join(args, " "), err, strings.Join(msgs, "; "))
	}
	return nil
}
