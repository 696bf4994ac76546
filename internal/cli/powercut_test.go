package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// cutRe parses the power-cut error: the cut point and what it cut.
var cutRe = regexp.MustCompile(`simulated power cut at cut point (\d+) \(([^)]*)\)`)

// slotWriteRe parses a cut write to slot b.
var slotWriteRe = regexp.MustCompile(`^write (\d+) bytes at (\d+) to /slots/system-b\.img$`)

// TestInstallPowerCutEveryPoint cuts the power at every cut point of
// `update install --reboot set`, slot data included, on every boot flow (in
// cut modes drop and tear, and keep once), and after each cut checks: the device boots the
// committed group (or the new group on trial once it is complete); once the
// install has begun writing slot b, system info reports b incomplete (never
// the version it held before) until the install was recorded, and
// reboot --spare refuses it; a cut inside a slot write tears that write (in
// modes tear and keep); re-running the install completes and boots.
//
// Issue 11, hardening 12: before the fix, slot data bypassed the simulated
// file layer (no cut point fell inside it) and a cut group kept reporting
// its factory version and could be tried.
func TestInstallPowerCutEveryPoint(t *testing.T) {
	dir, image := bundleFixture(t)
	// Over the installer's 1 MiB write buffer: several writes reach the slot.
	img := bytes.Repeat(readFile(t, image), 10)[:1536<<10]
	if err := os.WriteFile(image, img, 0o644); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "v2.tandem")
	createBundle(t, nil, bundle, image, "--key", filepath.Join(dir, "release.key"))
	for _, flow := range flows {
		// keep (nothing lost but the torn write) adds little to tear: once.
		modes := []string{"drop", "tear"}
		if flow == "grub" {
			modes = append(modes, "keep")
		}
		if testing.Short() {
			modes = modes[:1]
		}
		t.Run(flow, func(t *testing.T) {
			tmpl := newSim(t, flow, "--trust", filepath.Join(dir, "release.pub"), "--slot-size", "2M")
			// Group b holds a factory image: an interrupted install must not
			// go on reporting it.
			replace(t, tmpl, "etc/tandem/system.toml", "slots = { system = \"system-b\" }\n",
				"slots = { system = \"system-b\" }\nfactory-version = \"0.9.0\"\n")
			for _, mode := range modes {
				t.Run(mode, func(t *testing.T) {
					points, slotPoints := installCuts(t, tmpl, bundle, img, mode)
					t.Logf("%s/%s: %d cut points, %d of them in slot data", flow, mode, points, slotPoints)
					if slotPoints < 3 {
						t.Fatalf("only %d cut points in slot data", slotPoints)
					}
				})
			}
		})
	}
}

// installCuts runs the cut loop on copies of the device tmpl and returns
// the number of cut points and how many of them wrote or synced slot b.
func installCuts(t *testing.T, tmpl, bundle string, img []byte, mode string) (points, slotPoints int) {
	started := false // the install has reached slot b at an earlier cut point
	for cut := 1; ; cut++ {
		dev := filepath.Join(t.TempDir(), "dev")
		if out, err := exec.Command("cp", "-a", tmpl, dev).CombinedOutput(); err != nil {
			t.Fatalf("copy the device: %v %s", err, out)
		}
		env := map[string]string{"TANDEM_SIM_CUT": strconv.Itoa(cut), "TANDEM_SIM_CUT_MODE": mode}
		r := run(t, env, "--root", dev, "update", "install", bundle, "--reboot", "set", "--json")
		if r.code == 0 {
			return cut - 1, slotPoints
		}
		m := cutRe.FindStringSubmatch(r.stderr)
		if r.code != ExitPowerCut || m == nil {
			t.Fatalf("cut %d: %+v, want a power cut", cut, r)
		}
		what := m[2]
		if strings.Contains(what, "/slots/system-b.img") {
			started = true
			slotPoints++
		}
		if w := slotWriteRe.FindStringSubmatch(what); w != nil && mode != "drop" {
			n, _ := strconv.Atoi(w[1])
			off, _ := strconv.Atoi(w[2])
			got := readFile(t, filepath.Join(dev, "slots/system-b.img"))
			if !bytes.Equal(got[off:off+n/2], img[off:off+n/2]) {
				t.Fatalf("cut %d (%s): the first half of the cut write did not reach the slot", cut, what)
			}
		}
		r = run(t, nil, "sim", "reboot", dev)
		if r.code != 0 {
			t.Fatalf("cut %d (%s): boot: %+v", cut, what, r)
		}
		booted := lastLine(r.stdout)
		doc := info(t, dev)
		b, _ := get(doc, "boot", "groups", "b").(map[string]any)
		incomplete := b["incomplete"] != nil
		complete := b["version"] == "2.0.0" && b["versionSource"] == "installed"
		switch {
		case booted == "b" && (!complete || get(doc, "boot", "commitPending") != true):
			t.Fatalf("cut %d (%s): booted b, which is not a complete trial: %v", cut, what, doc["boot"])
		case booted != "b" && (booted != "a" || get(doc, "boot", "defaultGroup") != "a"):
			t.Fatalf("cut %d (%s): booted %s, want the committed a", cut, what, booted)
		case started && !incomplete && !complete:
			t.Fatalf("cut %d (%s): slot b was being written, but system info says %v", cut, what, b)
		case incomplete && (b["version"] != nil || complete):
			t.Fatalf("cut %d (%s): incomplete group b reports a version: %v", cut, what, b)
		}
		if incomplete {
			r := run(t, nil, "--root", dev, "system", "reboot", "--spare")
			if r.code != ExitRefused || !strings.Contains(r.stderr, "group b is incomplete") || !strings.Contains(r.stderr, "hint: install") {
				t.Fatalf("cut %d (%s): reboot --spare of the incomplete b: %+v, want exit %d", cut, what, r, ExitRefused)
			}
			if r := run(t, nil, "--root", dev, "system", "info"); !strings.Contains(r.stdout, "version incomplete") {
				t.Fatalf("cut %d (%s): system info does not say b is incomplete:\n%s", cut, what, r.stdout)
			}
		}
		if booted == "b" {
			continue // the install was recorded and tried: nothing to re-run
		}
		if r := run(t, nil, "--root", dev, "update", "install", bundle, "--reboot", "yes", "--json"); r.code != 0 {
			t.Fatalf("cut %d (%s): re-run the install: %+v", cut, what, r)
		}
		if r := run(t, nil, "sim", "reboot", dev); lastLine(r.stdout) != "b" {
			t.Fatalf("cut %d (%s): boot after the re-run install: %+v", cut, what, r)
		}
		if got := readFile(t, filepath.Join(dev, "slots/system-b.img")); !bytes.HasPrefix(got, img) {
			t.Fatalf("cut %d (%s): slot b does not hold the image after the re-run install", cut, what)
		}
		if r := run(t, nil, "--root", dev, "system", "commit"); r.code != 0 {
			t.Fatalf("cut %d (%s): commit: %+v", cut, what, r)
		}
		if cut > 1000 {
			panic(fmt.Sprintf("%d cut points: the install never completes", cut))
		}
	}
}

