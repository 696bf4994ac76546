package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	diskimage "github.com/tandem-ota/tandem/internal/image"
)

// Power cuts during the boot loaders' own writes: GRUB's save_env of
// trial.grubenv and systemd-boot's rename of a counted entry. The cut is
// timed on the console (the firmware's "BdsDxe: starting", GRUB's debug
// line of each disk write) and on the disk itself: the host reads the
// watched sectors of the disk image (QEMU's cache=unsafe writes reach the
// host's page cache at once) and kills QEMU at their first change, which is
// the earliest moment after the boot loader's first write reached the disk.
// What a cut leaves is read from the host with mtools, grub-editenv and
// fsck.fat before the power comes back.

// espOffset is where the ESP (partition 1 of the x86 test disks) starts.
const espOffset = diskimage.MiB

// span is a byte range of the disk image; target marks the boot loader's
// file (or directory), as opposed to the FAT.
type span struct {
	off, n int64
	target bool
}

// espSpans returns the sectors of the FAT's first sector (the volume's
// dirty flag, FAT[1]) when fat is set, and of the clusters of each path on
// the ESP (mshowfat).
func espSpans(m *Machine, fat bool, paths ...string) []span {
	m.t.Helper()
	f, err := os.Open(m.Disk)
	if err != nil {
		m.t.Fatal(err)
	}
	defer f.Close()
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, espOffset); err != nil {
		m.t.Fatal(err)
	}
	bps := int64(binary.LittleEndian.Uint16(bs[11:]))
	spc, reserved, nfats := int64(bs[13]), int64(binary.LittleEndian.Uint16(bs[14:])), int64(bs[16])
	fatSize := int64(binary.LittleEndian.Uint32(bs[36:]))
	if bps == 0 || spc == 0 || fatSize == 0 {
		m.fatalf("the ESP has no FAT32 boot sector")
	}
	var spans []span
	if fat {
		spans = append(spans, span{espOffset + reserved*bps, bps, false})
	}
	data := espOffset + (reserved+nfats*fatSize)*bps
	for _, p := range paths {
		out, err := exec.Command("mshowfat", "-i", fmt.Sprintf("%s@@%d", m.Disk, espOffset), "::"+p).CombinedOutput()
		if err != nil {
			m.fatalf("mshowfat %s: %v: %s", p, err, out)
		}
		for _, r := range regexp.MustCompile(`<(\d+)(?:-(\d+))?>`).FindAllStringSubmatch(string(out), -1) {
			first, _ := strconv.ParseInt(r[1], 10, 64)
			last := first
			if r[2] != "" {
				last, _ = strconv.ParseInt(r[2], 10, 64)
			}
			spans = append(spans, span{data + (first-2)*spc*bps, (last - first + 1) * spc * bps, true})
		}
	}
	return spans
}

// bootCut says when to cut the power during the next boot: after the
// firmware starts the boot loader, after line on the console (nil: no
// line), after the first change of a watched span (write "any") or of a
// target span (write "target"), then after delay.
type bootCut struct {
	name  string
	line  *regexp.Regexp
	write string
	delay time.Duration
}

var firmwareStartRe = regexp.MustCompile(`BdsDxe: starting Boot`)

// cutBoot waits for the moment c names in the boot that is starting, cuts
// the power there, runs off while it is off and powers the machine on.
// spans is called once the firmware started the boot loader (the disk is
// quiet then). It returns how long after the firmware's start the cut came.
func (m *Machine) cutBoot(c bootCut, spans func() []span, off func()) time.Duration {
	m.t.Helper()
	if _, err := m.VM.Expect(firmwareStartRe, bootTimeout); err != nil {
		m.fatalf("cut %s: the firmware did not start the boot loader: %v", c.name, err)
	}
	start := time.Now()
	var w *diskWatch
	if c.write != "" {
		var err error
		if w, err = watchDisk(m.Disk, spans()); err != nil {
			m.t.Fatal(err)
		}
		defer w.close()
	}
	if c.line != nil {
		if _, err := m.VM.Expect(c.line, bootTimeout); err != nil {
			m.fatalf("cut %s: %v", c.name, err)
		}
	}
	if w != nil && !w.wait(c.write == "target", time.Duration(float64(bootTimeout)*timeoutScale())) {
		m.fatalf("cut %s: the boot loader wrote nothing to the watched sectors", c.name)
	}
	time.Sleep(c.delay)
	at := time.Since(start)
	m.t.Logf("%s: cut %s, %s after the firmware started the boot loader", m.Name, c.name, at.Round(time.Millisecond))
	m.CutThen(off)
	return at
}

// diskWatch polls spans of a disk image for a change.
type diskWatch struct {
	f     *os.File
	spans []span
	snap  [][]byte
}

