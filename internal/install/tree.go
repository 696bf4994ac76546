package install

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// ErrUnsafeTree marks a tar entry that would escape the target directory.
var ErrUnsafeTree = errors.New("unsafe file tree")

// maxTreeEntries bounds the entries of one file-tree payload.
const maxTreeEntries = 1 << 20

// extractTree extracts a tar stream into dir, which must exist and be empty.
// It refuses absolute names, ".." elements, links that leave dir, and device
// nodes; all file operations go through os.Root, so a symlink inside the
// tree cannot redirect a later entry outside dir either. Whether an entry's
// directory or a link's target leaves dir is judged by resolving it through
// the symlinks already in the tree (as the kernel would), and once more for
// every symlink when the tree is complete, because a later symlink can change
// where an earlier one leads.
func extractTree(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return checkLinks(root)
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		if n >= maxTreeEntries {
			return fmt.Errorf("%w: more than %d entries", ErrUnsafeTree, maxTreeEntries)
		}
		name, err := safeName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		// The directory the entry goes into (for a directory, itself: MkdirAll
		// follows a symlink there) must not lead outside.
		parent := path.Dir(name)
		if hdr.Typeflag == tar.TypeDir {
			parent = name
		}
		if err := inTree(root, parent); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUnsafeTree, hdr.Name, err)
		}
		mode := fs.FileMode(hdr.Mode) & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, mode|0o700); err != nil {
				return fmt.Errorf("tar %s: %w", hdr.Name, err)
			}
		case tar.TypeReg:
			if err := writeTreeFile(root, name, mode, tr); err != nil {
				return fmt.Errorf("tar %s: %w", hdr.Name, err)
			}
		case tar.TypeSymlink:
			if err := safeLink(root, name, hdr.Linkname); err != nil {
				return err
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return fmt.Errorf("tar %s: %w", hdr.Name, err)
			}
		case tar.TypeLink:
			target, err := safeName(hdr.Linkname)
			if err != nil {
				return err
			}
			if err := inTree(root, target); err != nil {
				return fmt.Errorf("%w: hard link %q to %q: %w", ErrUnsafeTree, hdr.Name, hdr.Linkname, err)
			}
			if err := root.Link(target, name); err != nil {
				return fmt.Errorf("tar %s: %w", hdr.Name, err)
			}
		default:
			return fmt.Errorf("%w: %s: entry type %q is not supported", ErrUnsafeTree, hdr.Name, hdr.Typeflag)
		}
	}
}

// safeName cleans a tar name and refuses absolute names and ".." elements.
func safeName(name string) (string, error) {
	if strings.HasPrefix(name, "/") || strings.Contains(name, "\\") || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: %q is absolute or malformed", ErrUnsafeTree, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: %q has a \"..\" element", ErrUnsafeTree, name)
		}
	}
	return path.Clean(name), nil
}

// safeLink refuses a symlink whose target, resolved from the link's
// directory through the symlinks already in the tree, leaves the tree.
func safeLink(root *os.Root, name, target string) error {
	if path.IsAbs(target) {
		return fmt.Errorf("%w: symlink %q points to the absolute path %q", ErrUnsafeTree, name, target)
	}
	// Not path.Join: it would clean "d/up/.." to "d" before d/up is resolved.
	if err := inTree(root, path.Dir(name)+"/"+target); err != nil {
		return fmt.Errorf("%w: symlink %q points outside the tree (%q): %w", ErrUnsafeTree, name, target, err)
	}
	return nil
}

// maxLinkHops bounds the symlinks followed while resolving one path.
const maxLinkHops = 255

var errOutside = errors.New("leads outside the tree")

// inTree resolves p (relative to the tree root) the way the kernel would,
// following the symlinks that are in the tree now, and fails when it leaves
// the tree. Components that do not exist (yet) are taken literally.
func inTree(root *os.Root, p string) error {
	var cur []string // resolved components: no symlinks among them
	todo := strings.Split(p, "/")
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return errOutside
			}
			cur = cur[:len(cur)-1]
			continue
		}
		next := path.Join(path.Join(cur...), c)
		fi, err := root.Lstat(next)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			cur = append(cur, c)
			continue
		}
		if hops++; hops > maxLinkHops {
			return fmt.Errorf("more than %d symlinks to follow", maxLinkHops)
		}
		target, err := root.Readlink(next)
		if err != nil {
			return err
		}
		if path.IsAbs(target) {
			return errOutside
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return nil
}

// checkLinks checks every symlink of the finished tree again: a symlink
// added later can change where an earlier one leads (out -> "f/..", then
// f -> ".").
func checkLinks(root *os.Root) error {
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		target, err := root.Readlink(p)
		if err != nil {
			return err
		}
		return safeLink(root, p, target)
	})
}

func writeTreeFile(root *os.Root, name string, mode fs.FileMode, r io.Reader) error {
	if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
