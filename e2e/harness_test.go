// Package e2e holds tandem's real-boot tests (docs/testing.md, tier 3): disk
// images booted headless under QEMU (TCG) by the real boot loaders, driven
// over the serial console. They run only when TANDEM_E2E is set:
//
//	TANDEM_E2E=1 go test ./e2e -run Grub -v     (make test-e2e runs them all)
//
// TANDEM_E2E=ci runs the subset `make test` runs; TANDEM_E2E_WORK sets the
// work directory (default /var/tmp/tandem-e2e/run-<pid>, kept on failure with
// every console log); TANDEM_E2E_TIMEOUT_SCALE multiplies the timeouts.
package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/e2e/qemu"
)

// Cache is where downloaded packages and reusable builds live across runs.
const Cache = "/var/tmp/tandem-e2e"

var (
	workOnce   sync.Once
	workDir    string
	workErr    error
	tandemMu   sync.Mutex
	tandemBins = map[string]string{}
)

// needE2E skips unless TANDEM_E2E is set; with TANDEM_E2E=ci only tests
// marked ci run.
func needE2E(t *testing.T, ci bool) {
	t.Helper()
	v := os.Getenv("TANDEM_E2E")
	if v == "" {
		t.Skip("real-boot test: set TANDEM_E2E=1 (make test-e2e) to run it")
	}
	if v == "ci" && !ci {
		t.Skip("not in the CI subset (TANDEM_E2E=ci); TANDEM_E2E=1 runs it")
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if workDir != "" {
		if code == 0 && os.Getenv("TANDEM_E2E_KEEP") == "" {
			os.RemoveAll(workDir)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: work directory with console logs kept: %s\n", workDir)
		}
	}
	os.Exit(code)
}

// work returns the run's work directory.
func work(t *testing.T) string {
	t.Helper()
	workOnce.Do(func() {
		workDir = os.Getenv("TANDEM_E2E_WORK")
		if workDir == "" {
			workDir = filepath.Join(Cache, fmt.Sprintf("run-%d", os.Getpid()))
		}
		workErr = os.MkdirAll(workDir, 0o755)
	})
	if workErr != nil {
		t.Fatal(workErr)
	}
	return workDir
}

// tandemBinary builds the static tandem binary for goarch once.
func tandemBinary(t *testing.T, goarch string) string {
	t.Helper()
	tandemMu.Lock()
	defer tandemMu.Unlock()
	if p, ok := tandemBins[goarch]; ok {
		return p
	}
	out := filepath.Join(work(t), "tandem-"+goarch)
	// The build tags of the shipped binary (Makefile BUILD_TAGS): the guests
	// run what a device runs.
	cmd := exec.Command("go", "build", "-tags", "nethttpomithttp2", "-trimpath", "-ldflags", "-s -w", "-o", out, "../cmd/tandem")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build tandem for %s: %v\n%s", goarch, err, b)
	}
	tandemBins[goarch] = out
	return out
}

// hostTandem runs the host's tandem binary (bundle create, key generate).
func hostTandem(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(tandemBinary(t, runtime.GOARCH), args...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tandem %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}

// hostTandemOutput runs the host's tandem binary and returns its standard
// output.
func hostTandemOutput(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tandemBinary(t, runtime.GOARCH), args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tandem %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func timeoutScale() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("TANDEM_E2E_TIMEOUT_SCALE"), 64); err == nil && v > 0 {
		return v
	}
	return 1
}

// copySparse copies a disk image or firmware file.
func copySparse(t *testing.T, src, dst string) {
	t.Helper()
	if b, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s: %v: %s", src, dst, err, b)
	}
}

// Machine is one test device: a disk, its EFI variables (or none) and the
// QEMU running it.
type Machine struct {
	t    *testing.T
	Name string
	Log  string
	// StartArgs returns the QEMU binary and arguments (the disk is fixed).
	Binary string
	Args   []string
	VM     *qemu.VM
	// Disk is the machine's disk image on the host.
	Disk string
	// Boots counts the boot markers seen.
	Boots int
}

// Timeouts under TCG with one vCPU on a shared host (scaled by TANDEM_E2E_TIMEOUT_SCALE).
const (
	bootTimeout    = 240 * time.Second
	commandTimeout = 180 * time.Second
)

