package initsys_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/state"
	"github.com/tandem-ota/tandem/internal/state/initsys"
	"golang.org/x/sys/unix"
)

// Roles of the test binary when re-executed (see TestMain).
const (
	roleEnv  = "TANDEM_INITSYS_TEST_ROLE"
	rootEnv  = "TANDEM_INITSYS_TEST_ROOT"
	roleInit = "init"
)

func TestMain(m *testing.M) {
	switch {
	case filepath.Base(os.Args[0]) == "init" && os.Getenv(roleEnv) == roleInit:
		realInit()
	case os.Getenv(roleEnv) == roleInit:
		os.Exit(runInit(os.Getenv(rootEnv)))
	}
	os.Exit(m.Run())
}

// runInit is the init under test, in a private mount namespace: it mounts
// /proc under root with a kernel command line that names group a (what a
// boot loader would give), then runs the sequence, which mounts /sys, /dev
// and /run itself and execs root's /sbin/init (this binary, see realInit).
func runInit(root string) int {
	if err := unix.Mount("proc", root+"/proc", "proc", 0, ""); err != nil {
		fmt.Println("mount proc:", err)
		return 1
	}
	if err := unix.Mount(root+"/cmdline", root+"/proc/cmdline", "", unix.MS_BIND, ""); err != nil {
		fmt.Println("bind cmdline:", err)
		return 1
	}
	err := initsys.Run(initsys.Options{Root: root, KernelFS: true, ToolRoot: "/", Log: os.Stderr})
	fmt.Println("init returned:", err)
	return 1
}

// seen is what the real init saw, printed as JSON.
type seen struct {
	PID        int
	MachineID  string
	AppFiles   []string
	ProbeKept  bool
	RootFS     string
	Report     *state.BootReport
	NewOnData  bool
	WriteError string `json:",omitempty"`
}

// realInit stands for the system's init after the switch: it reports what
// the booted system looks like, and writes a file to a persistent path and
// to a discarded one.
func realInit() {
	var s seen
	s.PID = os.Getpid()
	b, _ := os.ReadFile("/etc/machine-id")
	s.MachineID = strings.TrimSpace(string(b))
	ents, _ := os.ReadDir("/var/lib/app")
	for _, e := range ents {
		s.AppFiles = append(s.AppFiles, e.Name())
	}
	_, err := os.Stat("/etc/probe")
	s.ProbeKept = err == nil
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(mi), "\n") {
			f := strings.Fields(l)
			if len(f) > 4 && f[4] == "/" {
				if i := strings.Index(l, " - "); i >= 0 {
					s.RootFS = strings.Fields(l[i+3:])[0]
				}
			}
		}
	}
	if b, err := os.ReadFile(state.BootReportPath); err == nil {
		s.Report = &state.BootReport{}
		_ = json.Unmarshal(b, s.Report)
	}
	for _, p := range []string{"/etc/probe", "/var/lib/app/new"} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			s.WriteError += err.Error() + "; "
		}
	}
	gens, _ := filepath.Glob("/run/tandem/data/tandem-state/gen/*/var/lib/app/new")
	s.NewOnData = len(gens) == 1
	out, _ := json.Marshal(s)
	fmt.Printf("REAL-INIT %s\n", out)
	os.Exit(0)
}

// needRoot skips a test that needs root, or fails it under CI (which runs as root).
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (real mounts in a private mount namespace); CI runs as root")
	}
	t.Skip("needs root: real mounts in a private mount namespace")
}

