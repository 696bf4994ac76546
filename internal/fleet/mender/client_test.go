package mender_test

// Tests with the real Mender tools: Debian's mender-artifact builds the
// artifacts and Debian's mender-client runs `mender install`, `commit` and
// `rollback` in standalone mode against a simulated device. The client
// hard-codes /usr/share/mender/modules/v3 and /etc/mender, so it runs in a
// private mount namespace (unshare -m, root) with scratch directories bound
// over those paths; the module is the shipped wrapper
// integrations/mender/tandem, which runs this test binary as tandem.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/cli"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// asTandem makes the test binary run as tandem (the module wrapper execs it).
const asTandem = "TANDEM_TEST_AS_TANDEM"

func TestMain(m *testing.M) {
	if os.Getenv(asTandem) == "1" {
		os.Exit(cli.Main(os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}))
	}
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
}

// tandem runs tandem in-process.
func tandem(t testing.TB, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(args, cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(string) string { return "" }})
	return result{code, out.String(), errb.String()}
}

func mustTandem(t testing.TB, args ...string) string {
	t.Helper()
	r := tandem(t, args...)
	if r.code != 0 {
		t.Fatalf("tandem %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// keys makes a trusted and an untrusted signing key in dir.
func keys(t testing.TB, dir string) (trusted, other string) {
	t.Helper()
	trusted, other = filepath.Join(dir, "release"), filepath.Join(dir, "other")
	mustTandem(t, "key", "generate", trusted)
	mustTandem(t, "key", "generate", other)
	return trusted, other
}

// image makes n random bytes in dir/name.
func image(t testing.TB, dir, name string, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// makeBundle makes a bundle of img for the simulated devices, signed by key.
func makeBundle(t testing.TB, dir, name, version, img, key string) (path, hash string) {
	t.Helper()
	path = filepath.Join(dir, name)
	out := mustTandem(t, "bundle", "create", path, "--compatible", "tandem-sim", "--version", version,
		"--slot", "system="+img, "--key", key+".key", "--chunk-size", "16K")
	return path, strings.TrimSpace(lastLine(out))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// newDevice makes a simulated grub device that trusts key.
func newDevice(t testing.TB, key string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dev")
	mustTandem(t, "sim", "new", dir, "--boot-flow", "grub", "--slot-size", "1M", "--trust", key+".pub")
	return dir
}

// boot is the part of `system info --json` the tests check.
type boot struct {
	Active, Default string
	Pending         bool
	Trial           string
}

func bootState(t testing.TB, dev string) boot {
	t.Helper()
	var doc struct {
		Boot struct {
			ActiveGroup   string `json:"activeGroup"`
			DefaultGroup  string `json:"defaultGroup"`
			CommitPending bool   `json:"commitPending"`
			Trial         *struct {
				Group string `json:"group"`
			} `json:"trial"`
		} `json:"boot"`
	}
	out := mustTandem(t, "--root", dev, "system", "info", "--json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("system info --json: %v\n%s", err, out)
	}
	b := boot{Active: doc.Boot.ActiveGroup, Default: doc.Boot.DefaultGroup, Pending: doc.Boot.CommitPending}
	if doc.Boot.Trial != nil {
		b.Trial = doc.Boot.Trial.Group
	}
	return b
}

func checkBoot(t testing.TB, dev string, want boot) {
	t.Helper()
	if got := bootState(t, dev); got != want {
		t.Fatalf("boot state %+v, want %+v", got, want)
	}
}

func simReboot(t testing.TB, dev string) {
	t.Helper()
	mustTandem(t, "sim", "reboot", dev)
}

func slot(t testing.TB, dev, group string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dev, "slots", "system-"+group+".img"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkSlot(t testing.TB, dev, group string, img []byte) {
	t.Helper()
	b := slot(t, dev, group)
	if len(b) < len(img) || !bytes.Equal(b[:len(img)], img) {
		t.Fatalf("slot system-%s does not hold the image", group)
	}
}

// jobFile is the module's job file on dev.
func jobFile(dev string) string { return filepath.Join(dev, "var/lib/tandem/fleet/mender.json") }

func checkNoJob(t testing.TB, dev string) {
	t.Helper()
	if _, err := os.Stat(jobFile(dev)); !os.IsNotExist(err) {
		b, _ := os.ReadFile(jobFile(dev))
		t.Fatalf("job file left behind (%v): %s", err, b)
	}
}

// snapshot maps the files under dir to their SHA-free content.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		m[strings.TrimPrefix(p, dir)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// client is a Mender client in standalone mode, for one simulated device.
type client struct {
	t                     testing.TB
	dir                   string // scratch: modules/, etc/, data/
	dev                   string
	env                   []string
	lastOut, lastCombined string
}

func newClient(t testing.TB, dev string, moduleArgs ...string) *client {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the mender-client tests need root (a private mount namespace)")
		}
		t.Skip("the mender-client tests need root (a private mount namespace)")
	}
	testutil.NeedTool(t, "mender")
	testutil.NeedTool(t, "mender-artifact")
	testutil.NeedTool(t, "unshare")
	c := &client{t: t, dir: t.TempDir(), dev: dev}
	for _, d := range []string{"modules", "etc", "data"} {
		if err := os.Mkdir(filepath.Join(c.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	wrapper, err := os.ReadFile("../../../integrations/mender/tandem")
	if err != nil {
		t.Fatal(err)
	}
	if len(moduleArgs) > 0 {
		wrapper = bytes.Replace(wrapper, []byte("mender-module "), []byte("mender-module "+strings.Join(moduleArgs, " ")+" "), 1)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"modules/tandem":    string(wrapper),
		"etc/mender.conf":   "{}\n",
		"etc/artifact_info": "artifact_name=factory\n",
		"data/device_type":  "device_type=tandem-sim\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(c.dir, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c.env = append(os.Environ(), "TANDEM_BIN="+self, asTandem+"=1", "TANDEM_ROOT="+dev)
	return c
}

// run runs `mender ARGS` in a private mount namespace and returns its exit code.
func (c *client) run(args ...string) int {
	c.t.Helper()
	script := `set -e
mount --bind "$1/modules" /usr/share/mender/modules/v3
mount --bind "$1/etc" /etc/mender
d=$1; shift
exec mender --no-syslog -c "$d/etc/mender.conf" -b "$d/etc/none.conf" -d "$d/data" "$@"`
	// A client that hangs fails the test instead of stalling the whole run.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", script, "sh", c.dir}, args...)...)
	cmd.Env = c.env
	var out bytes.Buffer
	combined := &lockedBuffer{}
	cmd.Stdout = &multi{&out, combined}
	cmd.Stderr = combined
	err := cmd.Run()
	c.lastOut, c.lastCombined = out.String(), combined.String()
	if ctx.Err() != nil {
		c.t.Fatalf("mender %s hung (killed after 2 minutes)\n%s", strings.Join(args, " "), c.lastCombined)
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			c.t.Fatalf("mender %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	var notes []string // the module's output and the client's errors
	for _, l := range strings.Split(c.lastCombined, "\n") {
		if strings.Contains(l, "Output (std") || strings.Contains(l, "level=error") {
			notes = append(notes, "\n    "+l)
		}
	}
	c.t.Logf("mender %s: exit %d%s", strings.Join(args, " "), code, strings.Join(notes, ""))
	return code
}

// must runs mender and fails the test unless it exits with want.
func (c *client) must(want int, args ...string) {
	c.t.Helper()
	if got := c.run(args...); got != want {
		c.t.Fatalf("mender %s: exit %d, want %d\n%s", strings.Join(args, " "), got, want, c.lastCombined)
	}
}

// multi copies the client's stdout to its own buffer and to the combined one.
type multi struct {
	out      *bytes.Buffer
	combined *lockedBuffer
}

func (m *multi) Write(p []byte) (int, error) {
	m.out.Write(p)
	return m.combined.Write(p)
}

// lockedBuffer is written by the stdout and the stderr copier at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// artifact wraps file into a Mender artifact of payload type tandem.
func artifact(t testing.TB, file, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".mender")
	cmd := exec.Command(testutil.NeedTool(t, "mender-artifact"), "write", "module-image", "-T", "tandem",
		"-t", "tandem-sim", "-n", name, "-f", file, "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mender-artifact: %v\n%s", err, b)
	}
	return out
}

// descriptor writes a descriptor file.
func descriptor(t testing.TB, url, hash, version string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "v2.json")
	doc := fmt.Sprintf(`{"url": %q, "bundleHash": %q, "version": %q}`+"\n", url, hash, version)
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
