package device

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/tandem-ota/tandem/internal/bounded"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"golang.org/x/sys/unix"
)

// CmdlineKey is the kernel command line parameter that names the running group.
const CmdlineKey = "tandem.group"

// maxProcFile bounds what tandem reads from /proc files.
const maxProcFile = 1 << 20

// ActiveGroup returns the running group: from `tandem.group=` on the kernel
// command line, else the group whose system slot is the device behind the
// root mount. It never guesses.
func (d *Device) ActiveGroup() (string, error) {
	g, ok, err := d.cmdlineGroup()
	if err != nil || ok {
		return g, err
	}
	g, why := d.rootMountGroup()
	if g != "" {
		return g, nil
	}
	return "", fmt.Errorf("%w: no %s= on the kernel command line (%s) and %s",
		ErrNoActiveGroup, CmdlineKey, rootfs.Join(d.Root, "/proc/cmdline"), why)
}

func readSmall(p string) ([]byte, error) {
	return bounded.ReadFile(p, maxProcFile)
}

func (d *Device) cmdlineGroup() (string, bool, error) {
	p := rootfs.Join(d.Root, "/proc/cmdline")
	b, err := readSmall(p)
	if err != nil {
		return "", false, nil
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, CmdlineKey+"="); ok {
			if _, known := d.Config.Groups[v]; !known {
				return "", false, fmt.Errorf("%s: %s=%s names no configured boot group", p, CmdlineKey, v)
			}
			return v, true, nil
		}
	}
	return "", false, nil
}

// rootMountGroup matches the device of the root mount against the system
// slots. It returns the group, or "" and why not.
func (d *Device) rootMountGroup() (string, string) {
	mi := rootfs.Join(d.Root, "/proc/self/mountinfo")
	b, err := readSmall(mi)
	if err != nil {
		return "", fmt.Sprintf("the root mount is unknown (%v)", err)
	}
	majmin, source := rootMount(b)
	if majmin == "" {
		return "", fmt.Sprintf("%s has no root mount", mi)
	}
	for _, g := range d.Groups() {
		slotName, ok := d.Config.Groups[g].Slots["system"]
		if !ok {
			continue
		}
		if d.slotIs(d.Config.Slots[slotName], majmin) {
			return g, ""
		}
	}
	return "", fmt.Sprintf("the root file system (%s, device %s) is no group's system slot", source, majmin)
}

// rootMount returns "major:minor" and the source of the last "/" mount in mountinfo.
func rootMount(mountinfo []byte) (majmin, source string) {
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[4] != "/" {
			continue
		}
		for i := 6; i < len(f)-2; i++ {
			if f[i] == "-" {
				majmin, source = f[2], f[i+2]
				break
			}
		}
	}
	return majmin, source
}

func (d *Device) slotIs(s config.Slot, majmin string) bool {
	if s.Type != config.SlotBlock {
		return false
	}
	if s.Device != "" {
		return devNumber(rootfs.Join(d.Root, s.Device)) == majmin
	}
	// A partition number of the root disk: the root device is that
	// partition of that disk.
	sys := rootfs.Join(d.Root, "/sys/dev/block/"+majmin)
	part, err := os.ReadFile(sys + "/partition")
	if err != nil || strings.TrimSpace(string(part)) != strconv.Itoa(s.Partition) {
		return false
	}
	if d.Config.RootDisk == "" {
		return true
	}
	disk, err := os.ReadFile(sys + "/../dev")
	return err == nil && strings.TrimSpace(string(disk)) == devNumber(rootfs.Join(d.Root, d.Config.RootDisk))
}

// devNumber returns "major:minor" of a block device node, "" if it is none.
func devNumber(p string) string {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return ""
	}
	return fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
}
