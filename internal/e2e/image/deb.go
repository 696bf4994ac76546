package image

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	diskimage "github.com/tandem-ota/tandem/internal/image"
)

// Debs fetches Debian packages for the guest with `apt-get download` and
// unpacks them with `dpkg-deb -x` into a cache directory, so the host system
// is not changed (the kernel is never installed on the host). Packages of a
// foreign architecture are named "pkg:arch" (after dpkg --add-architecture).
type Debs struct {
	Cache string // e.g. /var/tmp/tandem-e2e/debs
}

// Resolve returns the package a metapackage such as linux-image-amd64 points
// to (its first Depends), or pkg itself when it has no dependency that starts
// with prefix.
func (d Debs) Resolve(pkg, prefix string) (string, error) {
	out, err := exec.Command("apt-cache", "depends", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w (run apt-get update?)", pkg, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: ")
		if ok && strings.HasPrefix(dep, prefix) {
			if _, arch, ok := strings.Cut(pkg, ":"); ok && !strings.Contains(dep, ":") {
				dep += ":" + arch
			}
			return dep, nil
		}
	}
	return pkg, nil
}

// Extract downloads pkg (once) and returns the directory it is unpacked in.
func (d Debs) Extract(pkg string) (string, error) {
	dir := filepath.Join(d.Cache, "x", strings.ReplaceAll(pkg, ":", "_"))
	if _, err := os.Stat(filepath.Join(dir, ".done")); err == nil {
		return dir, nil
	}
	dl := filepath.Join(d.Cache, "dl", strings.ReplaceAll(pkg, ":", "_"))
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) == 0 {
		cmd := exec.Command("apt-get", "download", pkg)
		cmd.Dir = dl
		if _, err := cmd.CombinedOutput(); err != nil {
			// A fresh machine may have no package lists yet: update once and retry.
			if uerr := diskimage.Run("apt-get", "update", "-q"); uerr != nil {
				return "", uerr
			}
			cmd = exec.Command("apt-get", "download", pkg)
			cmd.Dir = dl
			if out, err := cmd.CombinedOutput(); err != nil {
				return "", fmt.Errorf("apt-get download %s: %w: %s", pkg, err, strings.TrimSpace(string(out)))
			}
		}
		if debs, _ = filepath.Glob(filepath.Join(dl, "*.deb")); len(debs) != 1 {
			return "", fmt.Errorf("apt-get download %s: %d .deb files in %s", pkg, len(debs), dl)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := diskimage.Run("dpkg-deb", "-x", debs[0], dir); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, ".done"), nil, 0o644)
}
