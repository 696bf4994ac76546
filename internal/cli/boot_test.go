package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// countingSim makes a simulated systemd-boot device with boot counting.
func countingSim(t *testing.T, extra ...string) string {
	t.Helper()
	return newSim(t, "systemd-boot", append([]string{"--boot-counting"}, extra...)...)
}

// entries lists the loader entries of a simulated ESP.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, "boot/loader/entries"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// TestBootMark: mark-bad ends a trial on every flow (the boot loader goes
// back to the default), mark-good commits the running group, and both
// refuse what would break a safety rule.
func TestBootMark(t *testing.T) {
	for _, v := range []struct {
		name string
		dev  func(t *testing.T) string
	}{
		{"grub", func(t *testing.T) string { return newSim(t, "grub", "--attempts", "3") }},
		{"uboot", func(t *testing.T) string { return newSim(t, "uboot", "--attempts", "3") }},
		{"systemd-boot-counting", func(t *testing.T) string { return countingSim(t, "--attempts", "3") }},
	} {
		t.Run(v.name, func(t *testing.T) {
			dir := v.dev(t)
			if r := run(t, nil, "--root", dir, "boot", "mark-bad", "a"); r.code != ExitRefused || !strings.Contains(r.stderr, "group a is the default") {
				t.Fatalf("mark-bad of the default: %+v", r)
			}
			if r := run(t, nil, "--root", dir, "boot", "mark-bad", "b"); r.code != 0 || !strings.Contains(r.stdout, "nothing to mark") {
				t.Fatalf("mark-bad of a spare group: %+v", r)
			}
			// A trial not booted yet is withdrawn.
			run(t, nil, "--root", dir, "system", "reboot", "--spare")
			if r := run(t, nil, "--root", dir, "boot", "mark-bad", "b"); r.code != 0 || !strings.Contains(r.stdout, "trial of group b is withdrawn") {
				t.Fatalf("mark-bad of a pending trial: %+v", r)
			}
			if r := run(t, nil, "sim", "reboot", dir); lastLine(r.stdout) != "a" {
				t.Fatalf("after mark-bad of the pending trial: %+v", r)
			}
			// A running trial: mark-bad, then the next boot is the default.
			run(t, nil, "--root", dir, "system", "reboot", "--spare")
			if r := run(t, nil, "sim", "reboot", dir); lastLine(r.stdout) != "b" {
				t.Fatalf("trial boot: %+v", r)
			}
			if r := run(t, nil, "--root", dir, "boot", "mark-good", "a"); r.code != ExitRefused {
				t.Fatalf("mark-good of a group that does not run: %+v", r)
			}
			if r := run(t, nil, "--root", dir, "boot", "mark-bad", "b"); r.code != 0 || !strings.Contains(r.stdout, "reboot to go back to a") {
				t.Fatalf("mark-bad of the running trial: %+v", r)
			}
			if r := run(t, nil, "--root", dir, "system", "commit"); r.code != ExitRefused {
				t.Fatalf("commit after mark-bad: %+v, want refused", r)
			}
			if r := run(t, nil, "sim", "reboot", dir); lastLine(r.stdout) != "a" {
				t.Fatalf("after mark-bad the boot loader started %+v, want a", r)
			}
			if doc := info(t, dir); get(doc, "lastUpdate", "status") != "rolled-back" {
				t.Fatalf("last update after mark-bad: %v", doc["lastUpdate"])
			}
			// mark-good keeps a trial, on its second attempt.
			run(t, nil, "--root", dir, "system", "reboot", "--spare")
			run(t, nil, "sim", "reboot", dir, "--hang")
			if r := run(t, nil, "sim", "reboot", dir); lastLine(r.stdout) != "b" {
				t.Fatalf("second attempt: %+v", r)
			}
			if r := run(t, nil, "--root", dir, "boot", "mark-good"); r.code != 0 || !strings.Contains(r.stdout, "marked good: group b") {
				t.Fatalf("mark-good: %+v", r)
			}
			if r := run(t, nil, "--root", dir, "boot", "mark-good", "b"); r.code != 0 || !strings.Contains(r.stdout, "nothing to mark") {
				t.Fatalf("mark-good again: %+v", r)
			}
			for range 2 {
				if r := run(t, nil, "sim", "reboot", dir); lastLine(r.stdout) != "b" {
					t.Fatalf("after mark-good: %+v", r)
				}
			}
		})
	}
	// Flows without bootflow.Counter end a trial by cancelling it: custom
	// (the controller's cancel-try ends further attempts) and rpi-tryboot
	// (one boot: the next boot is the default anyway).
	for _, v := range []struct {
		name string
		args []string
	}{{"custom", []string{"--attempts", "3"}}, {"rpi-tryboot", nil}} {
		t.Run(v.name, func(t *testing.T) {
			dir := newSim(t, v.name, v.args...)
			if r := run(t, nil, "--root", dir, "boot", "mark-bad", "b"); r.code != 0 || !strings.Contains(r.stdout, "nothing to mark") {
				t.Fatalf("mark-bad of a spare group: %+v", r)
			}
			if r := run(t, nil, "--root", dir, "boot", "mark-bad"); r.code != ExitUsage {
				t.Fatalf("mark-bad without a group: %+v", r)
			}
			run(t, nil, "--root", dir, "system", "reboot", "--spare")
			if r := run(t, nil, "sim", "reboot", dir); lastLine(r.stdout) != "b" {
				t.Fatalf("trial boot: %+v", r)
			}
			if r := run(t, nil, "--root", dir, "boot", "mark-bad", "b"); r.code != 0 || !strings.Contains(r.stdout, "reboot to go back to a") {
				t.Fatalf("mark-bad of the running trial: %+v", r)
			}
			if r := run(t, nil, "--root", dir, "system", "commit"); r.code != ExitRefused {
				t.Fatalf("commit after mark-bad: %+v, want refused", r)
			}
			if r := run(t, nil, "sim", "reboot", dir); lastLine(r.stdout) != "a" {
				t.Fatalf("after mark-bad the boot loader started %+v, want a", r)
			}
			if doc := info(t, dir); get(doc, "lastUpdate", "status") != "rolled-back" {
				t.Fatalf("last update after mark-bad: %v", doc["lastUpdate"])
			}
		})
	}
}

