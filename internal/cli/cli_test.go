package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type result struct {
	code           int
	stdout, stderr string
}

// run runs tandem in-process.
func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] }})
	return result{code, out.String(), errb.String()}
}

func newSim(t *testing.T, flow string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dev")
	if r := run(t, nil, append([]string{"sim", "new", dir, "--boot-flow", flow, "--slot-size", "64K"}, extra...)...); r.code != 0 {
		t.Fatalf("sim new: %+v", r)
	}
	return dir
}

func info(t *testing.T, dir string) map[string]any {
	t.Helper()
	r := run(t, nil, "--root", dir, "system", "info", "--json")
	if r.code != 0 {
		t.Fatalf("system info: %+v", r)
	}
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("system info --json: %v\n%s", err, r.stdout)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		t.Fatalf("system info --json printed more than one document:\n%s", r.stdout)
	}
	return doc
}

func get(doc map[string]any, path ...string) any {
	var v any = doc
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestSystemInfoJSON(t *testing.T) {
	for _, flow := range flows {
		t.Run(flow, func(t *testing.T) {
			dir := newSim(t, flow)
			doc := info(t, dir)
			for path, want := range map[string]any{
				"boot.bootFlow": flow, "boot.activeGroup": "a", "boot.defaultGroup": "a",
				"boot.commitPending": false, "compatible": "tandem-sim",
			} {
				if got := get(doc, strings.Split(path, ".")...); got != want {
					t.Errorf("%s = %v, want %v", path, got, want)
				}
			}
			p, _ := get(doc, "slots", "system-b", "path").(string)
			if fi, err := os.Stat(p); err != nil || fi.Size() != 64<<10 {
				t.Errorf("slots.system-b.path = %q: %v", p, err)
			}
		})
	}
}

func TestCycle(t *testing.T) {
	dir := newSim(t, "uboot")
	if r := run(t, nil, "--root", dir, "system", "commit"); r.code != 0 || !strings.Contains(r.stdout, "nothing to commit") {
		t.Fatalf("commit of the default group: %+v", r)
	}
	if r := run(t, nil, "--root", dir, "system", "reboot", "--spare"); r.code != 0 {
		t.Fatalf("reboot --spare: %+v", r)
	}
	if r := run(t, nil, "sim", "reboot", dir); r.code != 0 || lastLine(r.stdout) != "b" {
		t.Fatalf("sim reboot: %+v, want last line b", r)
	}
	doc := info(t, dir)
	if get(doc, "boot", "activeGroup") != "b" || get(doc, "boot", "commitPending") != true {
		t.Fatalf("on trial: %v", doc["boot"])
	}
	if r := run(t, nil, "--root", dir, "system", "reboot", "--spare"); r.code != ExitRefused {
		t.Fatalf("reboot --spare during a trial: %+v, want exit %d", r, ExitRefused)
	}
	r := run(t, nil, "--root", dir, "system", "info")
	if r.code != 0 || !strings.Contains(r.stdout, "commit         pending") {
		t.Fatalf("human info: %+v", r)
	}
	if r := run(t, nil, "--root", dir, "system", "commit"); r.code != 0 || !strings.Contains(r.stdout, "group b is now the default") {
		t.Fatalf("commit: %+v", r)
	}
	if r := run(t, nil, "sim", "reboot", dir, "--hang"); r.code != 0 || lastLine(r.stdout) != "b" {
		t.Fatalf("sim reboot --hang: %+v", r)
	}
	if r := run(t, nil, "--root", dir, "system", "commit"); r.code != ExitRefused {
		t.Fatalf("commit on a hung device: %+v", r)
	}
}

// snapshot hashes every file under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || strings.HasSuffix(p, "/run/tandem/lock") {
			return err
		}
		b, err := os.ReadFile(p)
		m[p] = fmt.Sprintf("%x", sha256.Sum256(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Bad input: one line naming the problem, a documented exit code, nothing written.
func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, flow string
		break_     func(t *testing.T, dir string)
		args       []string
		code       int
		want       string // in the one-line error
	}{
		{"corrupt grubenv copies", "grub", func(t *testing.T, dir string) {
			garble(t, dir, "boot/tandem/primary.grubenv")
			garble(t, dir, "boot/tandem/secondary.grubenv")
		}, []string{"system", "commit"}, ExitBootState, "primary.grubenv"},
		{"corrupt u-boot env copies", "uboot", func(t *testing.T, dir string) {
			garble(t, dir, "boot/uboot.env")
			garble(t, dir, "boot/uboot-redund.env")
		}, []string{"system", "reboot", "--spare"}, ExitBootState, "uboot.env"},
		{"corrupt autoboot.txt", "rpi-tryboot", func(t *testing.T, dir string) {
			garble(t, dir, "boot/autoboot.txt")
		}, []string{"system", "info"}, ExitBootState, "autoboot.txt"},
		{"corrupt efi variable", "systemd-boot", func(t *testing.T, dir string) {
			write(t, dir, "sys/firmware/efi/efivars/LoaderEntryDefault-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f", "\x07\x00")
		}, []string{"system", "info"}, ExitBootState, "LoaderEntryDefault"},
		{"missing boot partition", "grub", func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, "boot")); err != nil {
				t.Fatal(err)
			}
		}, []string{"system", "reboot", "--spare"}, ExitBootState, "boot/tandem/primary.grubenv"},
		{"config names a missing slot", "grub", func(t *testing.T, dir string) {
			replace(t, dir, "etc/tandem/system.toml", `system = "system-b"`, `system = "system-c"`)
		}, []string{"system", "info"}, ExitConfig, `system.toml:`},
		{"unknown boot flow", "grub", func(t *testing.T, dir string) {
			replace(t, dir, "etc/tandem/system.toml", `type = "grub"`, `type = "lilo"`)
		}, []string{"system", "commit"}, ExitConfig, "lilo"},
		{"missing config", "grub", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "etc/tandem/system.toml")); err != nil {
				t.Fatal(err)
			}
		}, []string{"system", "info"}, ExitConfig, "system.toml"},
		{"unknown group on the kernel command line", "grub", func(t *testing.T, dir string) {
			write(t, dir, "proc/cmdline", "tandem.group=z\n")
		}, []string{"system", "commit"}, ExitFailure, "tandem.group=z"},
		{"no group on the kernel command line", "grub", func(t *testing.T, dir string) {
			write(t, dir, "proc/cmdline", "quiet\n")
		}, []string{"system", "commit"}, ExitRefused, "cannot tell which boot group is running"},
		{"bad cut switch", "grub", func(*testing.T, string) {}, []string{"system", "commit", "--root"}, ExitUsage, "flag needs an argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := newSim(t, tc.flow)
			tc.break_(t, dir)
			before := snapshot(t, dir)
			r := run(t, nil, append([]string{"--root", dir}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d (%+v)", r.code, tc.code, r)
			}
			first, _, _ := strings.Cut(r.stderr, "\n")
			if !strings.HasPrefix(first, "tandem: ") || !strings.Contains(first, tc.want) {
				t.Errorf("error line %q, want one line containing %q", first, tc.want)
			}
			if lines := strings.Count(strings.TrimSuffix(r.stderr, "\n"), "\n"); lines > 1 || (lines == 1 && !strings.Contains(r.stderr, "\nhint: ")) {
				t.Errorf("stderr is not one error line (plus an optional hint):\n%s", r.stderr)
			}
			if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
				t.Errorf("files changed:\n%s", diff)
			}
		})
	}
}