// TestRepeatedCommitAfterCut: a commit cut after GRUB's primary copy was
// written leaves the secondary copy stale; the next `system commit` repairs
// it but prints "nothing to commit" (docs/cli.md), not "committed".
// Issue 11, hardening 13.
func TestRepeatedCommitAfterCut(t *testing.T) {
	tmpl := newSim(t, "grub")
	run(t, nil, "--root", tmpl, "system", "reboot", "--spare")
	if r := run(t, nil, "sim", "reboot", tmpl); lastLine(r.stdout) != "b" {
		t.Fatalf("trial boot: %+v", r)
	}
	secondary := "boot/tandem/secondary.grubenv"
	stale := 0
	for cut := 1; ; cut++ {
		dev := filepath.Join(t.TempDir(), "dev")
		if out, err := exec.Command("cp", "-a", tmpl, dev).CombinedOutput(); err != nil {
			t.Fatalf("copy the device: %v %s", err, out)
		}
		r := run(t, map[string]string{"TANDEM_SIM_CUT": strconv.Itoa(cut)}, "--root", dev, "system", "commit")
		if r.code == 0 {
			break
		}
		if r := run(t, nil, "sim", "reboot", dev); lastLine(r.stdout) != "b" ||
			bytes.Contains(readFile(t, filepath.Join(dev, secondary)), []byte("tandem_default=b\n")) {
			continue // not committed yet, or both copies name b
		}
		stale++
		r = run(t, nil, "--root", dev, "system", "commit")
		if r.code != 0 || !strings.Contains(r.stdout, "nothing to commit: group b already is the default") {
			t.Fatalf("cut %d: repeated commit: %+v, want nothing to commit", cut, r)
		}
		if !bytes.Contains(readFile(t, filepath.Join(dev, secondary)), []byte("tandem_default=b\n")) {
			t.Fatalf("cut %d: the repeated commit did not repair the secondary copy", cut)
		}
	}
	if stale == 0 {
		t.Fatal("no cut left the secondary copy stale: the test tests nothing")
	}
}

// TestHungRefusals: on a simulated system that hung, every command that
// would change the device refuses with exit 4, as docs/simulator.md lists.
// Issue 11, hardening 13.
func TestHungRefusals(t *testing.T) {
	dir := newSim(t, "grub")
	run(t, nil, "--root", dir, "system", "reboot", "--spare")
	if r := run(t, nil, "sim", "reboot", dir, "--hang"); lastLine(r.stdout) != "b" {
		t.Fatalf("hung trial boot: %+v", r)
	}
	for _, args := range [][]string{
		{"system", "commit"}, {"system", "reboot", "--spare"}, {"update", "install", filepath.Join(dir, "none.tandem")},
		{"health", "--once"}, {"health", "--once", "--deadline", "0"},
	} {
		r := run(t, nil, append([]string{"--root", dir}, args...)...)
		if r.code != ExitRefused || !strings.Contains(r.stderr, "hung before it could run tandem") {
			t.Errorf("%v on a hung system: %+v, want exit %d", args, r, ExitRefused)
		}
	}
}