// TestSDBootCountingKernelUpdate: a bundle with a kernel, an initramfs and
// a command line installs them as resize file slots of the spare group
// (each file then holds exactly its payload, larger or smaller than
// before), the trial's entry boots them with the new command line, and the
// commit leaves the good entry (the name systemd-bless-boot gives it).
func TestSDBootCountingKernelUpdate(t *testing.T) {
	dir, image := bundleFixture(t)
	dev := countingSim(t, "--trust", filepath.Join(dir, "release.pub"), "--slot-size", "1M", "--attempts", "2")
	for i, size := range []int{70000, 300} {
		kernel := bytes.Repeat([]byte{byte('k' + i)}, size)
		files := map[string][]byte{"kernel": kernel, "initrd": []byte("initramfs v" + string(rune('2'+i))), "cmdline": []byte("console=ttyS0 update=" + string(rune('2'+i)) + "\n")}
		args := []string{"--key", filepath.Join(dir, "release.key")}
		for alias, b := range files {
			p := filepath.Join(dir, alias)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			args = append(args, "--slot", alias+"="+p)
		}
		bundle := filepath.Join(dir, "boot.tandem")
		createBundle(t, nil, bundle, image, args...)
		target := []string{"b", "a"}[i]
		if r := run(t, nil, "--root", dev, "update", "install", bundle, "--reboot", "set"); r.code != 0 {
			t.Fatalf("install: %+v", r)
		}
		for alias, want := range files {
			name := map[string]string{"kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": "cmdline"}[alias]
			if got := readFile(t, filepath.Join(dev, "boot/tandem", target, name)); !bytes.Equal(got, want) {
				t.Fatalf("%s of %s holds %d bytes, want the payload's %d", alias, target, len(got), len(want))
			}
		}
		trial := filepath.Join(dev, "boot/loader/entries", "tandem-"+string(rune('2'+i))+"-"+target+"+2.conf")
		entry := string(readFile(t, trial))
		if !strings.Contains(entry, "options root=/dev/sim-system-"+target+" console=ttyS0 update="+string(rune('2'+i))+" tandem.group="+target+"\n") ||
			!strings.Contains(entry, "linux /tandem/"+target+"/vmlinuz\n") {
			t.Fatalf("trial entry %s:\n%s", trial, entry)
		}
		if r := run(t, nil, "sim", "reboot", dev); lastLine(r.stdout) != target {
			t.Fatalf("trial boot: %+v", r)
		}
		if r := run(t, nil, "--root", dev, "system", "commit"); r.code != 0 {
			t.Fatalf("commit: %+v", r)
		}
		good := "tandem-" + string(rune('2'+i)) + "-" + target + ".conf"
		if got := entries(t, dev); !strings.Contains(strings.Join(got, " "), good) || len(got) != 2 {
			t.Fatalf("entries after the commit: %v, want %s and the other group's", got, good)
		}
		if r := run(t, nil, "sim", "reboot", dev); lastLine(r.stdout) != target {
			t.Fatalf("after commit: %+v", r)
		}
	}
}

// TestInstallPowerCutSDBootCounting cuts an install of a bundle that also
// carries the kernel, initramfs and command line at every cut point (boot
// files on the simulated FAT ESP, the entry's removal and the trial's
// entry included), with the checks of TestInstallPowerCutEveryPoint.
func TestInstallPowerCutSDBootCounting(t *testing.T) {
	dir, image := bundleFixture(t)
	img := bytes.Repeat(readFile(t, image), 10)[:1536<<10]
	if err := os.WriteFile(image, img, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--key", filepath.Join(dir, "release.key")}
	for alias, content := range map[string]string{"kernel": strings.Repeat("kernel v2 ", 300), "initrd": "initramfs v2", "cmdline": "console=ttyS0 v2"} {
		p := filepath.Join(dir, alias)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--slot", alias+"="+p)
	}
	bundle := filepath.Join(dir, "v2.tandem")
	createBundle(t, nil, bundle, image, args...)
	tmpl := countingSim(t, "--trust", filepath.Join(dir, "release.pub"), "--slot-size", "2M")
	replace(t, tmpl, "etc/tandem/system.toml", "cmdline = \"cmdline-b\" }\n", "cmdline = \"cmdline-b\" }\nfactory-version = \"0.9.0\"\n")
	// A trial of b that rolled back leaves b's entry with no tries left:
	// the install removes it (Retire) before it writes b's boot files.
	run(t, nil, "--root", tmpl, "system", "reboot", "--spare")
	run(t, nil, "sim", "reboot", tmpl)
	if r := run(t, nil, "sim", "reboot", tmpl); lastLine(r.stdout) != "a" || !strings.Contains(strings.Join(entries(t, tmpl), " "), "tandem-2-b+0-1.conf") {
		t.Fatalf("rollback before the cuts: %+v, entries %v", r, entries(t, tmpl))
	}
	modes := []string{"drop", "tear"}
	if testing.Short() {
		modes = modes[:1]
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			points, slotPoints := installCuts(t, tmpl, bundle, img, mode)
			t.Logf("systemd-boot-counting/%s: %d cut points, %d of them in slot data", mode, points, slotPoints)
		})
	}
}