func garble(t *testing.T, dir, name string) {
	t.Helper()
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		if i%7 == 0 {
			b[i] ^= 0x5a
		}
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, dir, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func replace(t *testing.T, dir, name, old, new string) {
	t.Helper()
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s has no %q", name, old)
	}
	write(t, dir, name, strings.Replace(string(b), old, new, 1))
}

func TestPowerCutSwitch(t *testing.T) {
	dir := newSim(t, "grub")
	run(t, nil, "--root", dir, "system", "reboot", "--spare")
	run(t, nil, "sim", "reboot", dir)
	cut := map[string]string{"TANDEM_SIM_CUT": "3", "TANDEM_SIM_CUT_MODE": "tear"}
	r := run(t, cut, "--root", dir, "system", "commit")
	if r.code != ExitPowerCut || !strings.Contains(r.stderr, "simulated power cut at cut point 3") {
		t.Fatalf("commit with a cut: %+v", r)
	}
	if r := run(t, nil, "sim", "reboot", dir); r.code != 0 || (lastLine(r.stdout) != "a" && lastLine(r.stdout) != "b") {
		t.Fatalf("reboot after the cut: %+v", r)
	}
	if r := run(t, map[string]string{"TANDEM_SIM_CUT": "x"}, "--root", dir, "system", "info"); r.code != ExitUsage {
		t.Fatalf("bad TANDEM_SIM_CUT: %+v", r)
	}
	if r := run(t, map[string]string{"TANDEM_SIM_CUT_MODE": "melt"}, "--root", dir, "system", "info"); r.code != ExitUsage {
		t.Fatalf("bad TANDEM_SIM_CUT_MODE: %+v", r)
	}
	// A device that is not simulated refuses the switch.
	if err := os.Remove(filepath.Join(dir, ".tandem-sim.json")); err != nil {
		t.Fatal(err)
	}
	if r := run(t, cut, "--root", dir, "system", "info"); r.code != ExitRefused {
		t.Fatalf("cut switch on a real device: %+v", r)
	}
}

