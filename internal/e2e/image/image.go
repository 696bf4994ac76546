// Package image builds the disk images of tandem's real-boot tests
// (docs/testing.md, tier 3) from Debian packages and host tools, without root
// mounts or loop devices: ext4 file systems with `mkfs.ext4 -d`, FAT with
// mkfs.vfat and mtools, a GPT with sfdisk on the image file, and an initramfs
// written as a newc cpio archive in Go. The pieces are architecture neutral;
// the x86-64 guest is assembled in x86.go, the arm64 one in arm64*.go.
package image

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// MiB is one mebibyte.
const MiB = 1 << 20

// run runs a host tool and reports its output on failure.
func run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Ext4 makes an ext4 file system image of size bytes at out holding the tree
// under dir (nil dir: empty), labelled label.
func Ext4(out string, size int64, label, dir string) error {
	if err := os.Remove(out); err != nil && !os.IsNotExist(err) {
		return err
	}
	args := []string{"-q", "-F", "-t", "ext4", "-L", label, "-E", "root_owner=0:0", "-O", "^metadata_csum_seed"}
	if dir != "" {
		args = append(args, "-d", dir)
	}
	args = append(args, out, fmt.Sprintf("%dk", size/1024))
	return run("mkfs.ext4", args...)
}

// VFAT makes a FAT32 file system image of size bytes at out holding the tree
// under dir, copied in with mtools.
func VFAT(out string, size int64, label, dir string) error {
	if err := os.Remove(out); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := run("mkfs.vfat", "-F", "32", "-n", label, "-C", out, fmt.Sprint(size/1024)); err != nil {
		return err
	}
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		// mcopy -s copies directories recursively; -Q stops at the first error.
		if err := run("mcopy", "-Q", "-s", "-i", out, dir+"/"+e.Name(), "::/"); err != nil {
			return err
		}
	}
	return nil
}
