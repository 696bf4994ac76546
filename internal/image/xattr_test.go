package image

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestBuildKeepsXattrs builds images from a tar (plain and zstd) holding
// ping with security.capability, and from a directory with a user.*
// attribute, and reads the attributes back from the system partition.
func TestBuildKeepsXattrs(t *testing.T) {
	needTools(t, FlowUBoot)
	f := newFixture(t)
	s := f.spec(t, "uboot", "empty", `arch = "arm64"`)
	for _, comp := range []string{"tar", "zst"} {
		t.Run(comp, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "rootfs.tar."+comp)
			writeTar(t, archive, f.rootfs, comp)
			out := filepath.Join(t.TempDir(), "disk.img")
			r, err := Build(s, Options{RootFS: archive, Out: out})
			if err != nil {
				t.Fatal(err)
			}
			sys := partition(t, out, r.Partitions[1])
			got := debugfsOut(t, sys, "ea_list /usr/bin/ping")
			if want := "security.capability (20) = 01 00 00 02 00 20 00 00"; !strings.Contains(got, want) {
				t.Errorf("ea_list /usr/bin/ping: want %q in\n%s", want, got)
			}
			// The file itself and its neighbours are intact (fakeroot would drop them).
			if st := debugfsOut(t, sys, "stat /usr/bin/ping"); !strings.Contains(st, "Type: regular") {
				t.Errorf("/usr/bin/ping:\n%s", st)
			}
			if got := debugfsOut(t, sys, "cat /usr/bin/ping"); got != "notes" {
				t.Errorf("/usr/bin/ping's content: %q", got)
			}
		})
	}
	t.Run("dir", func(t *testing.T) {
		notes := filepath.Join(f.rootfs, "etc", "os-release")
		if err := unix.Lsetxattr(notes, "user.tandem-test", []byte("kept"), 0); errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
			t.Skipf("user extended attributes not supported here: %v", err)
		} else if err != nil {
			t.Fatal(err)
		}
		defer unix.Lremovexattr(notes, "user.tandem-test")
		out := filepath.Join(t.TempDir(), "disk.img")
		r, err := Build(s, Options{RootFS: f.rootfs, Out: out})
		if err != nil {
			t.Fatal(err)
		}
		sys := partition(t, out, r.Partitions[1])
		if got := debugfsOut(t, sys, "ea_list /etc/os-release"); !strings.Contains(got, "user.tandem-test (4) = \"kept\"") {
			t.Errorf("ea_list /etc/os-release:\n%s", got)
		}
	})
}

func TestSetXattrsReportsFailures(t *testing.T) {
	needTools(t, FlowUBoot)
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.ext4")
	if err := Ext4(img, 8*MiB, "x", "", RoleSlot); err != nil {
		t.Fatal(err)
	}
	err := setXattrs(img, dir, []xattr{{path: "no/such/file", name: "user.x", value: []byte("1")}}, nil)
	if err == nil || !strings.Contains(err.Error(), "no/such/file") {
		t.Errorf("a missing file: %v", err)
	}
	if _, err := os.Stat(img); err != nil {
		t.Fatal(err)
	}
}