func watchDisk(disk string, spans []span) (*diskWatch, error) {
	f, err := os.Open(disk)
	if err != nil {
		return nil, err
	}
	w := &diskWatch{f: f, spans: spans}
	for _, s := range spans {
		b := make([]byte, s.n)
		if _, err := f.ReadAt(b, s.off); err != nil {
			f.Close()
			return nil, err
		}
		w.snap = append(w.snap, b)
	}
	return w, nil
}

// wait reports whether a span (a target span, when target) changed before
// timeout. It polls every 50 µs: QEMU writes a request with one pwrite, and
// the boot loaders wait for each request before they issue the next.
func (w *diskWatch) wait(target bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 0, 64<<10)
	for time.Now().Before(deadline) {
		for i, s := range w.spans {
			if target && !s.target {
				continue
			}
			b := buf[:s.n]
			if _, err := w.f.ReadAt(b, s.off); err == nil && !bytes.Equal(b, w.snap[i]) {
				return true
			}
		}
		time.Sleep(50 * time.Microsecond)
	}
	return false
}

func (w *diskWatch) close() { w.f.Close() }

// espRead copies a file of the ESP out of the (powered off) disk image.
func espRead(m *Machine, p string) []byte {
	m.t.Helper()
	out := filepath.Join(m.t.TempDir(), filepath.Base(p))
	if b, err := exec.Command("mcopy", "-n", "-i", fmt.Sprintf("%s@@%d", m.Disk, espOffset), "::"+p, out).CombinedOutput(); err != nil {
		m.fatalf("mcopy %s: %v: %s", p, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		m.t.Fatal(err)
	}
	return b
}

// fsckESP runs fsck.fat -n on a copy of the ESP and fails on anything but
// the dirty flag a power cut leaves (and the boot sector backup differing
// in that flag).
func fsckESP(m *Machine) {
	m.t.Helper()
	esp := filepath.Join(m.t.TempDir(), "esp.img")
	if err := diskimage.ReadPartition(m.Disk, []diskimage.Partition{{Size: 64 * diskimage.MiB}}, 1, esp); err != nil {
		m.t.Fatal(err)
	}
	out, _ := exec.Command("fsck.fat", "-n", esp).CombinedOutput()
	harmless := regexp.MustCompile(`^(fsck\.fat \S+ \(.*\)|There are differences between boot sector and its backup\.|This is mostly harmless\. Differences: \(offset:original/backup\)|\s+65:0[01]/0[01]|\s+Not automatically fixing this\.|Dirty bit is set\. Fs was not properly unmounted.*|\s*Automatically removing dirty bit\.|Leaving filesystem unchanged\.|\S+: \d+ files, \d+/\d+ clusters|)$`)
	for _, l := range strings.Split(string(out), "\n") {
		if !harmless.MatchString(l) {
			m.fatalf("fsck.fat -n of the ESP after the cut: %q\n%s", l, out)
		}
	}
}

// trialCycle tries the spare group (start: sets the trial and reboots),
// cuts the power as c says during the boot loader's count of the first
// attempt, and checks with left (run while the power is off; it returns
// the attempts left on the disk: attempts, or attempts-1 once counted)
// that the count was made or not, never anything else. Then the trial
// boots exactly left more times and the committed group boots (or, with
// commit, the trial commits and stays).
func trialCycle(m *Machine, start func(), c bootCut, spans func() []span, left func(s, def string) int, commit bool) {
	m.t.Helper()
	def := checkCommitted(m)
	s := spare(def)
	start()
	var n int
	m.cutBoot(c, spans, func() { n = left(s, def) })
	m.t.Logf("%s: after the cut %s: %d attempts left on the disk", m.Name, c.name, n)
	if n < 1 {
		m.fatalf("cut %s: %d attempts left", c.name, n)
	}
	if g, _ := m.Booted(true); g != s {
		m.fatalf("cut %s: group %s booted, want the trial %s (%d attempts left)", c.name, g, s, n)
	}
	m.expectState(s, def)
	if commit {
		m.Run("tandem system commit")
		m.Reboot()
		if g, _ := m.Booted(true); g != s {
			m.fatalf("cut %s: committed %s, group %s booted", c.name, s, g)
		}
		checkCommitted(m)
		return
	}
	for boots := 1; ; boots++ {
		m.Reboot()
		g, _ := m.Booted(true)
		if g == def {
			if boots != n {
				m.fatalf("cut %s: the trial booted %d times after the cut, want the %d attempts left", c.name, boots, n)
			}
			break
		}
		if g != s || boots > n {
			m.fatalf("cut %s: boot %d after the cut started %s (%d attempts were left)", c.name, boots, g, n)
		}
	}
	info := m.expectState(def, def)
	if info.LastUpdate == nil || info.LastUpdate.Status != "rolled-back" || info.LastUpdate.Group != s {
		m.fatalf("cut %s: after the attempts: last update %+v, want rolled-back of %s", c.name, info.LastUpdate, s)
	}
}
