package state

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/rootfs"
	"golang.org/x/sys/unix"
)

// loopFS mounts a fresh file system of type fstype (made by its mkfs with
// args) on a loop device in a new temporary directory and returns it; it is
// unmounted at the end of the test. It skips without root, the mkfs or the
// kernel's support (under CI=true a missing root fails).
func loopFS(tb testing.TB, fstype string, size int64, args ...string) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			tb.Fatal("this test needs root (a loop-mounted file system); CI runs as root")
		}
		tb.Skip("needs root: a loop-mounted file system")
	}
	mkfs, err := exec.LookPath("mkfs." + fstype)
	if err != nil {
		tb.Skipf("mkfs.%s is not installed (scripts/install-deps.sh)", fstype)
	}
	dir := tb.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(mkfs, append(args, img)...).CombinedOutput(); err != nil {
		tb.Fatalf("mkfs.%s: %v: %s", fstype, err, out)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", "-t", fstype, img, mnt).CombinedOutput(); err != nil {
		tb.Skipf("cannot loop-mount %s here: %v: %s", fstype, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			tb.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// reflinkFS are the file systems that take reflinks, with their mkfs
// arguments (xfs: reflink=1 is mkfs.xfs's default since xfsprogs 5.1;
// stated here so the test does not depend on it).
var reflinkFS = []struct {
	fstype string
	size   int64
	args   []string
}{
	{"xfs", 320 << 20, []string{"-q", "-f", "-m", "reflink=1"}},
	{"btrfs", 320 << 20, []string{"-q", "-f"}},
}

// used returns the bytes used on the file system of dir, after a syncfs
// (btrfs counts its space at the transaction commit).
func used(tb testing.TB, dir string) int64 {
	tb.Helper()
	f, err := os.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		tb.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		tb.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * int64(st.Bsize)
}

// TestSnapshotReflink: on xfs (reflink=1) and btrfs a snapshot clones every
// file (none copied), costs a small part of a copy's space, and the two
// generations stay independent (a write to the trial's file leaves the
// committed one as it was); CheckTrialSpace sees the reflinks and counts
// their metadata. On ext4 every file is copied and counted in full.
func TestSnapshotReflink(t *testing.T) {
	cases := append(reflinkFS[:len(reflinkFS):len(reflinkFS)], struct {
		fstype string
		size   int64
		args   []string
	}{"ext4", 64 << 20, []string{"-q", "-F"}})
	for _, c := range cases {
		t.Run(c.fstype, func(t *testing.T) {
			mnt := loopFS(t, c.fstype, c.size, c.args...)
			root := filepath.Join(mnt, "root")
			s := &Store{FS: rootfs.NewOS(root), Mount: testMount}
			l, err := s.Format()
			must(t, err)
			l, err = s.Adopt(l, "a")
			must(t, err)
			big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
			files := map[string]string{"var/lib/app/db": big, "var/lib/app/small": "x", "etc/hostname": "h\n"}
			for i := range 8 {
				files[fmt.Sprintf("var/lib/app/blob%d", i)] = big
			}
			writeTree(t, s.FS.Path(s.gen(l.Committed.Gen)), files)
			before := used(t, mnt)
			l, err = s.Snapshot(l, "b")
			must(t, err)
			cost := used(t, mnt) - before
			reflink := c.fstype != "ext4"
			if reflink && (s.cloned != len(files) || s.copied != 0) || !reflink && (s.cloned != 0 || s.copied != len(files)) {
				t.Fatalf("%d files cloned, %d copied, of %d", s.cloned, s.copied, len(files))
			}
			if err := sameTree(t, root, l.Trial.Gen, files); err != nil {
				t.Fatal(err)
			}
			if reflink && cost > 1<<20 || !reflink && cost < 9<<20 {
				t.Fatalf("the snapshot of 9 MiB took %d bytes", cost)
			}
			t.Logf("%s: snapshot of 9 MiB in %d files: %d KiB used", c.fstype, len(files), cost>>10)
			must(t, os.WriteFile(s.FS.Path(s.GenPath(l.Trial.Gen, "/var/lib/app/db")), []byte("migrated"), 0o644))
			if err := sameTree(t, root, l.Committed.Gen, files); err != nil {
				t.Fatalf("a write to the trial's copy reached the committed state: %v", err)
			}

			must(t, os.MkdirAll(filepath.Join(root, ConfigDir), 0o755))
			must(t, os.WriteFile(filepath.Join(root, ConfigDir, "10.toml"), []byte("[data-partition]\nlabel = \"d\"\nmount = \"/data\"\n[persist.\"/var/lib/app\"]\n[persist.\"/etc/hostname\"]\ntype = \"file\"\n"), 0o644))
			need, err := CheckTrialSpace(s.FS, "", nil)
			must(t, err)
			if need.Reflink != reflink || reflink && need.Snapshot > 64<<10 || !reflink && need.Snapshot < 9<<20 {
				t.Fatalf("CheckTrialSpace: %+v", need)
			}
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSnapshot measures a trial's snapshot of a committed state of
// 1,000 files of 64 KiB and 4 of 32 MiB (190.5 MiB): time and the space
// it takes (MiB-used/op), copied and reflinked, on loop-mounted xfs, btrfs
// and ext4 (copy only). docs/state.md has the numbers and the command.
func BenchmarkSnapshot(b *testing.B) {
	cases := []struct {
		fstype string
		args   []string
	}{
		{"xfs", []string{"-q", "-f", "-m", "reflink=1"}},
		{"btrfs", []string{"-q", "-f"}},
		{"ext4", []string{"-q", "-F"}},
	}
	small := []byte(strings.Repeat("s", 64<<10))
	large := []byte(strings.Repeat("L", 32<<20))
	for _, c := range cases {
		for _, mode := range []string{"copy", "reflink"} {
			if c.fstype == "ext4" && mode == "reflink" {
				continue
			}
			b.Run(c.fstype+"/"+mode, func(b *testing.B) {
				mnt := loopFS(b, c.fstype, 1<<30, c.args...)
				root := filepath.Join(mnt, "root")
				s := &Store{FS: rootfs.NewOS(root), Mount: testMount, NoReflink: mode == "copy"}
				l, err := s.Format()
				must(b, err)
				l, err = s.Adopt(l, "a")
				must(b, err)
				gen := s.FS.Path(s.gen(l.Committed.Gen))
				for i := range 1000 {
					p := filepath.Join(gen, fmt.Sprintf("var/lib/app/d%02d/f%03d", i/100, i))
					must(b, os.MkdirAll(filepath.Dir(p), 0o755))
					must(b, os.WriteFile(p, small, 0o644))
				}
				for i := range 4 {
					must(b, os.WriteFile(filepath.Join(gen, fmt.Sprintf("var/lib/app/big%d", i)), large, 0o644))
				}
				var usedTotal int64
				b.SetBytes(1000*int64(len(small)) + 4*int64(len(large)))
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					before := used(b, mnt)
					b.StartTimer()
					n, err := s.Snapshot(l, "b")
					must(b, err)
					b.StopTimer()
					usedTotal += used(b, mnt) - before
					_, err = s.Rollback(n)
					must(b, err)
					b.StartTimer()
				}
				b.ReportMetric(float64(usedTotal)/float64(b.N)/(1<<20), "MiB-used/op")
			})
		}
	}
}
