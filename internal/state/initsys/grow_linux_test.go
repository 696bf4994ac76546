package initsys_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/state"
)

// partDisk is a GPT disk image on a loop device: partition 1 the boot
// partition (4 MiB of ext4 holding the rig's /boot), partition 2 the data
// partition (fstype), made at size bytes and then enlarged to grown bytes,
// as a factory image flashed onto a larger disk.
type partDisk struct {
	img, loop string
	grown     int64
}

func (d partDisk) part(n int) string { return fmt.Sprintf("%sp%d", d.loop, n) }

func newPartDisk(t *testing.T, r *rig, fstype string, size, grown int64) partDisk {
	t.Helper()
	for _, tool := range []string{"sfdisk", "partx", "mkfs.ext4", "mkfs." + fstype} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is needed (scripts/install-deps.sh)", tool)
		}
	}
	d := partDisk{img: filepath.Join(filepath.Dir(r.img), "disk.img"), grown: grown}
	must(t, os.WriteFile(d.img, nil, 0o600))
	must(t, os.Truncate(d.img, size))
	sh(t, "label: gpt\nsize=4MiB, name=boot\nname=data\n", "sfdisk", "--quiet", d.img)
	d.loop = strings.TrimSpace(sh(t, "", "losetup", "-f", "--show", "-P", d.img))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", d.loop).Run() })
	if _, err := os.Stat(d.part(2)); err != nil {
		// A kernel without GPT support (CONFIG_EFI_PARTITION) finds no
		// partitions: add them with BLKPG, from the table read by partx.
		sh(t, "", "partx", "-a", d.loop)
	}
	sh(t, "", "mkfs.ext4", "-q", "-F", "-d", filepath.Join(r.root, "boot"), d.part(1))
	force := "-f"
	if fstype == "ext4" {
		force = "-F"
	}
	sh(t, "", "mkfs."+fstype, "-q", force, d.part(2))
	must(t, os.Truncate(d.img, grown))
	sh(t, "", "losetup", "-c", d.loop)
	must(t, os.RemoveAll(filepath.Join(r.root, "boot")))
	must(t, os.Mkdir(filepath.Join(r.root, "boot"), 0o755))
	return d
}

func sh(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// sectors reads the kernel's size of a block device, in 512-byte sectors.
func sectors(t *testing.T, dev string) int64 {
	t.Helper()
	b, err := os.ReadFile("/sys/class/block/" + filepath.Base(dev) + "/size")
	must(t, err)
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	must(t, err)
	return n
}

// fsBytes is the size of the file system on dev, as its own tools say.
func fsBytes(t *testing.T, fstype, dev string) int64 {
	t.Helper()
	var out, key string
	var unit int64
	switch fstype {
	case "ext4":
		out, key = sh(t, "", "dumpe2fs", "-h", dev), "Block count:"
		unit = 4096
		if strings.Contains(out, "Block size:               1024") {
			unit = 1024
		}
	case "xfs":
		out, key, unit = sh(t, "", "xfs_db", "-r", "-c", "sb 0", "-c", "p dblocks", dev), "dblocks =", 4096
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			must(t, err)
			return n * unit
		}
	}
	t.Fatalf("no %q in:\n%s", key, out)
	return 0
}

// hasCap reports whether this process has capability bit n in effect.
func hasCap(n uint) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			c, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && c&(1<<n) != 0
		}
	}
	return false
}

// capSysResource is CAP_SYS_RESOURCE, which ext4's online resize needs.
const capSysResource = 24

// TestInitGrow boots with grow = true on a factory image flashed onto a
// larger disk: tandem init grows the data partition (the last one) to the
// end of the disk, tells the kernel (BLKPG), grows its file system (ext4
// with resize2fs, xfs with xfs_growfs, both online), and the real tools
// accept the table (sgdisk -v, sfdisk --dump). The boot partition is found
// by its PARTUUID= in /etc/fstab (read from the GPT), then by its
// file-system UUID= (read from the superblock). A second boot has nothing
// to grow.
func TestInitGrow(t *testing.T) {
	for _, c := range []struct {
		fstype      string
		size, grown int64
	}{
		{"ext4", 32 << 20, 96 << 20},
		{"xfs", 340 << 20, 512 << 20}, // mkfs.xfs makes 300 MiB at least
	} {
		t.Run(c.fstype, func(t *testing.T) {
			r := newRig(t, false)
			d := newPartDisk(t, r, c.fstype, c.size, c.grown)
			testGrow(t, r, d, c.fstype)
		})
	}
}