// TestInitRealMounts boots a tiny root with tandem init for real: a
// file-backed ext4 image on a loop device is the data partition. It checks
// the data partition is mounted and its paths bound and seeded from the
// image, a write outside them goes to the tmpfs upper (gone at the next
// boot) while one inside them stays, the real init is exec'd after the
// switch; then that a corrupted data partition and a missing one still boot
// the real init, with the failure in the boot report.
func TestInitRealMounts(t *testing.T) {
	r := newRig(t, true)
	img, loop, root, writeState, boot := r.img, r.loop, r.root, r.setState, r.boot
	writeState(fmt.Sprintf("[data-partition]\ndevice = %q\n", loop))

	s := boot("first boot")
	if s.Report == nil || s.Report.Status != state.BootOK || s.RootFS != "overlay" {
		t.Fatalf("first boot: report %+v, root fs %q", s.Report, s.RootFS)
	}
	if s.MachineID != "f00d" || strings.Join(s.AppFiles, ",") != "seed.txt" || s.WriteError != "" || !s.NewOnData {
		t.Fatalf("first boot: persistent paths not seeded and bound: %+v", s)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/probe")); err == nil {
		t.Fatal("a write to a non-persistent path reached the read-only system (lower) instead of the tmpfs upper")
	}

	// The second boot finds the data partition by its file-system label
	// (read from the ext4 superblock: a loop device has no PARTNAME).
	writeState("[data-partition]\nlabel = \"tdata\"\n")
	s = boot("second boot")
	if s.ProbeKept || strings.Join(s.AppFiles, ",") != "new,seed.txt" || s.Report.Status != state.BootOK {
		t.Fatalf("second boot: want /etc/probe discarded and /var/lib/app/new kept: %+v", s)
	}

	// Issue 12: a corrupted data partition (zeroed superblock) still boots,
	// overlay discarded, the failure reported.
	writeState(fmt.Sprintf("[data-partition]\ndevice = %q\n", loop))
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt(make([]byte, 64<<10), 0)
	must(t, err)
	must(t, f.Close())
	must(t, exec.Command("blockdev", "--flushbufs", loop).Run())
	s = boot("corrupted data partition")
	if s.Report == nil || s.Report.Status != state.BootDegraded || s.RootFS != "overlay" || s.MachineID != "f00d" || len(s.AppFiles) != 1 {
		t.Fatalf("corrupted data partition: want a degraded boot with the image's files: %+v (report %+v)", s, s.Report)
	}
	t.Logf("corrupted: %s", s.Report.Error)

	// A data partition that is not there.
	writeState("[data-partition]\ndevice = \"/dev/tandem-no-such-disk\"\n")
	s = boot("missing data partition")
	if s.Report == nil || s.Report.Status != state.BootDegraded || !strings.Contains(s.Report.Error, "tandem-no-such-disk") {
		t.Fatalf("missing data partition: %+v (report %+v)", s, s.Report)
	}
}

// rig is a tiny root file system to boot with tandem init, and a data
// partition image on a loop device.
type rig struct {
	img, loop, root string
	setState        func(dataTable string)
	boot            func(name string) seen
}

// newRig builds the root (group a booting, the image's /etc/machine-id and
// /var/lib/app, this test binary as /sbin/init) and a 32 MiB data
// partition image, ext4 labelled "tdata" when mkfs, else zeroed.
func newRig(t *testing.T, mkfs bool) *rig {
	needRoot(t)
	dir := t.TempDir()
	r := &rig{img: filepath.Join(dir, "data.img"), root: filepath.Join(dir, "root")}
	must(t, os.WriteFile(r.img, nil, 0o600))
	must(t, os.Truncate(r.img, 32<<20))
	if mkfs {
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "tdata", r.img).CombinedOutput(); err != nil {
			t.Skipf("mkfs.ext4 is needed to make the data partition image: %v: %s", err, out)
		}
	}
	out, err := exec.Command("losetup", "-f", "--show", r.img).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device here (losetup: %v: %s): this test needs one for the data partition", err, out)
	}
	r.loop = strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", r.loop).Run() })

	stateToml := filepath.Join(dir, "10-test.toml")
	r.setState = func(dataTable string) {
		t.Helper()
		c := dataTable + "\n[persist.\"/etc/machine-id\"]\ntype = \"file\"\n\n[persist.\"/var/lib/app\"]\n"
		must(t, os.WriteFile(filepath.Join(r.root, state.ConfigDir, "10-test.toml"), []byte(c), 0o644))
	}
	must(t, os.WriteFile(stateToml, []byte("overlay = \"discard\"\n"), 0o644))
	if err := sim.New(r.root, sim.Options{BootFlow: "grub", SlotSize: 64 << 10, State: []string{stateToml}}); err != nil {
		t.Fatal(err)
	}
	// A real device, not a simulated one (without the simulator's boot
	// state: its marker, data folder and the links of its first boot);
	// then the image's content.
	for _, p := range []string{sim.DataFolder, sim.ImageFolder, ".tandem-sim.json", "etc/machine-id", "var/lib/app", "var/lib/tandem"} {
		must(t, os.RemoveAll(filepath.Join(r.root, p)))
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "sbin", "etc", "var/lib/app"} {
		must(t, os.MkdirAll(filepath.Join(r.root, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(r.root, "etc/machine-id"), []byte("f00d\n"), 0o444))
	must(t, os.WriteFile(filepath.Join(r.root, "var/lib/app/seed.txt"), []byte("from the image"), 0o644))
	must(t, os.WriteFile(filepath.Join(r.root, "cmdline"), []byte("console=ttyS0 tandem.group=a\n"), 0o644))
	self, err := os.ReadFile("/proc/self/exe")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(r.root, "sbin/init"), self, 0o755))
	copyLibs(t, r.root)

	r.boot = func(name string) seen {
		t.Helper()
		cmd := exec.Command("/proc/self/exe", "-test.run=^$")
		cmd.Env = append(os.Environ(), roleEnv+"="+roleInit, rootEnv+"="+r.root)
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		t.Logf("%s: log:\n%s", name, stderr.String())
		var s seen
		for _, l := range strings.Split(string(out), "\n") {
			if j, ok := strings.CutPrefix(l, "REAL-INIT "); ok {
				must(t, json.Unmarshal([]byte(j), &s))
				return s
			}
		}
		t.Fatalf("%s: the real init did not run (%v):\n%s", name, err, out)
		return s
	}
	return r
}

