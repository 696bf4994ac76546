package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/signature"
	"github.com/tandem-ota/tandem/internal/testutil"
	"github.com/tandem-ota/tandem/systemd"
)

func TestDebianVersion(t *testing.T) {
	for _, c := range []struct {
		describe string
		dirty    bool
		want     string
	}{
		{"v1.2.0-0-gabc1234", false, "1.2.0"},
		{"v1.2.0-5-gabc1234", false, "1.2.0+git5.abc1234"},
		{"v1.2.0-5-gabc1234", true, "1.2.0+git5.abc1234.dirty"},
		{"v1.3.0-rc.1-0-gabc1234", false, "1.3.0~rc.1"},
		{"v1.3.0-rc-1-2-gabc1234", false, "1.3.0~rc.1+git2.abc1234"},
		{"v2024.06.1-0-g0123456789ab", false, "2024.06.1"},
	} {
		got, err := DebianVersion(c.describe, c.dirty)
		if err != nil || got != c.want {
			t.Errorf("DebianVersion(%q, %v) = %q, %v; want %q", c.describe, c.dirty, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "abc1234", "1.2.0-0-gabc", "vX-0-gabc", "v1.2_0-0-gabc", "v1.2.0-x-gabc"} {
		if got, err := DebianVersion(bad, false); err == nil {
			t.Errorf("DebianVersion(%q) = %q, want an error", bad, got)
		}
	}
	// Debian orders them as releases are ordered.
	if _, err := exec.LookPath("dpkg"); err == nil {
		order := []string{"0~git3.abc", "1.2.0~rc.1", "1.2.0~rc.1+git2.abc", "1.2.0", "1.2.0+git5.abc", "1.2.0+git5.abc.dirty", "1.2.1"}
		for i := 1; i < len(order); i++ {
			if err := exec.Command("dpkg", "--compare-versions", order[i-1], "lt", order[i]).Run(); err != nil {
				t.Errorf("dpkg: %s is not older than %s", order[i-1], order[i])
			}
		}
	}
}

func TestGitVersion(t *testing.T) {
	testutil.NeedTool(t, "git")
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	check := func(want string) {
		t.Helper()
		if got, err := GitVersion(dir); err != nil || got != want {
			t.Fatalf("GitVersion = %q, %v; want %q", got, err, want)
		}
	}
	git("init", "-q")
	os.WriteFile(filepath.Join(dir, "f"), []byte("1"), 0o644)
	git("add", "f")
	git("commit", "-q", "-m", "one")
	check("0~git1." + git("rev-parse", "--short=12", "HEAD"))
	git("tag", "-a", "-m", "v1.2.0", "v1.2.0")
	check("1.2.0")
	os.WriteFile(filepath.Join(dir, "f"), []byte("2"), 0o644)
	check("1.2.0.dirty")
	git("commit", "-q", "-a", "-m", "two")
	check("1.2.0+git1." + git("rev-parse", "--short=7", "HEAD"))
}

// TestExampleConfig: the example is a configuration tandem accepts once
// copied into place (so that its comments do not lie about the format).
func TestExampleConfig(t *testing.T) {
	if _, err := config.Parse("system.toml.example", []byte(exampleConfig)); err != nil {
		t.Fatal(err)
	}
}

// TestPackageInstallPurge builds the amd64 packages from a fresh static
// binary, checks them with lintian, installs them into an empty root with
// dpkg --root (maintainer scripts run on the host against DPKG_ROOT), runs
// the installed tandem, verifies the installed units with systemd-analyze,
// then removes and purges them and checks that nothing is left but dpkg's
// own database and the empty systemd directories deb-systemd-helper made.
func TestPackageInstallPurge(t *testing.T) {
	for _, tool := range []string{"dpkg", "dpkg-deb", "lintian", "systemd-analyze", "deb-systemd-helper"} {
		testutil.NeedTool(t, tool)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("dpkg --root installs files owned by root: run as root")
		}
		t.Skip("dpkg --root installs files owned by root: run as root")
	}
	t0 := time.Now()
	dir := t.TempDir()
	stamp := "test-" + fmt.Sprint(time.Now().UnixNano())
	bin := filepath.Join(dir, "tandem")
	// The flags of make cross: its amd64 build then reuses this compilation.
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X github.com/tandem-ota/tandem/internal/cli.Version="+stamp, "-o", bin, "../../cmd/tandem")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("go build: %v", time.Since(t0).Round(time.Second))
	lic, err := Licences(bin)
	if err != nil {
		t.Fatal(err)
	}
	const version = "1.2.3~rc.1+git4.abcdef0"
	o := Options{Binaries: map[string]string{"amd64": bin}, Version: version, Maintainer: DefaultMaintainer,
		Date: time.Unix(1767225600, 0).UTC(), Out: filepath.Join(dir, "dist"), Licences: lic}
	debs, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("build: %v", time.Since(t0).Round(time.Second))
	if len(debs) != 2 {
		t.Fatalf("debs = %v", debs)
	}

	// lintian runs while the packages are built again, installed and removed.
	start := time.Now()
	var lintOut bytes.Buffer
	lint := exec.Command("lintian", append([]string{"--fail-on", "error,warning"}, debs...)...)
	lint.Stdout, lint.Stderr = &lintOut, &lintOut
	if err := lint.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		err := lint.Wait()
		out := strings.TrimPrefix(lintOut.String(), "running with root privileges is not recommended!\n")
		if err != nil {
			t.Errorf("lintian: %v\n%s", err, out)
		} else if out != "" {
			t.Logf("lintian (informational tags; docs/packages.md):\n%s", out)
		}
		t.Logf("lintian: %v", time.Since(start).Round(time.Second))
	}()

	// Reproducible: a second build of the same inputs is byte for byte the same.
	o.Out = filepath.Join(dir, "again")
	again, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range debs {
		if a, b := fileSum(t, debs[i]), fileSum(t, again[i]); a != b {
			t.Errorf("%s differs between two builds", filepath.Base(debs[i]))
		}
	}

	root := filepath.Join(dir, "root")
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		os.WriteFile(filepath.Join(root, f), nil, 0o644)
	}
	dpkg := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("dpkg", append([]string{"--root=" + root, "--force-script-chrootless"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	dpkg(append([]string{"-i"}, debs...)...)
	in := func(p string) string { return filepath.Join(root, p) }

	out, err := exec.Command(in("usr/bin/tandem"), "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), stamp) {
		t.Errorf("installed tandem --version: %v: %q, want %s", err, out, stamp)
	}
	out, err = exec.Command(in("usr/bin/rugix-ctrl"), "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "rugix-ctrl version "+stamp) {
		t.Errorf("installed rugix-ctrl --version: %v: %q", err, out)
	}
	if l, err := os.Readlink(in("usr/sbin/tandem-init")); err != nil || l != "../bin/tandem" {
		t.Errorf("tandem-init link: %q, %v", l, err)
	}
	// The example is not read: a root with only the package has no configuration.
	out, err = exec.Command(in("usr/bin/tandem"), "--root", root, "system", "info").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.Contains(string(out), "etc/tandem/system.toml: no such file") {
		t.Errorf("tandem system info without system.toml: %v: %s (want exit 3, no such file)", err, out)
	}
	if b, err := os.ReadFile(in(ExampleConfig)); err != nil || string(b) != exampleConfig {
		t.Errorf("%s: %v", ExampleConfig, err)
	}
	status := dpkg("--status", "tandem")
	if !strings.Contains(status, "Conffiles:\n /"+ExampleConfig+" ") {
		t.Errorf("%s is not a conffile:\n%s", ExampleConfig, status)
	}
	for _, p := range []string{"usr/share/man/man1/tandem.1.gz", "usr/share/man/man1/tandem-update-install.1.gz",
		"usr/share/man/man1/tandem-init.1.gz", "usr/share/man/man1/rugix-ctrl-update-install.1.gz",
		"usr/share/bash-completion/completions/tandem", "usr/share/zsh/vendor-completions/_tandem",
		"usr/share/fish/vendor_completions.d/tandem.fish", "usr/share/tandem/bootloader/grub/tandem.cfg",
		"usr/share/doc/tandem/copyright", "usr/share/doc/tandem-rugix-ctrl/copyright"} {
		if _, err := os.Stat(in(p)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if out, err := exec.Command("bash", "-n", in("usr/share/bash-completion/completions/tandem")).CombinedOutput(); err != nil {
		t.Errorf("bash completion: %v\n%s", err, out)
	}

	// Units: the default ones enabled, the others not.
	units, _ := fs.Glob(systemd.Units, "*")
	for _, u := range units {
		links, _ := filepath.Glob(in("etc/systemd/system/*.wants/" + u))
		if enabled := len(links) > 0; enabled != contains(EnabledUnits, u) {
			t.Errorf("%s: enabled = %v, want %v", u, enabled, !enabled)
		}
	}
	verifyUnits(t, root, units)

	// Remove: the conffile stays (and deb-systemd-helper's masks, as for
	// every package with units); purge: everything goes, state included.
	os.MkdirAll(in("var/lib/tandem"), 0o755)
	os.WriteFile(in("var/lib/tandem/state.json"), []byte("{}"), 0o644)
	dpkg("--remove", "tandem-rugix-ctrl", "tandem")
	if _, err := os.Stat(in(ExampleConfig)); err != nil {
		t.Errorf("remove dropped the conffile: %v", err)
	}
	if _, err := os.Stat(in("usr/bin/tandem")); !os.IsNotExist(err) {
		t.Errorf("remove left usr/bin/tandem: %v", err)
	}
	dpkg("--purge", "tandem")
	left := listTree(t, root)
	allowed := map[string]bool{"etc/": true, "etc/systemd/": true, "etc/systemd/system/": true,
		"var/": true, "var/lib/": true, "var/lib/systemd/": true}
	var extra []string
	for _, p := range left {
		if !allowed[p] && !strings.HasPrefix(p, "var/lib/dpkg/") {
			extra = append(extra, p)
		}
	}
	if len(extra) > 0 {
		t.Errorf("left behind after purge: %v", extra)
	}
	if s := dpkg("--list"); strings.Contains(s, "tandem") {
		t.Errorf("dpkg still lists tandem after purge:\n%s", s)
	}
}

// verifyUnits runs systemd-analyze verify on the units installed in root,
// with root's /usr/bin/tandem as their program. The host's targets are
// copied in for the run (the root has no systemd of its own) and removed.
func verifyUnits(t *testing.T, root string, units []string) {
	t.Helper()
	targets, _ := filepath.Glob("/lib/systemd/system/*.target")
	if len(targets) == 0 {
		targets, _ = filepath.Glob("/usr/lib/systemd/system/*.target")
	}
	if len(targets) == 0 {
		t.Fatal("no systemd targets on the host to verify the units against")
	}
	scratch := filepath.Join(root, "usr/lib/systemd/system")
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		b, err := os.ReadFile(tg)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(scratch, filepath.Base(tg)), b, 0o644)
	}
	defer os.RemoveAll(filepath.Join(root, "usr/lib"))
	cmd := exec.Command("systemd-analyze", append([]string{"verify", "--man=no", "--root=" + root}, units...)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=warning")
	cmd.Dir = root
	// Any output is a finding: systemd-analyze exits 0 on some (a bad Type=).
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify --root: %v\n%s", err, out)
	}
}

// listTree lists every path under root, relative, directories with a slash.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var ps []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			rel += "/"
		}
		ps = append(ps, rel)
		return nil
	})
	sort.Strings(ps)
	return ps
}

