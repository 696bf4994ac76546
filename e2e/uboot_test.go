package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/bootenv/ubootenv"
	"github.com/tandem-ota/tandem/internal/e2e/image"
	diskimage "github.com/tandem-ota/tandem/internal/image"
	"github.com/tandem-ota/tandem/internal/sim"
)

// arm64Args are the arguments of QEMU's arm64 virt machine under TCG with
// Debian's qemu_arm64 U-Boot as its firmware, one virtio disk, the serial
// console on stdio and the i6300esb watchdog (on virt's PCIe bus) wired to
// reset the machine. U-Boot keeps its own environment in the second flash
// bank, which has no backing file here: tandem does not use it.
func arm64Args(disk string) []string {
	return []string{
		"-machine", "virt,accel=tcg", "-cpu", "cortex-a57", "-smp", "1", "-m", "512",
		"-nodefaults", "-display", "none", "-monitor", "none", "-serial", "stdio", "-net", "none",
		"-bios", image.UBootQEMU,
		"-drive", "if=none,id=disk0,format=raw,cache=unsafe,file=" + disk,
		"-device", "virtio-blk-pci,drive=disk0",
		"-device", "i6300esb", "-action", "watchdog=reset",
	}
}

func needArm64Tools(t *testing.T) {
	t.Helper()
	for _, p := range []string{"qemu-system-aarch64", "mkimage", "mkfs.vfat", "mcopy", "sfdisk"} {
		needTool(t, p)
	}
	needFile(t, image.UBootQEMU)
}

// arm64Env is the built arm64 image set: the factory disk and the signed
// bundles on its data partition (/data/bundles/<name>.tandem).
type arm64Env struct {
	name string
	dir  string
	disk string
}

var (
	arm64Mu   sync.Mutex
	arm64Envs = map[string]*arm64Env{}
)

// Attempts of the arm64 images: a trial that never commits boots twice.
const arm64Attempts = 2

func arm64Build(t *testing.T) *arm64Env {
	t.Helper()
	return arm64BuildVariant(t, "uboot", nil)
}

// arm64BuildVariant builds (once per name) the arm64 images, booting
// through tandem init with a blank data partition when st is set.
func arm64BuildVariant(t *testing.T, name string, st *image.State) *arm64Env {
	t.Helper()
	return arm64BuildWith(t, name, "", st)
}

