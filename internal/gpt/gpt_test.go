package gpt

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sfdiskImage makes a disk image of size bytes partitioned by sfdisk (the
// real peer) from script, then enlarges the file to grown bytes, as when an
// image is flashed onto a larger disk.
func sfdiskImage(t testing.TB, size, grown int64, sectorSize int, script string) []byte {
	t.Helper()
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("sfdisk (Debian fdisk) is needed to make the test disk: scripts/install-deps.sh")
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	target := img
	if sectorSize != 512 {
		// Debian's sfdisk has no --sector-size: partition a loop device
		// with that logical sector size instead (root only).
		out, err := exec.Command("losetup", "-f", "--show", "-b", fmt.Sprint(sectorSize), img).CombinedOutput()
		if err != nil {
			t.Skipf("a %d-byte sector disk needs a loop device (root): losetup: %v: %s", sectorSize, err, out)
		}
		target = strings.TrimSpace(string(out))
		defer func() { _ = exec.Command("losetup", "-d", target).Run() }()
	}
	cmd := exec.Command("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", target)
	cmd.Stdin = strings.NewReader("label: gpt\n" + script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v: %s", err, out)
	}
	if err := os.Truncate(img, grown); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const twoParts = "size=4MiB, name=boot\nname=data\n"

// disk is an in-memory disk for Apply.
type disk struct{ b []byte }

func (d *disk) WriteAt(p []byte, off int64) (int, error) { return copy(d.b[off:], p), nil }
func (d *disk) Sync() error                              { return nil }

func read(t testing.TB, b []byte, ss int) *Table {
	t.Helper()
	tab, err := Read(bytes.NewReader(b), int64(len(b)), ss)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// TestGrowPeers grows the last partition of an image made by sfdisk and
// enlarged, then has the real tools check the result: sgdisk -v finds no
// problem, sfdisk --dump shows the partition to the end of the disk and
// last-lba at the new end.
func TestGrowPeers(t *testing.T) {
	b := sfdiskImage(t, 16<<20, 64<<20, 512, twoParts)
	tab := read(t, b, 512)
	if !tab.Primary || tab.AlternateLBA != 16<<20/512-1 || len(tab.Entries) != 2 || tab.Entries[1].Name != "data" {
		t.Fatalf("read: %+v", tab)
	}
	if _, _, err := tab.Grow(1); err == nil || !strings.Contains(err.Error(), "not the last") {
		t.Fatalf("grow partition 1 (not the last): %v", err)
	}
	ws, newLast, err := tab.Grow(2)
	if err != nil {
		t.Fatal(err)
	}
	if w := tab.ProtectiveMBR(b[:512]); w != nil {
		ws = append(ws, *w)
	} else {
		t.Fatal("sfdisk's protective MBR not recognised")
	}
	if newLast != 64<<20/512-2048-1 {
		t.Fatalf("new last LBA %d", newLast)
	}
	d := &disk{b: b}
	if err := Apply(d, ws); err != nil {
		t.Fatal(err)
	}
	got := read(t, d.b, 512)
	if !got.Primary || got.Partition(2).Last != newLast || got.AlternateLBA != 64<<20/512-1 || got.Partition(1).Last != tab.Partition(1).Last {
		t.Fatalf("after grow: %+v", got)
	}
	if again, _, err := got.Grow(2); err != nil || again != nil {
		t.Fatalf("a second grow: want nothing to do, got %d writes, %v", len(again), err)
	}
	img := filepath.Join(t.TempDir(), "grown.img")
	if err := os.WriteFile(img, d.b, 0o600); err != nil {
		t.Fatal(err)
	}
	dump, err := exec.Command("sfdisk", "--dump", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v: %s", err, dump)
	}
	if !strings.Contains(string(dump), fmt.Sprintf("last-lba: %d", 64<<20/512-34)) ||
		!strings.Contains(strings.Join(strings.Fields(string(dump)), " "), fmt.Sprintf("size= %d,", newLast-tab.Partition(2).First+1)) {
		t.Fatalf("sfdisk --dump:\n%s", dump)
	}
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Skip("sgdisk (Debian gdisk) is not installed: scripts/install-deps.sh")
	}
	out, err := exec.Command("sgdisk", "-v", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v: %v:\n%s", err, out)
	}
}

// TestGrowPowerCut applies every prefix of the writes, each write also
// torn at every sector boundary and in the middle of a sector, and checks
// that the disk reads as the old table or the new one, never as no table
// or a mix; with 512- and 4096-byte sectors.
func TestGrowPowerCut(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		t.Run(fmt.Sprint(ss), func(t *testing.T) {
			size := int64(8 << 20)
			if ss == 4096 {
				size = 16 << 20
			}
			orig := sfdiskImage(t, size, 2*size, ss, twoParts)
			old := read(t, orig, ss)
			ws, newLast, err := old.Grow(2)
			if err != nil {
				t.Fatal(err)
			}
			if w := old.ProtectiveMBR(orig[:ss]); w != nil {
				ws = append(ws, *w)
			}
			oldLast := old.Partition(2).Last
			cuts, olds, news := 0, 0, 0
			for k := 0; k <= len(ws); k++ {
				var tears [][]byte
				if k < len(ws) {
					w := ws[k].Data
					for n := 0; n < len(w); n += ss {
						tears = append(tears, w[:n], w[:min(n+ss/2, len(w))])
					}
				} else {
					tears = [][]byte{nil}
				}
				for _, torn := range tears {
					d := &disk{b: bytes.Clone(orig)}
					if err := Apply(d, ws[:k]); err != nil {
						t.Fatal(err)
					}
					if torn != nil {
						copy(d.b[ws[k].Off:], torn)
					}
					cuts++
					got, err := Read(bytes.NewReader(d.b), int64(len(d.b)), ss)
					if err != nil {
						t.Fatalf("cut after %d writes, write %d torn at %d bytes: %v", k, k, len(torn), err)
					}
					switch p := got.Partition(2); {
					case p.Last == oldLast && got.LastUsable == old.LastUsable:
						olds++
					case p.Last == newLast && got.AlternateLBA == uint64(len(d.b)/ss-1) || !got.Primary:
						news++
					default:
						t.Fatalf("cut after %d writes (torn %d): partition 2 ends at %d, last usable %d: neither the old nor the new table", k, len(torn), p.Last, got.LastUsable)
					}
					// The next boot grows again from what it reads, and ends grown.
					if got.Primary {
						ws2, last2, err := got.Grow(2)
						if err != nil || last2 != newLast {
							t.Fatalf("cut after %d writes: regrow: last %d, %v", k, last2, err)
						}
						if err := Apply(d, ws2); err != nil {
							t.Fatal(err)
						}
						if fin := read(t, d.b, ss); !fin.Primary || fin.Partition(2).Last != newLast {
							t.Fatalf("cut after %d writes: after the regrow: %+v", k, fin)
						}
					}
				}
			}
			t.Logf("sector size %d: %d writes, %d cuts: %d read the old table, %d the new", ss, len(ws), cuts, olds, news)
		})
	}
}

// TestReadRefuses: damaged or hostile tables are refused, a damaged
// primary falls back to the backup at the disk's end.
func TestReadRefuses(t *testing.T) {
	orig := sfdiskImage(t, 8<<20, 8<<20, 512, twoParts)
	for _, c := range []struct {
		name    string
		mutate  func(b []byte)
		primary bool // the backup is still read: no error, Primary false
	}{
		{"primary header crc", func(b []byte) { b[512+40]++ }, true},
		{"primary entries crc", func(b []byte) { b[1024+129]++ }, true},
		{"no signature anywhere", func(b []byte) { b[512] = 'X'; b[len(b)-512] = 'X' }, false},
	} {
		b := bytes.Clone(orig)
		c.mutate(b)
		tab, err := Read(bytes.NewReader(b), int64(len(b)), 512)
		switch {
		case c.primary && (err != nil || tab.Primary):
			t.Errorf("%s: want the backup read: %v", c.name, err)
		case !c.primary && err == nil:
			t.Errorf("%s: want an error", c.name)
		}
		if c.primary && err == nil {
			if _, _, err := tab.Grow(2); err == nil {
				t.Errorf("%s: grow from a backup table: want a refusal", c.name)
			}
		}
	}
	if _, err := Read(bytes.NewReader(orig), 2048, 512); err == nil {
		t.Error("a disk of 4 sectors: want an error")
	}
}

// FuzzRead: Read never panics and never reads outside its limits; a table
// it accepts can be grown, and the grown disk reads back as the new table.
func FuzzRead(f *testing.F) {
	seed := sfdiskImage(f, 1<<20, 1<<20, 512, "size=256KiB\nsize=128KiB\n")
	f.Add(seed)
	f.Add(seed[:64<<10])
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4<<20 {
			return
		}
		tab, err := Read(bytes.NewReader(b), int64(len(b)), 512)
		if err != nil {
			return
		}
		for _, e := range tab.Entries {
			ws, last, err := tab.Grow(e.Index + 1)
			if err != nil || ws == nil {
				continue
			}
			d := &disk{b: bytes.Clone(b)}
			if err := Apply(d, ws); err != nil {
				t.Fatal(err)
			}
			got, err := Read(bytes.NewReader(d.b), int64(len(d.b)), 512)
			if err != nil || got.Partition(e.Index+1).Last != last {
				t.Fatalf("grown table: %v", err)
			}
		}
	})
}

func TestGUIDString(t *testing.T) {
	g := [16]byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}
	if got, want := GUIDString(g), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"; got != want {
		t.Fatalf("got %s, want %s (the EFI system partition type)", got, want)
	}
}
