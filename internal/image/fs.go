package image

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// MiB is one mebibyte.
const MiB = 1 << 20

// debPackages names the Debian package of each external tool.
const debPackages = "mkfs.ext4:e2fsprogs debugfs:e2fsprogs fakeroot:fakeroot tar:tar zstd:zstd mkfs.vfat:dosfstools mcopy:mtools " +
	"sfdisk:fdisk grub-mkimage:grub-common mkimage:u-boot-tools"

// CheckTools reports the first of the external tools that is not on PATH,
// with the Debian package that has it.
func CheckTools(tools ...string) error {
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			_, pkg, _ := strings.Cut(debPackages[strings.Index(debPackages, t+":"):], ":")
			pkg, _, _ = strings.Cut(pkg, " ")
			return fmt.Errorf("%s is not installed (hint: apt-get install %s)", t, pkg)
		}
	}
	return nil
}

// Run runs a host tool and reports its output, in one line, on failure.
func Run(name string, args ...string) error { return runIn("", name, args...) }

// runIn runs a host tool with stdin as its input.
func runIn(stdin, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, oneLine(out.String()))
	}
	return nil
}

// oneLine joins a tool's output into one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Role is what an ext4 file system is for; it decides its features.
type Role int

const (
	// RoleSlot is a slot image, mounted read-only: made without a journal.
	// Mounting ext4 with a journal, even read-only, makes jbd2 rewrite the
	// journal superblock in the block device's page cache, so the slot
	// would no longer read back as the image tandem wrote and a patch's
	// source check would refuse it (docs/delta.md, "Patches").
	RoleSlot Role = iota
	// RoleData is the read-write data partition: journaled.
	RoleData
)

// Ext4 makes an ext4 file system image of size bytes at out holding the tree
// under dir ("" dir: empty), labelled label, with the features of role.
func Ext4(out string, size int64, label, dir string, role Role) error {
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return Run("mkfs.ext4", ext4Args(out, size, label, dir, role)...)
}

func ext4Args(out string, size int64, label, dir string, role Role) []string {
	features := "^metadata_csum_seed"
	if role == RoleSlot {
		features += ",^has_journal"
	}
	args := []string{"-q", "-F", "-t", "ext4", "-L", label, "-E", "root_owner=0:0", "-O", features}
	if dir != "" {
		args = append(args, "-d", dir)
	}
	return append(args, out, fmt.Sprintf("%dk", size/1024))
}

// VFAT makes a FAT file system image of size bytes at out holding the tree
// under dir ("" dir: empty), copied in with mtools: FAT32 from 33 MiB on
// (a boot partition), FAT16 below (an rpi-tryboot config partition).
func VFAT(out string, size int64, label, dir string) error {
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	bits := "32"
	if size < 33*MiB {
		bits = "16"
	}
	if err := Run("mkfs.vfat", "-F", bits, "-n", label, "-C", out, fmt.Sprint(size/1024)); err != nil {
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
		if err := Run("mcopy", "-Q", "-s", "-i", out, dir+"/"+e.Name(), "::/"); err != nil {
			return err
		}
	}
	return nil
}