// TestInitBlankPersist: a blank data partition with filesystem = "ext4"
// gets its file system at the first boot; with overlay = "persist" a write
// outside the persistent paths survives the next boot too (its upper is on
// the data partition).
func TestInitBlankPersist(t *testing.T) {
	r := newRig(t, false)
	r.setState(fmt.Sprintf("overlay = \"persist\"\n[data-partition]\ndevice = %q\nfilesystem = \"ext4\"\n", r.loop))
	s := r.boot("first boot, blank partition")
	if s.Report == nil || s.Report.Status != state.BootOK || s.Report.Overlay != state.OverlayPersist || !strings.Contains(strings.Join(s.Report.Actions, "\n"), "mkfs ext4") {
		t.Fatalf("first boot: want mkfs and a persisted overlay: %+v (report %+v)", s, s.Report)
	}
	if s.MachineID != "f00d" || !s.NewOnData {
		t.Fatalf("first boot: persistent paths not seeded and bound: %+v", s)
	}
	s = r.boot("second boot")
	if !s.ProbeKept || strings.Join(s.AppFiles, ",") != "new,seed.txt" || strings.Contains(strings.Join(s.Report.Actions, "\n"), "mkfs") {
		t.Fatalf("second boot: want /etc/probe kept (persisted overlay), no mkfs: %+v (report %+v)", s, s.Report)
	}
	if _, err := os.Stat(filepath.Join(r.root, "etc/probe")); err == nil {
		t.Fatal("a write to the overlay reached the read-only system (lower)")
	}
}

// TestInitBootDirFromFstab: the boot loader's state is on its own
// partition, which /etc/fstab names by label; tandem init mounts it
// read-only to read the default group (and detaches it again), so the boot
// is not degraded.
func TestInitBootDirFromFstab(t *testing.T) {
	r := newRig(t, true)
	r.setState(fmt.Sprintf("[data-partition]\ndevice = %q\n", r.loop))
	bootImg := filepath.Join(filepath.Dir(r.img), "boot.img")
	must(t, os.WriteFile(bootImg, nil, 0o600))
	must(t, os.Truncate(bootImg, 8<<20))
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "tboot", "-d", filepath.Join(r.root, "boot"), bootImg).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4 -d: %v: %s", err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", bootImg).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s", err, out)
	}
	bootLoop := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", bootLoop).Run() })
	must(t, os.RemoveAll(filepath.Join(r.root, "boot")))
	must(t, os.Mkdir(filepath.Join(r.root, "boot"), 0o755))
	must(t, os.WriteFile(filepath.Join(r.root, "etc/fstab"), []byte("# test\nLABEL=tboot /boot auto ro 0 2\n"), 0o644))

	s := r.boot("boot partition from fstab")
	if s.Report == nil || s.Report.Status != state.BootOK || !s.NewOnData {
		t.Fatalf("want a boot with the state, the default group read from the boot partition: %+v (report %+v)", s, s.Report)
	}
	must(t, os.WriteFile(filepath.Join(r.root, "etc/fstab"), []byte("UUID=1234 /boot auto ro 0 2\n"), 0o644))
	s = r.boot("boot partition by UUID")
	if s.Report == nil || s.Report.Status != state.BootDegraded || !strings.Contains(s.Report.Error, "default group") {
		t.Fatalf("an unresolvable boot partition: want a degraded boot: %+v (report %+v)", s, s.Report)
	}
}

// copyLibs copies the shared libraries of this test binary (when it is
// dynamically linked) into root, so that it runs there as the real init.
func copyLibs(t *testing.T, root string) {
	t.Helper()
	exe, err := os.Executable()
	must(t, err)
	out, err := exec.Command("ldd", exe).Output()
	if err != nil {
		return // static ("not a dynamic executable"), or no ldd: try as is
	}
	for _, f := range strings.Fields(string(out)) {
		if !strings.HasPrefix(f, "/") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Skipf("the test binary is dynamically linked and %s cannot be copied into the test root: %v", f, err)
		}
		must(t, os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755))
		must(t, os.WriteFile(filepath.Join(root, f), b, 0o755))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
