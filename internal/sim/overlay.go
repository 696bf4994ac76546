package sim

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tandem-ota/tandem/internal/state"
)

// The persisted overlay (overlay = "persist") as folders. On a device the
// root is an overlayfs whose upper directory is on the data partition, one
// per boot group, so writes outside persistent paths survive reboots of
// that group. The simulated root is a plain folder that programs write to
// directly, so the simulator moves the writes at the boundaries of a boot:
//
//   - at boot (applyUpper): the root is reset to the image, then the booting
//     group's upper is laid over it — its files replace the image's, a
//     whiteout ".wh.NAME" removes NAME, an opaque marker ".wh..wh..opq"
//     empties the image's directory first — and UpperMarker names the upper;
//   - at the next boot (captureUpper, before anything else): the root's
//     differences from the image (bind links into the data folder left
//     out) become that upper, replacing it: new or changed files and links,
//     directories the image lacks, a whiteout for each image entry the root
//     lost.
//
// The whiteouts are files named as AUFS names them (overlayfs uses 0/0
// character devices, which need root); the upper holds regular files,
// directories and symbolic links only. Writes made while the data folder is
// missing are lost (a degraded boot discards the overlay), and the capture
// is not a cut point of the power-cut switch.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// upperHost returns the host path of the upper directory of an overlay
// action's source (a device path on the data partition).
func (m *simMounter) upperHost(source string) (string, bool) {
	rel, ok := strings.CutPrefix(source, m.mount+"/")
	if !ok {
		return "", false
	}
	return filepath.Join(m.root, DataFolder, rel, "upper"), true
}

// applyUpper resets the root to the image and lays the group's upper over it.
func (m *simMounter) applyUpper(a state.Action) error {
	upper, ok := m.upperHost(a.Source)
	if !ok {
		return fmt.Errorf("overlay upper %s is not on the data partition", a.Source)
	}
	if err := resetRoot(m.root, m.image); err != nil {
		return err
	}
	if err := os.MkdirAll(upper, 0o755); err != nil {
		return err
	}
	if err := layUpper(upper, m.root); err != nil {
		return err
	}
	rel, _ := filepath.Rel(m.root, upper)
	return os.WriteFile(filepath.Join(m.root, UpperMarker), []byte(rel+"\n"), 0o644)
}

// layUpper copies the upper directory dir over the root directory dst.
func layUpper(dir, dst string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(ents, func(e fs.DirEntry) bool { return e.Name() == opaqueMarker }) {
		if err := emptyDir(dst); err != nil {
			return err
		}
	}
	for _, e := range ents {
		name := e.Name()
		src, out := filepath.Join(dir, name), filepath.Join(dst, name)
		switch {
		case name == opaqueMarker:
		case strings.HasPrefix(name, whiteoutPrefix):
			if err := os.RemoveAll(filepath.Join(dst, strings.TrimPrefix(name, whiteoutPrefix))); err != nil {
				return err
			}
		case e.IsDir():
			if fi, err := os.Lstat(out); err == nil && !fi.IsDir() {
				if err := os.Remove(out); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			if err := layUpper(src, out); err != nil {
				return err
			}
		default:
			if err := os.RemoveAll(out); err != nil {
				return err
			}
			if err := copyTree(src, out); err != nil {
				return err
			}
		}
	}
	return nil
}

func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// captureUpper makes the upper that UpperMarker names hold the root's
// differences from the image (the writes of the boot that ends), then
// drops the marker. No marker: the last boot had no persisted overlay.
func (m *simMounter) captureUpper() error {
	marker := filepath.Join(m.root, UpperMarker)
	b, err := os.ReadFile(marker)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	upper := filepath.Join(m.root, strings.TrimSpace(string(b)))
	if _, err := os.Stat(filepath.Join(m.root, DataFolder)); err != nil {
		return os.Remove(marker) // the data partition is gone: nowhere to keep them
	}
	tmp := upper + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := m.diff(m.root, m.image, tmp, true); err != nil {
		return err
	}
	if err := os.RemoveAll(upper); err != nil {
		return err
	}
	if err := os.Rename(tmp, upper); err != nil {
		return err
	}
	return os.Remove(marker)
}

// diff writes into upper what turns the image directory img into the root
// directory dir (top: the device directory itself, whose outside names are
// skipped).
func (m *simMounter) diff(dir, img, upper string, top bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if top && slices.Contains(outsideRoot, name) {
			continue
		}
		seen[name] = true
		p, ip, up := filepath.Join(dir, name), filepath.Join(img, name), filepath.Join(upper, name)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		ifi, ierr := os.Lstat(ip)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0 && m.isBind(p):
			// A persistent path: its writes are on the data partition already.
		case fi.IsDir():
			if ierr != nil || !ifi.IsDir() {
				if err := os.MkdirAll(up, fi.Mode().Perm()); err != nil {
					return err
				}
				if ierr == nil {
					if err := os.WriteFile(filepath.Join(up, opaqueMarker), nil, 0o644); err != nil {
						return err
					}
					ip = filepath.Join(img, "\x00none") // compare against nothing
				}
				if err := m.diff(p, ip, up, false); err != nil {
					return err
				}
				continue
			}
			if err := os.MkdirAll(up, fi.Mode().Perm()); err != nil {
				return err
			}
			if err := m.diff(p, ip, up, false); err != nil {
				return err
			}
			if sub, _ := os.ReadDir(up); len(sub) == 0 {
				_ = os.Remove(up) // unchanged directory
			}
		case ierr != nil || !sameEntry(p, ip, fi, ifi):
			if err := copyTree(p, up); err != nil {
				return err
			}
		}
	}
	ients, _ := os.ReadDir(img)
	for _, e := range ients {
		if !seen[e.Name()] && !(top && slices.Contains(outsideRoot, e.Name())) {
			if err := os.WriteFile(filepath.Join(upper, whiteoutPrefix+e.Name()), nil, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// isBind reports whether the link at host path p points into the data folder.
func (m *simMounter) isBind(p string) bool {
	target, err := os.Readlink(p)
	if err != nil {
		return false
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(p), target)
	}
	return strings.HasPrefix(target, filepath.Join(m.root, DataFolder)+string(filepath.Separator))
}

// sameEntry compares a root entry with the image's: type, mode, content or link target.
func sameEntry(p, ip string, fi, ifi fs.FileInfo) bool {
	if fi.Mode() != ifi.Mode() {
		return false
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		a, _ := os.Readlink(p)
		b, _ := os.Readlink(ip)
		return a == b
	}
	if fi.Size() != ifi.Size() {
		return false
	}
	a, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	b, err := os.ReadFile(ip)
	return err == nil && bytes.Equal(a, b)
}
