// Package integrations_test checks what can be checked here of the Yocto
// layer and the Buildroot package, whose build systems do not run here
// (docs/integrations/yocto.md and buildroot.md say what was and was not
// built): the BitBake files against the syntax they use, the wic layout,
// the Go module lists against go.mod, tandem.mk through GNU make with
// Buildroot's functions stubbed, the post-image script for real, and every
// path and variable the two docs name against the shipped files.
package integrations_test

import (
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/testutil"
)

const layer = "yocto/meta-tandem"

// bitbakeFiles are the layer's BitBake files.
func bitbakeFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(layer, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && regexp.MustCompile(`\.(bb|bbclass|inc|conf|bbappend)$`).MatchString(p) {
			files = append(files, p)
		}
		return err
	})
	if len(files) < 6 {
		t.Fatalf("layer files: %v", files)
	}
	return files
}

// The subset of BitBake syntax the layer uses (BitBake's user manual,
// "Syntax and Operators"): assignments with overrides and flags, export,
// inherit, require/include, addtask, shell functions; no Python functions.
var (
	bbAssign   = regexp.MustCompile(`^(export\s+)?[A-Za-z_][A-Za-z0-9_\-${}.]*(:[A-Za-z0-9_\-${}]+)*(\[[a-z-]+\])?\s*(=|\?=|\?\?=|:=|\+=|=\+|\.=|=\.)\s*"(.*)$`)
	bbInherit  = regexp.MustCompile(`^inherit(\s+[a-z0-9_-]+)+$`)
	bbRequire  = regexp.MustCompile(`^(require|include)\s+(\S+)$`)
	bbAddtask  = regexp.MustCompile(`^addtask\s+[a-z_]+(\s+(after|before)\s+[a-z_]+(\s+[a-z_]+)*)*$`)
	bbShellFn  = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_\-]*(:[A-Za-z0-9_\-${}]+)*)\(\)\s*\{$`)
	bbVarRef   = regexp.MustCompile(`\$\{[^{}]*\}`)
	ocoreClass = map[string]bool{"go-mod": true, "go-mod-update-modules": true, "systemd": true, "deploy": true}
)

// TestBitbakeSyntax parses every BitBake file of the layer with the
// subset above, checks that quotes and ${} references close, that every
// required file and inherited class exists (in the layer, or one of
// oe-core's the layer names), and runs every shell function through
// bash -n.
func TestBitbakeSyntax(t *testing.T) {
	testutil.NeedTool(t, "bash")
	classes := map[string]bool{}
	for c := range ocoreClass {
		classes[c] = true
	}
	cs, _ := filepath.Glob(filepath.Join(layer, "classes", "*.bbclass"))
	for _, c := range cs {
		classes[strings.TrimSuffix(filepath.Base(c), ".bbclass")] = true
	}
	for _, f := range bitbakeFiles(t) {
		for _, p := range checkBitbake(f, classes) {
			t.Error(p)
		}
	}
}

func checkBitbake(file string, classes map[string]bool) (problems []string) {
	errorf := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	b, err := os.ReadFile(file)
	if err != nil {
		return []string{err.Error()}
	}
	lines := strings.Split(string(b), "\n")
	bpn := strings.SplitN(filepath.Base(file), "_", 2)[0]
	for i := 0; i < len(lines); i++ {
		l, at := lines[i], fmt.Sprintf("%s:%d", file, i+1)
		switch {
		case strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#"):
		case bbAssign.MatchString(l):
			// The value runs to the closing quote, over \-continued lines.
			value := bbAssign.FindStringSubmatch(l)[5]
			for strings.HasSuffix(value, `\`) && i+1 < len(lines) {
				i++
				value = strings.TrimSuffix(value, `\`) + " " + lines[i]
			}
			if !strings.HasSuffix(value, `"`) || strings.Count(strings.ReplaceAll(value, `\"`, ""), `"`) != 1 {
				errorf("%s: the value does not end in one closing quote: %q", at, value)
			}
			problems = append(problems, checkRefs(at, value)...)
		case bbInherit.MatchString(l):
			for _, c := range strings.Fields(l)[1:] {
				if !classes[c] {
					errorf("%s: inherit %s: no such class in the layer or the oe-core classes it uses", at, c)
				}
			}
		case bbRequire.MatchString(l):
			name := strings.ReplaceAll(bbRequire.FindStringSubmatch(l)[2], "${BPN}", bpn)
			if _, err := os.Stat(filepath.Join(filepath.Dir(file), name)); err != nil {
				errorf("%s: require %s: %v", at, name, err)
			}
		case bbAddtask.MatchString(l):
		case bbShellFn.MatchString(l):
			name := bbShellFn.FindStringSubmatch(l)[1]
			var body []string
			for i++; i < len(lines) && lines[i] != "}"; i++ {
				body = append(body, lines[i])
			}
			if i == len(lines) {
				errorf("%s: function %s is not closed by a } line", at, name)
				return problems
			}
			script := "f() {\n" + strings.Join(body, "\n") + "\n}\n"
			problems = append(problems, checkRefs(at, script)...)
			cmd := exec.Command("bash", "-n")
			cmd.Stdin = strings.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				errorf("%s: function %s: bash -n: %v\n%s", at, name, err, out)
			}
		default:
			errorf("%s: not in the BitBake subset this layer uses: %q", at, l)
		}
	}
	return problems
}

// checkRefs: every ${ closes, and no inline Python (${@...}) is used.
func checkRefs(at, s string) (problems []string) {
	rest := bbVarRef.ReplaceAllString(s, "")
	if strings.Contains(rest, "${") {
		problems = append(problems, fmt.Sprintf("%s: an unclosed or nested ${ in %q", at, s))
	}
	if strings.Contains(s, "${@") {
		problems = append(problems, fmt.Sprintf("%s: inline Python is outside the checked subset", at))
	}
	return problems
}

// TestBitbakeChecker: the checker finds the mistakes it is for.
func TestBitbakeChecker(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range []string{
		"FOO = \"bar\n", "FOO = \"${BAR\"\n", "inherit nosuchclass\n", "require nosuch.inc\n",
		"do_x() {\n\tif then\n}\n", "do_x() {\n\techo\n", "python do_x() {\n}\n", "FOO bar\n",
		"FOO = \"${@d.getVar('X')}\"\n",
	} {
		f := filepath.Join(dir, "x_1.bb")
		os.WriteFile(f, []byte(bad), 0o644)
		if len(checkBitbake(f, map[string]bool{"go-mod": true})) == 0 {
			t.Errorf("the checker accepted %q", bad)
		}
	}
}

// TestWks: the wic layout uses only wic's kickstart commands and options
// the layer relies on, every ${VAR} in it is passed through WICVARS, and
// the partition numbers match the system.toml the image class writes.
func TestWks(t *testing.T) {
	wks, err := os.ReadFile(filepath.Join(layer, "wic/tandem-grub-efi.wks.in"))
	if err != nil {
		t.Fatal(err)
	}
	class, _ := os.ReadFile(filepath.Join(layer, "classes/tandem-image.bbclass"))
	opts := regexp.MustCompile(`^--(source|sourceparams|label|part-name|active|align|use-uuid|fstype|fixed-size|size|ptable|timeout|configfile)(=.*)?$`)
	var labels []string
	for i, l := range strings.Split(string(wks), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "part" && f[0] != "bootloader" {
			t.Errorf("wks:%d: unknown command %q", i+1, f[0])
		}
		for j, o := range f[1:] {
			if j == 0 && f[0] == "part" && strings.HasPrefix(o, "/") {
				continue // the mount point
			}
			if !opts.MatchString(o) {
				if j > 0 && !strings.HasPrefix(o, "--") && strings.HasPrefix(f[j], "--") && !strings.Contains(f[j], "=") {
					if f[j] == "--label" {
						labels = append(labels, o)
					}
					continue // the value of the option before
				}
				t.Errorf("wks:%d: unknown option %q", i+1, o)
			}
		}
		for _, v := range regexp.MustCompile(`\$\{([A-Z_]+)\}`).FindAllStringSubmatch(l, -1) {
			if !regexp.MustCompile(`WICVARS:append = "[^"]*\b` + v[1] + `\b`).Match(class) {
				t.Errorf("wks:%d: ${%s} is not in the class's WICVARS", i+1, v[1])
			}
		}
	}
	if got, want := strings.Join(labels, " "), "boot system-a system-b data"; got != want {
		t.Errorf("partitions %q, want %q (system.toml: system-a = partition 2, system-b = 3)", got, want)
	}
	for _, p := range []string{"[slots.system-a]\ntype = \"block\"\npartition = 2", "[slots.system-b]\ntype = \"block\"\npartition = 3", `boot-dir = "/boot"`} {
		if !strings.Contains(string(class), p) {
			t.Errorf("tandem-image.bbclass's system.toml lacks %q", p)
		}
	}
	cfg, _ := os.ReadFile(filepath.Join(layer, "wic/tandem-grub.cfg"))
	if !strings.Contains(string(wks), `--configfile="tandem-grub.cfg"`) || !strings.Contains(string(cfg), "source ${prefix}/tandem.cfg") ||
		!strings.Contains(string(class), "tandem.cfg;EFI/BOOT/tandem.cfg") {
		t.Error("grub.cfg, tandem.cfg and the ESP do not line up")
	}
}

// TestYoctoGoModules: tandem-go-mods.inc lists exactly the modules whose
// packages tandem is built from, at go.mod's versions, with the SHA-256 of
// their zips (checked against the local module cache where it holds them),
// and tandem-licenses.inc the md5 of licence files that exist there.
func TestYoctoGoModules(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}@{{.Version}}{{end}}{{end}}", "../cmd/tandem").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, m := range strings.Fields(string(out)) {
		want[m] = true
	}
	modcache := goEnv(t, "GOMODCACHE")
	inc, err := os.ReadFile(filepath.Join(layer, "recipes-support/tandem/tandem-go-mods.inc"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, m := range regexp.MustCompile(`gomod://([^;]+);version=([^;]+);sha256sum=([0-9a-f]{64})`).FindAllStringSubmatch(string(inc), -1) {
		mod := m[1] + "@" + m[2]
		got[mod] = true
		zip := filepath.Join(modcache, "cache/download", escape(m[1]), "@v", m[2]+".zip")
		if b, err := os.ReadFile(zip); err == nil && fmt.Sprintf("%x", sha256.Sum256(b)) != m[3] {
			t.Errorf("%s: sha256sum %s, the module cache's zip has %x", mod, m[3], sha256.Sum256(b))
		}
	}
	for m := range want {
		if !got[m] {
			t.Errorf("tandem-go-mods.inc lacks %s: run go run ./tools/yoctomods", m)
		}
	}
	for m := range got {
		if !want[m] {
			t.Errorf("tandem-go-mods.inc lists %s, which tandem no longer uses: run go run ./tools/yoctomods", m)
		}
	}
	lic, _ := os.ReadFile(filepath.Join(layer, "recipes-support/tandem/tandem-licenses.inc"))
	entries := regexp.MustCompile(`file://pkg/mod/(\S+);md5=([0-9a-f]{32});spdx=`).FindAllStringSubmatch(string(lic), -1)
	if len(entries) < len(want) {
		t.Errorf("tandem-licenses.inc has %d licence files for %d modules", len(entries), len(want))
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(modcache, e[1]))
		if err != nil {
			t.Errorf("licence file %s: %v", e[1], err)
		} else if fmt.Sprintf("%x", md5.Sum(b)) != e[2] {
			t.Errorf("licence file %s: md5 %s, the file has %x", e[1], e[2], md5.Sum(b))
		}
	}
}

