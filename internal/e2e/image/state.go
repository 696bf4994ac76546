package image

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	diskimage "github.com/tandem-ota/tandem/internal/image"
)

// State makes a system image boot through `tandem init` with managed state
// (docs/state.md): /usr/sbin/tandem-init links to tandem, the boot command
// line gets init=/usr/sbin/tandem-init, the image carries e2fsprogs (mkfs,
// fsck and resize2fs for the data partition) and its state.d file, and the
// data partition starts blank: tandem init makes its file system on the
// first boot. The system's own init mounts only the boot partition.
type State struct {
	// Config is /etc/tandem/state.d/10-e2e.toml.
	Config string
	// Seed are files of the image (device path → content), e.g. the
	// contents of a persistent directory that the first boot seeds from.
	Seed map[string]string
}

// StateInit is where the images link tandem for init=.
const StateInit = "/usr/sbin/tandem-init"

// cmdline is the kernel parameters the images add: quiet, or with state
// tandem init as init, and the kernel log's warnings (tandem init's lines,
// not rate-limited) on the console.
func cmdline(st *State) string {
	if st != nil {
		return "init=" + StateInit + " loglevel=5 printk.devkmsg=on"
	}
	return "quiet"
}

// E2fsprogs returns a tree (under the Debs cache) with mke2fs, e2fsck and
// resize2fs of Debian's e2fsprogs for arch ("amd64", "arm64"), their
// mkfs.ext4/fsck.ext4 names and the shared libraries they load — the
// tools tandem init runs on the data partition. Packages of arch are
// unpacked, never installed.
func E2fsprogs(d Debs, arch string) (string, error) {
	suffix := ""
	if arch != "amd64" {
		suffix = ":" + arch
	}
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[arch]
	loader := map[string]string{"amd64": "/lib64/ld-linux-x86-64.so.2", "arm64": "/lib/ld-linux-aarch64.so.1"}[arch]
	if triplet == "" {
		return "", fmt.Errorf("e2fsprogs: architecture %q is not known", arch)
	}
	tree := filepath.Join(d.Cache, "trees", "e2fsprogs-"+arch)
	if _, err := os.Stat(filepath.Join(tree, ".done")); err == nil {
		return tree, nil
	}
	if err := os.RemoveAll(tree); err != nil {
		return "", err
	}
	libDir := "lib/" + triplet
	want := map[string][]string{ // package → files to take from it
		"e2fsprogs":   {"sbin/mke2fs", "sbin/e2fsck", "sbin/resize2fs"},
		"libext2fs2":  {libDir + "/libext2fs.so.2", libDir + "/libe2p.so.2"},
		"libcom-err2": {libDir + "/libcom_err.so.2"},
		"libblkid1":   {libDir + "/libblkid.so.1"},
		"libuuid1":    {libDir + "/libuuid.so.1"},
		"libc6":       {libDir + "/libc.so.6", strings.TrimPrefix(loader, "/")},
	}
	pkgs := make([]string, 0, len(want))
	for p := range want {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		dir, err := d.Extract(p + suffix)
		if err != nil {
			return "", err
		}
		for _, f := range want[p] {
			src, err := resolveIn(dir, f)
			if err != nil && strings.HasPrefix(f, "lib/") {
				src, err = resolveIn(dir, "usr/"+f) // some libraries live in /usr/lib
			}
			if err != nil {
				return "", fmt.Errorf("e2fsprogs: %s: %w", p+suffix, err)
			}
			if err := diskimage.CopyFile(src, filepath.Join(tree, f), 0o755); err != nil {
				return "", err
			}
		}
	}
	for link, target := range map[string]string{"sbin/mkfs.ext4": "mke2fs", "sbin/fsck.ext4": "e2fsck"} {
		if err := os.Symlink(target, filepath.Join(tree, link)); err != nil {
			return "", err
		}
	}
	return tree, os.WriteFile(filepath.Join(tree, ".done"), nil, 0o644)
}

// resolveIn follows the symbolic links of the file f of the unpacked
// package tree dir inside that tree (library names link to versioned
// files; ld.so links by an absolute path) and returns the host path.
func resolveIn(dir, f string) (string, error) {
	p := filepath.Join(dir, f)
	for range 8 {
		target, err := os.Readlink(p)
		if err != nil {
			if _, serr := os.Stat(p); serr != nil {
				return "", serr
			}
			return p, nil
		}
		if filepath.IsAbs(target) {
			p = filepath.Join(dir, target)
		} else {
			p = filepath.Join(filepath.Dir(p), target)
		}
	}
	return "", fmt.Errorf("%s: too many symbolic links", f)
}

// apply adds the state parts to a system's options: the state.d file, the
// seed files, the tandem-init link, e2fsprogs and an /etc/fstab naming the
// boot partition (tandem init reads the boot loader's default there before
// init). dataDev is the data partition, which the system's init no longer
// mounts.
func (s *State) apply(o *SystemOptions, e2fs, dataDev string) {
	o.Files = map[string]string{"/etc/tandem/state.d/10-e2e.toml": s.Config}
	for p, c := range s.Seed {
		o.Files[p] = c
	}
	var fstab strings.Builder
	var mounts []Mount
	for _, m := range o.Mounts {
		if m.Device == dataDev {
			continue
		}
		mounts = append(mounts, m)
		fmt.Fprintf(&fstab, "%s %s %s defaults 0 0\n", m.Device, m.Dir, m.Type)
	}
	o.Mounts = mounts
	o.Files["/etc/fstab"] = fstab.String()
	o.Links = map[string]string{StateInit: "/bin/tandem"}
	o.Trees = append(o.Trees, e2fs)
}