func fileSum(t *testing.T, name string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestSumsSignature signs SHA256SUMS with tandem keys of both kinds and
// checks it the way docs/packages.md tells users to: sha256sum -c, then
// openssl against the published public key.
func TestSumsSignature(t *testing.T) {
	testutil.NeedTool(t, "openssl")
	testutil.NeedTool(t, "sha256sum")
	dir := t.TempDir()
	rel := filepath.Join(dir, "release")
	os.MkdirAll(rel, 0o755)
	os.WriteFile(filepath.Join(rel, "tandem_1.0.0_amd64.deb"), []byte("one"), 0o644)
	os.WriteFile(filepath.Join(rel, "tandem-rugix-ctrl_1.0.0_all.deb"), []byte("two"), 0o644)

	edKey, edPub, err := signature.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ed.key"), edKey, 0o600)
	os.WriteFile(filepath.Join(dir, "ed.pub"), edPub, 0o644)
	run := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Dir = rel
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
		}
		return nil
	}
	if err := run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", filepath.Join(dir, "ec.key")); err != nil {
		t.Fatal(err)
	}
	if err := run("openssl", "pkey", "-in", filepath.Join(dir, "ec.key"), "-pubout", "-out", filepath.Join(dir, "ec.pub")); err != nil {
		t.Fatal(err)
	}
	verify := map[string][]string{
		"ed": {"pkeyutl", "-verify", "-pubin", "-inkey", filepath.Join(dir, "ed.pub"), "-rawin", "-in", SumsFile, "-sigfile", SigFile},
		"ec": {"dgst", "-sha256", "-verify", filepath.Join(dir, "ec.pub"), "-signature", SigFile, SumsFile},
	}
	for _, k := range []string{"ed", "ec"} {
		if err := WriteSums(rel); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(rel, SigFile)); !os.IsNotExist(err) {
			t.Errorf("WriteSums kept a signature over an older list: %v", err)
		}
		id, err := Sign(rel, filepath.Join(dir, k+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 64 {
			t.Errorf("key id %q", id)
		}
		if err := run("sha256sum", "-c", "--strict", SumsFile); err != nil {
			t.Error(err)
		}
		if err := run("openssl", verify[k]...); err != nil {
			t.Errorf("%s: %v", k, err)
		}
		// A changed list no longer verifies.
		sums, _ := os.ReadFile(filepath.Join(rel, SumsFile))
		os.WriteFile(filepath.Join(rel, SumsFile), bytes.Replace(sums, []byte("tandem_"), []byte("tandex_"), 1), 0o644)
		if err := run("openssl", verify[k]...); err == nil {
			t.Errorf("%s: openssl accepted a changed %s", k, SumsFile)
		}
	}
}

// TestSignRefusesOtherText: only a checksum list is signed, never bytes
// that could be a bundle or channel signing message.
func TestSignRefusesOtherText(t *testing.T) {
	dir := t.TempDir()
	key, _, err := signature.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "k.key"), key, 0o600)
	for _, body := range []string{"", "tandem bundle signature v1\x00" + strings.Repeat("x", 32), strings.Repeat("0", 64) + "  a\nno newline",
		strings.Repeat("0", 64) + "  ../a\n", strings.Repeat("0", 64) + " *a\n"} {
		os.WriteFile(filepath.Join(dir, SumsFile), []byte(body), 0o644)
		if _, err := Sign(dir, filepath.Join(dir, "k.key")); err == nil {
			t.Errorf("signed %q", body)
		}
	}
}