func escape(p string) string {
	return regexp.MustCompile(`[A-Z]`).ReplaceAllStringFunc(p, func(s string) string { return "!" + strings.ToLower(s) })
}

func goEnv(t *testing.T, name string) string {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// buildrootStub stands in for Buildroot around tandem.mk: its functions
// (qstrip, github, sep) and variables, the golang-package infrastructure as
// nothing, and rules that run the package's hooks with $(@D) = the tandem
// source tree (this repository), after an empty usr/bin/tandem where the
// infrastructure's install step puts the binary.
const buildrootStub = `
define sep


endef
qstrip = $(strip $(subst ",,$(1)))
github = https://github.com/$(1)/$(2)/archive/$(3)
INSTALL = install
golang-package =
host-golang-package =
include $(BR2_EXTERNAL_TANDEM_PATH)/package/tandem/tandem.mk

$(SRC)/.stamp_target_installed:
	$(INSTALL) -D -m 0755 /dev/null $(TARGET_DIR)/usr/bin/tandem
	$(foreach h,$(TANDEM_POST_INSTALL_TARGET_HOOKS),$(call $(h))$(sep))
$(SRC)/.stamp_systemd_installed:
	$(TANDEM_INSTALL_INIT_SYSTEMD)
show:
	@echo 'site=$(TANDEM_SITE) gomod=$(TANDEM_GOMOD) targets=$(TANDEM_BUILD_TARGETS) ldflags=$(TANDEM_LDFLAGS) env=$(TANDEM_GO_ENV)'
`

// TestBuildrootMk runs tandem.mk through GNU make: make -n shows what the
// hooks would run, then they run into a scratch TARGET_DIR with this
// repository as the package's source.
func TestBuildrootMk(t *testing.T) {
	testutil.NeedTool(t, "make")
	dir := t.TempDir()
	stub := filepath.Join(dir, "stub.mk")
	os.WriteFile(stub, []byte(buildrootStub), 0o644)
	src, _ := filepath.Abs("..")
	ext, _ := filepath.Abs("buildroot")
	target := filepath.Join(dir, "target")
	key := filepath.Join(dir, "release.pub")
	os.WriteFile(key, []byte("not checked here"), 0o644)
	conf := filepath.Join(dir, "system.toml")
	os.WriteFile(conf, []byte("compatible = \"x\"\n"), 0o644)
	// --no-print-directory: under `make test` the nested make would print "Entering directory".
	args := []string{"--no-print-directory", "-f", stub, "SRC=" + src, "BR2_EXTERNAL_TANDEM_PATH=" + ext, "TARGET_DIR=" + target,
		`BR2_PACKAGE_TANDEM_VERSION="v1.2.0"`, `BR2_PACKAGE_TANDEM_SYSTEM_TOML="` + conf + `"`,
		`BR2_PACKAGE_TANDEM_KEYS="` + key + `"`, "BR2_PACKAGE_TANDEM_RUGIX_CTRL=y"}
	make := func(extra ...string) string {
		t.Helper()
		out, err := exec.Command("make", append(args, extra...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("make %v: %v\n%s", extra, err, out)
		}
		return string(out)
	}
	if got, want := strings.TrimSpace(make("show")), "site=https://github.com/tandem-ota/tandem/archive/v1.2.0 gomod=github.com/tandem-ota/tandem targets=cmd/tandem ldflags=-X github.com/tandem-ota/tandem/internal/cli.Version=v1.2.0 env=CGO_ENABLED=0"; got != want {
		t.Errorf("tandem.mk variables:\n got %s\nwant %s", got, want)
	}
	dry := make("-n", src+"/.stamp_target_installed", src+"/.stamp_systemd_installed")
	for _, w := range []string{"ln -sf ../bin/tandem " + target + "/usr/sbin/tandem-init", "/etc/tandem/system.toml", "ln -sf tandem " + target + "/usr/bin/rugix-ctrl",
		target + "/usr/lib/systemd/system/tandem-health.timer", "80-tandem.preset"} {
		if !strings.Contains(dry, w) {
			t.Errorf("make -n does not show %q:\n%s", w, dry)
		}
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("make -n wrote %s", target)
	}
	make(src+"/.stamp_target_installed", src+"/.stamp_systemd_installed")
	for _, p := range []string{"usr/sbin/tandem-init", "etc/tandem/system.toml", "etc/tandem/keys/release.pub", "usr/bin/rugix-ctrl",
		"usr/share/tandem/bootloader/grub/tandem.cfg", "usr/lib/systemd/system/tandem-health.service", "usr/lib/systemd/system/tandem-watch.service",
		"usr/lib/systemd/system-preset/80-tandem.preset"} {
		if _, err := os.Lstat(filepath.Join(target, p)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
}

// TestBuildrootPostImage runs post-image.sh as Buildroot would, with a
// real host tandem: it signs a bundle that tandem bundle verify accepts.
func TestBuildrootPostImage(t *testing.T) {
	testutil.NeedTool(t, "sh")
	dir := t.TempDir()
	host := filepath.Join(dir, "host")
	bin := filepath.Join(host, "bin", "tandem")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/tandem").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	images := filepath.Join(dir, "images")
	os.MkdirAll(images, 0o755)
	rootfs := make([]byte, 3<<20)
	for i := range rootfs {
		rootfs[i] = byte(i * 7 / 4096)
	}
	os.WriteFile(filepath.Join(images, "rootfs.ext4"), rootfs, 0o644)
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOST_DIR="+host)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(bin, "key", "generate", "release"); err != nil {
		t.Fatalf("key generate: %v\n%s", err, out)
	}
	script, _ := filepath.Abs("buildroot/package/tandem/post-image.sh")
	if out, err := run(script, images, "--compatible", "acme-gw", "--version", "1.2.0"); err == nil || !strings.Contains(out, "--key is required") {
		t.Errorf("without --key: %v: %s", err, out)
	}
	if out, err := run(script, images, "--compatible", "acme-gw", "--version", "1.2.0", "--key", filepath.Join(dir, "release.key")); err != nil {
		t.Fatalf("post-image.sh: %v\n%s", err, out)
	}
	out, err := run(bin, "bundle", "verify", filepath.Join(images, "update.tandem"), "--trust", filepath.Join(dir, "release.pub"))
	if err != nil {
		t.Fatalf("bundle verify: %v\n%s", err, out)
	}
	out, _ = run(bin, "bundle", "inspect", filepath.Join(images, "update.tandem"))
	for _, w := range []string{"acme-gw", "1.2.0", "system"} {
		if !strings.Contains(out, w) {
			t.Errorf("bundle inspect lacks %q:\n%s", w, out)
		}
	}
}

// TestDocsMatchShippedFiles: every path under the layer or the Buildroot
// tree, and every TANDEM_ or BR2_ variable, that the docs name exists in
// the shipped files; every variable the classes and Config.in let users
// set is documented.
func TestDocsMatchShippedFiles(t *testing.T) {
	shipped := map[string]string{} // path relative to integrations/ → content
	filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasPrefix(p, "yocto/") || strings.HasPrefix(p, "buildroot/")) {
			b, _ := os.ReadFile(p)
			shipped[p] = string(b)
		}
		return err
	})
	var all strings.Builder
	for _, c := range shipped {
		all.WriteString(c)
	}
	code := regexp.MustCompile("`([^`]+)`")
	pathRE := regexp.MustCompile(`(?:integrations/)?((?:yocto/)?meta-tandem|(?:buildroot/)?package/tandem|buildroot)(/[A-Za-z0-9_.\-/]*)?`)
	varRE := regexp.MustCompile(`\b(TANDEM_[A-Z0-9_]+|BR2_[A-Z0-9_]*TANDEM[A-Z0-9_]*|HOST_TANDEM_[A-Z_]+)\b`)
	for doc, root := range map[string]string{"../docs/integrations/yocto.md": "yocto/", "../docs/integrations/buildroot.md": "buildroot/"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, m := range code.FindAllStringSubmatch(text, -1) {
			for _, p := range pathRE.FindAllString(m[1], -1) {
				p = strings.TrimSuffix(strings.TrimPrefix(p, "integrations/"), "/")
				if p+"/" == root {
					continue // the tree itself
				}
				if !strings.HasPrefix(p, root) {
					p = root + p
				}
				if !exists(shipped, p) {
					t.Errorf("%s names %s, which is not shipped", doc, p)
				}
			}
		}
		for _, v := range varRE.FindAllString(text, -1) {
			if !strings.Contains(all.String(), v) {
				t.Errorf("%s names %s, which no shipped file uses", doc, v)
			}
		}
		// What users can set must be documented.
		var settable []string
		for p, c := range shipped {
			if !strings.HasPrefix(p, root) {
				continue
			}
			for _, m := range regexp.MustCompile(`(?m)^(TANDEM_[A-Z_]+) \?\?=|^config (BR2_[A-Z_]+)`).FindAllStringSubmatch(c, -1) {
				settable = append(settable, m[1]+m[2])
			}
		}
		for _, v := range settable {
			if !strings.Contains(text, v) {
				t.Errorf("%s does not document %s", doc, v)
			}
		}
	}
}

func exists(shipped map[string]string, p string) bool {
	if _, ok := shipped[p]; ok {
		return true
	}
	for f := range shipped {
		if strings.HasPrefix(f, p+"/") {
			return true
		}
	}
	return false
}