var bootedRe = regexp.MustCompile(`TANDEM-E2E booted group=(\S*) version=(\S*)\r?\n`)

// Start powers the machine on.
func (m *Machine) Start() {
	m.t.Helper()
	vm, err := qemu.Start(qemu.Options{Binary: m.Binary, Args: m.Args, Log: m.Log, Scale: timeoutScale()})
	if err != nil {
		m.t.Fatal(err)
	}
	m.VM = vm
	m.t.Cleanup(func() {
		if m.VM != nil {
			m.VM.Kill()
		}
	})
}

// Booted waits for the next boot marker and returns the group and version.
// ready: also wait until the command loop runs.
func (m *Machine) Booted(ready bool) (group, version string) {
	m.t.Helper()
	g, err := m.VM.Expect(bootedRe, bootTimeout)
	if err != nil {
		m.fatalf("no boot: %v", err)
	}
	m.Boots++
	m.t.Logf("%s: boot %d: group %s, version %s", m.Name, m.Boots, g[1], g[2])
	if ready {
		if err := m.VM.ExpectString("TANDEM-E2E ready", commandTimeout); err != nil {
			m.fatalf("command loop did not start: %v", err)
		}
	}
	return g[1], g[2]
}

func (m *Machine) fatalf(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("%s: %s\n(full console log: %s)", m.Name, fmt.Sprintf(format, args...), m.Log)
}

// Run runs a shell command in the guest and fails the test unless it exits 0.
func (m *Machine) Run(cmd string) string {
	m.t.Helper()
	out, rc, err := m.VM.Run(cmd, commandTimeout)
	if err != nil {
		m.fatalf("%v", err)
	}
	if rc != 0 {
		m.fatalf("%s: exit status %d:\n%s", cmd, rc, out)
	}
	return out
}

// RunRC runs a shell command in the guest and returns its output and status.
func (m *Machine) RunRC(cmd string) (string, int) {
	m.t.Helper()
	out, rc, err := m.VM.Run(cmd, commandTimeout)
	if err != nil {
		m.fatalf("%v", err)
	}
	return out, rc
}

// Info returns `tandem system info --json` of the guest.
func (m *Machine) Info() device.Info {
	m.t.Helper()
	out := m.Run("tandem system info --json")
	var info device.Info
	i := strings.Index(out, "{")
	if i < 0 {
		m.fatalf("system info printed no JSON:\n%s", out)
	}
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&info); err != nil {
		m.fatalf("system info: %v:\n%s", err, out)
	}
	return info
}

// Reboot reboots the guest (the boot loader runs again in the same QEMU).
func (m *Machine) Reboot() {
	m.t.Helper()
	if err := m.VM.Send("sync; reboot -f"); err != nil {
		m.fatalf("reboot: %v", err)
	}
}

// RebootSpare runs `tandem system reboot --spare` (try-next and reboot);
// the caller waits for the boot.
func (m *Machine) RebootSpare() {
	m.t.Helper()
	if err := m.VM.Send("tandem system reboot --spare"); err != nil {
		m.fatalf("reboot --spare: %v", err)
	}
}

// Cut kills QEMU (a power cut) and powers the machine on again.
func (m *Machine) Cut() { m.CutThen(nil) }

// CutThen kills QEMU, runs off (when not nil) while the power is off, e.g.
// to change the disk from the host, and powers the machine on again.
func (m *Machine) CutThen(off func()) {
	m.t.Helper()
	m.VM.Kill()
	m.t.Logf("%s: power cut", m.Name)
	if off != nil {
		off()
	}
	m.Start()
}

// expectState checks the boot state tandem reports.
func (m *Machine) expectState(active, def string) device.Info {
	m.t.Helper()
	info := m.Info()
	if info.Boot.ActiveGroup != active || info.Boot.DefaultGroup != def {
		m.fatalf("system info: active %s, default %s; want active %s, default %s", info.Boot.ActiveGroup, info.Boot.DefaultGroup, active, def)
	}
	return info
}

// needTool fails (CI) or skips when a host program is missing.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (scripts/install-deps.sh --e2e installs it): %v", name, err)
	}
}

func needFile(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing (scripts/install-deps.sh --e2e installs it): %v", p, err)
	}
}