func TestSimNewErrors(t *testing.T) {
	img := filepath.Join(t.TempDir(), "big.img")
	if err := os.WriteFile(img, make([]byte, 100<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	nonEmpty := t.TempDir()
	write(t, nonEmpty, "x", "")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sim", "new", t.TempDir() + "/d", "--boot-flow", "lilo"}, ExitUsage, "--boot-flow"},
		{[]string{"sim", "new", t.TempDir() + "/d"}, ExitUsage, "boot-flow"},
		{[]string{"sim", "new", t.TempDir() + "/d", "--boot-flow", "grub", "--slot-size", "12Q"}, ExitUsage, "--slot-size"},
		{[]string{"sim", "new", t.TempDir() + "/d", "--boot-flow", "grub", "--slot-size", "64K", "--image", img}, ExitFailure, "larger than the slot size"},
		{[]string{"sim", "new", nonEmpty, "--boot-flow", "grub"}, ExitFailure, "not empty"},
		{[]string{"sim", "reboot", t.TempDir()}, ExitFailure, "not a simulated device"},
	} {
		r := run(t, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: %+v, want exit %d and %q", tc.args, r, tc.code, tc.want)
		}
	}
}

func TestSimNewImage(t *testing.T) {
	img := filepath.Join(t.TempDir(), "factory.img")
	data := bytes.Repeat([]byte("factory!"), 4096)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := newSim(t, "grub", "--image", img)
	b, err := os.ReadFile(filepath.Join(dir, "slots/system-a.img"))
	if err != nil || !bytes.HasPrefix(b, data) || len(b) != 64<<10 {
		t.Fatalf("system-a holds %d bytes (err %v), want the image padded to 64 KiB", len(b), err)
	}
}

// An unknown subcommand of a command group is a usage error, not the
// group's help with exit 0; the group alone still prints its help.
func TestUnknownSubcommand(t *testing.T) {
	if r := run(t, nil, "system", "bogus"); r.code != ExitUsage || !strings.Contains(r.stderr, `unknown command "bogus" for "tandem system"`) {
		t.Errorf("tandem system bogus: %+v", r)
	}
	if r := run(t, nil, "system"); r.code != 0 || !strings.Contains(r.stdout, "Available Commands") {
		t.Errorf("tandem system: %+v", r)
	}
}