func testGrow(t *testing.T, r *rig, d partDisk, fstype string) {
	r.setState(fmt.Sprintf("[data-partition]\ndevice = %q\ngrow = true\n", d.part(2)))
	partuuid := strings.TrimSpace(sh(t, "", "sfdisk", "--part-uuid", d.img, "1"))
	must(t, os.WriteFile(filepath.Join(r.root, "etc/fstab"), []byte("PARTUUID="+strings.ToLower(partuuid)+" /boot auto ro 0 2\n"), 0o644))
	before := sectors(t, d.part(2))
	fsBefore := fsBytes(t, fstype, d.part(2))
	// The partition starts at 5 MiB; the last usable sector leaves 33 for
	// the backup table; the end is rounded down to a whole MiB.
	end := (d.grown/512 - 33) / 2048 * 2048
	want := end - 5<<11

	s := r.boot("first boot on a larger disk")
	if s.Report == nil || s.Report.Status != state.BootOK || !s.NewOnData {
		t.Fatalf("first boot: want a boot with the state (boot partition by PARTUUID): %+v (report %+v)", s, s.Report)
	}
	acts := strings.Join(s.Report.Actions, "\n")
	if !strings.Contains(acts, fmt.Sprintf("grew partition 2 of %s to the end of the disk: %d MiB to %d MiB", d.loop, before>>11, want>>11)) {
		t.Fatalf("first boot: want the partition grown:\n%s", acts)
	}
	if got := sectors(t, d.part(2)); got != want {
		t.Fatalf("the kernel's size of partition 2: %d sectors (before %d), want %d", got, before, want)
	}
	dump := strings.Join(strings.Fields(sh(t, "", "sfdisk", "--dump", d.img)), " ")
	if !strings.Contains(dump, fmt.Sprintf("size= %d, type=", want)) || !strings.Contains(dump, fmt.Sprintf("last-lba: %d", d.grown/512-34)) {
		t.Fatalf("sfdisk --dump:\n%s", dump)
	}
	if _, err := exec.LookPath("sgdisk"); err == nil {
		if out := sh(t, "", "sgdisk", "-v", d.img); !strings.Contains(out, "No problems found") {
			t.Fatalf("sgdisk -v:\n%s", out)
		}
	} else {
		t.Log("sgdisk (Debian gdisk) not installed: not checked by it")
	}
	fsAfter := fsBytes(t, fstype, d.part(2))
	switch {
	case fstype == "ext4" && !hasCap(capSysResource):
		// ext4's online resize needs CAP_SYS_RESOURCE, which PID 1 has and
		// this test's container does not: the failure is reported, the boot goes on.
		if !strings.Contains(acts, "grow the ext4 file system on "+d.part(2)+" failed") || fsAfter != fsBefore {
			t.Fatalf("without CAP_SYS_RESOURCE: want the resize refused and reported:\n%s", acts)
		}
		t.Log("no CAP_SYS_RESOURCE here: ext4's online resize is refused by the kernel (PID 1 has it); xfs proves the file-system step")
	case !strings.Contains(acts, "grew the "+fstype+" file system on "+d.part(2)) || fsAfter < want*512-growSlack:
		t.Fatalf("the %s file system: %d bytes before, %d after, partition %d bytes:\n%s", fstype, fsBefore, fsAfter, want*512, acts)
	}

	uuid := strings.TrimSpace(sh(t, "", "blkid", "-o", "value", "-s", "UUID", d.part(1)))
	must(t, os.WriteFile(filepath.Join(r.root, "etc/fstab"), []byte("UUID="+uuid+" /boot auto ro 0 2\n"), 0o644))
	s = r.boot("second boot")
	if s.Report == nil || s.Report.Status != state.BootOK || strings.Contains(strings.Join(s.Report.Actions, "\n"), "grew partition") {
		t.Fatalf("second boot: want a boot with nothing to grow (boot partition by UUID): %+v (report %+v)", s, s.Report)
	}
}

// growSlack is initsys's margin under which a file system is not grown.
const growSlack = 4 << 20