// arm64BuildWith builds (once per name) the arm64 images of a boot loader
// integration ("" is tandem's own boot.cmd, else image.LoaderMenderUBoot or
// image.LoaderRAUCUBoot).
func arm64BuildWith(t *testing.T, name, loader string, st *image.State) *arm64Env {
	t.Helper()
	needArm64Tools(t)
	for _, p := range []string{"mkfs.ext4", "apt-get", "dpkg-deb"} {
		needTool(t, p)
	}
	arm64Mu.Lock()
	defer arm64Mu.Unlock()
	if e, ok := arm64Envs[name]; ok {
		if e == nil {
			t.Fatalf("the arm64 %s images failed to build in an earlier test", name)
		}
		return e
	}
	arm64Envs[name] = nil
	dir := filepath.Join(work(t), "arm64-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hostTandem(t, dir, "key", "generate", "release")
	a := &image.Arm64{Work: dir, Cache: Cache, Tandem: tandemBinary(t, "arm64"),
		PubKey: filepath.Join(dir, "release.pub"), Key: filepath.Join(dir, "release.key"), Attempts: arm64Attempts, State: st, Loader: loader}
	if err := a.Prepare(); err != nil {
		t.Fatal(err)
	}
	bundles := systemBundles(t, dir, image.Arm64Compatible, a.System)
	// The factory disk comes from the image builder (tandem image build);
	// with state its data partition is blank.
	e := &arm64Env{name: name, dir: dir, disk: filepath.Join(dir, "factory.img")}
	if _, err := a.Factory(e.disk, bundles); err != nil {
		t.Fatal(err)
	}
	if st != nil {
		growDisk(t, e.disk)
	}
	arm64Envs[name] = e
	return e
}

// machine makes a new device from the factory image and powers it on.
func (e *arm64Env) machine(t *testing.T, name string) *Machine {
	t.Helper()
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.img")
	copySparse(t, e.disk, disk)
	m := &Machine{t: t, Name: e.name + "/" + name, Log: filepath.Join(dir, "console.log"),
		Binary: "qemu-system-aarch64", Args: arm64Args(disk), Disk: disk}
	m.Start()
	return m
}

// TestUBootABCycle runs cases a-c on one device booted by the real U-Boot.
func TestUBootABCycle(t *testing.T) {
	needE2E(t, true)
	start := time.Now()
	e := arm64Build(t)
	t.Logf("arm64 images built in %s", time.Since(start).Round(time.Second))
	m := e.machine(t, "abc")
	caseFirstBoot(m)
	caseInstallCommit(m)
	caseRollback(m)
	t.Logf("U-Boot cases a-c: %s", time.Since(start).Round(time.Second))
}

// TestUBootFailedUpdate runs case d: a system that panics (panic=1 reboots
// through PSCI), and one that hangs until the i6300esb watchdog resets the
// machine, are each tried arm64Attempts times, then the committed group boots.
func TestUBootFailedUpdate(t *testing.T) {
	needE2E(t, false)
	start := time.Now()
	m := arm64Build(t).machine(t, "failed")
	caseFirstBoot(m)
	caseFailedUpdate(m, "v4-exit", arm64Attempts)
	caseFailedUpdate(m, "v4-hang", arm64Attempts)
	t.Logf("U-Boot case d: %s", time.Since(start).Round(time.Second))
}

// TestUBootPowerCuts runs case e: power cuts during an install, at each
// write of try-next (state.json, then the env copy) and of commit (the env
// copy, then state.json), and while U-Boot itself counts a trial down.
func TestUBootPowerCuts(t *testing.T) {
	needE2E(t, false)
	start := time.Now()
	m := arm64Build(t).machine(t, "cuts")
	caseFirstBoot(m)
	caseCutInstall(m, "v2", "2.0.0")
	caseCutTryNext(m, []string{"rename:1", "rename:2", "syncdir:2"})
	caseCutCommit(m, []string{"rename:1", "syncdir:1", "rename:2"}, false)
	caseCutUBootCountdown(m)
	t.Logf("U-Boot case e: %s", time.Since(start).Round(time.Second))
}

// ubootWriteRe is what the script prints just before its fatwrite: the
// crc32 line of the copy it is about to write (scratch RAM at
// kernel_addr_r + 0x10100 with env-size 0x4000).
var ubootWriteRe = regexp.MustCompile(`crc32 for 40410105 \.\.\. `)

// caseCutUBootCountdown (e): cut the power while U-Boot counts the first
// trial attempt down, once as its fatwrite starts and once just after it:
// the next boot must start the trial (the count went down, or the copy
// being written was torn and the current one still holds the old count),
// tandem must see it on trial, and a commit completes it.
func caseCutUBootCountdown(m *Machine) {
	m.t.Helper()
	for _, after := range []bool{false, true} {
		def := checkCommitted(m)
		s := spare(def)
		m.RebootSpare()
		marker := ubootWriteRe
		if after {
			marker = regexp.MustCompile(`tandem: trying group ` + s)
		}
		if _, err := m.VM.Expect(marker, bootTimeout); err != nil {
			m.fatalf("u-boot count-down: %v", err)
		}
		m.t.Logf("%s: cut while U-Boot counts down (after the write: %v)", m.Name, after)
		m.Cut()
		if g, _ := m.Booted(true); g != s {
			m.fatalf("after a cut during U-Boot's count-down: group %s booted, want the trial %s", g, s)
		}
		info := m.expectState(s, def)
		if !info.Boot.CommitPending {
			m.fatalf("after a cut during U-Boot's count-down: commit pending %v", info.Boot.CommitPending)
		}
		m.Run("tandem system commit")
		if checkCommitted(m) != s {
			m.fatalf("commit after the count-down cut did not commit %s", s)
		}
	}
}

// ubootCopy is one of tandem's env files for TestUBootScriptMatchesSim.
type ubootCopy struct {
	missing bool
	flag    byte
	vars    string // "name=value" lines
	torn    bool   // one data byte changed: bad CRC
	long    bool   // one byte too many
}

func (c ubootCopy) image(t *testing.T) []byte {
	t.Helper()
	env := &ubootenv.Env{}
	for _, kv := range regexp.MustCompile(`(\w+)=(\w*)`).FindAllStringSubmatch(c.vars, -1) {
		if err := env.Set(kv[1], kv[2]); err != nil {
			t.Fatal(err)
		}
	}
	img, err := ubootenv.Encode(env, image.Arm64EnvSize, true, c.flag)
	if err != nil {
		t.Fatal(err)
	}
	if c.torn {
		img[100] ^= 0x55
	}
	if c.long {
		img = append(img, 0)
	}
	return img
}

// TestUBootScriptMatchesSim runs boot.cmd in the real U-Boot on pairs of env
// files (flag wrap, torn and missing copies, a trial to count down) and
// checks that the simulator's U-Boot model boots the same group and leaves
// the same two files. tandem_boot only prints the group here: no kernel.
func TestUBootScriptMatchesSim(t *testing.T) {
	needE2E(t, true)
	needArm64Tools(t)
	const (
		defA  = "tandem_default=a"
		defB  = "tandem_default=b"
		tryB2 = "tandem_default=a tandem_trial=b tandem_trial_left=2"
		tryB1 = "tandem_default=a tandem_trial=b tandem_trial_left=1"
	)
	cases := []struct {
		name   string
		c0, c1 ubootCopy
		group  string
	}{
		{"flag wrap: 0 beats 255", ubootCopy{flag: 255, vars: tryB2}, ubootCopy{flag: 0, vars: defB}, "b"},
		{"flag wrap, other order", ubootCopy{flag: 0, vars: defB}, ubootCopy{flag: 255, vars: tryB2}, "b"},
		{"torn newer copy", ubootCopy{flag: 5, vars: tryB2, torn: true}, ubootCopy{flag: 4, vars: defA}, "a"},
		{"trial in the newer second copy", ubootCopy{flag: 6, vars: defA}, ubootCopy{flag: 7, vars: tryB1}, "b"},
		{"trial in the first copy", ubootCopy{flag: 1, vars: tryB2}, ubootCopy{flag: 0, vars: defA}, "b"},
		{"flag 255 counts into flag 0", ubootCopy{flag: 255, vars: tryB2}, ubootCopy{flag: 254, vars: defA}, "b"},
		{"target copy missing", ubootCopy{flag: 6, vars: tryB1}, ubootCopy{missing: true}, "a"},
		{"target copy too long", ubootCopy{flag: 9, vars: defB, long: true}, ubootCopy{flag: 2, vars: tryB2}, "a"},
		{"both torn", ubootCopy{flag: 6, vars: defB, torn: true}, ubootCopy{flag: 6, vars: defB, torn: true}, "a"},
		{"equal flags", ubootCopy{flag: 3, vars: defB}, ubootCopy{flag: 3, vars: defA}, "b"},
	}
	dir := filepath.Join(work(t), "uboot-script")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	scr := filepath.Join(dir, "boot.scr")
	if err := image.BootScript(scr, `echo "UBOOT-E2E booting group=${tandem_group}"`); err != nil {
		t.Fatal(err)
	}
	names := []string{"uboot.env", "uboot-redund.env"}
	bootedRe := regexp.MustCompile(`UBOOT-E2E booting group=(\w+)`)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cdir := filepath.Join(dir, strconv.Itoa(i))
			tree := filepath.Join(cdir, "tree")
			simDir := filepath.Join(cdir, "sim")
			if err := sim.New(simDir, sim.Options{BootFlow: "uboot"}); err != nil {
				t.Fatal(err)
			}
			for j, c := range []ubootCopy{tc.c0, tc.c1} {
				simFile := filepath.Join(simDir, "boot", names[j])
				if c.missing {
					if err := os.Remove(simFile); err != nil {
						t.Fatal(err)
					}
					continue
				}
				for _, p := range []string{filepath.Join(tree, names[j]), simFile} {
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, c.image(t), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := copyFileT(scr, filepath.Join(tree, "boot.scr")); err != nil {
				t.Fatal(err)
			}
			boot, disk := filepath.Join(cdir, "boot.vfat"), filepath.Join(cdir, "disk.img")
			if err := diskimage.VFAT(boot, 64*diskimage.MiB, "BOOT", tree); err != nil {
				t.Fatal(err)
			}
			parts := []diskimage.Partition{{Label: "boot", Type: diskimage.TypeESP, Size: 64 * diskimage.MiB, Image: boot}}
			if err := diskimage.Disk(disk, parts); err != nil {
				t.Fatal(err)
			}
			m := &Machine{t: t, Name: "uboot-script/" + strconv.Itoa(i), Log: filepath.Join(cdir, "console.log"),
				Binary: "qemu-system-aarch64", Args: arm64Args(disk)}
			m.Start()
			g, err := m.VM.Expect(bootedRe, 120*time.Second)
			if err != nil {
				m.fatalf("%v", err)
			}
			m.VM.Kill()
			m.VM = nil

			simGroup, notes, err := sim.Reboot(simDir, false)
			if err != nil {
				t.Fatal(err)
			}
			if g[1] != tc.group || simGroup != tc.group {
				m.fatalf("U-Boot booted %s, the simulator %s (notes %q); want %s", g[1], simGroup, notes, tc.group)
			}
			if err := diskimage.ReadPartition(disk, parts, 1, boot); err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				real := mtoolsRead(t, boot, n)
				simmed, _ := os.ReadFile(filepath.Join(simDir, "boot", n))
				if !sameEnvFile(real, simmed) {
					m.fatalf("%s after the boot differs: U-Boot left %s, the simulator %s", n, describeEnv(real), describeEnv(simmed))
				}
			}
		})
	}
}

func copyFileT(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// mtoolsRead reads a file from a FAT image (nil if it does not exist).
func mtoolsRead(t *testing.T, img, name string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	if err := runHost("mcopy", "-n", "-i", img, "::/"+name, out); err != nil {
		return nil
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameEnvFile compares two env files as U-Boot and tandem read them: the
// same bytes, or both valid with the same flag and variables (padding may
// differ between writers).
func sameEnvFile(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if len(a) != len(b) {
		return false
	}
	_, _, errA := ubootenv.Decode(a, true)
	_, _, errB := ubootenv.Decode(b, true)
	return errA == nil && errB == nil && describeEnv(a) == describeEnv(b)
}

func describeEnv(b []byte) string {
	if b == nil {
		return "no file"
	}
	env, flag, err := ubootenv.Decode(b, true)
	if err != nil {
		return fmt.Sprintf("%d bytes, %v", len(b), err)
	}
	s := fmt.Sprintf("flag %d:", flag)
	for _, n := range env.Names() {
		v, _ := env.Get(n)
		s += " " + n + "=" + v
	}
	return s
}

func runHost(name string, args ...string) error {
	if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, b)
	}
	return nil
}
