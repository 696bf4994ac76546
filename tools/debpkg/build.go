package main

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/tandem-ota/tandem/bootloader"
	"github.com/tandem-ota/tandem/systemd"
)

// Homepage is the project's home, written into the control files.
const Homepage = "https://github.com/tandem-ota/tandem"

// DefaultMaintainer names who built a package when -maintainer is not given.
// The .invalid domain (RFC 2606) never routes: set DEB_MAINTAINER for a
// release.
const DefaultMaintainer = "tandem maintainers <maintainers@tandem-ota.invalid>"

// UnitDir is where the packages install the systemd units: bookworm's
// debhelper and lintian expect /lib/systemd/system (the same directory as
// /usr/lib/systemd/system on a merged-/usr system).
const UnitDir = "lib/systemd/system"

// EnabledUnits are the units that start by default: the health check that
// commits or rolls back a trial boot, and its timer. The fleet units need a
// configuration of their own and are enabled by the administrator
// (docs/packages.md).
var EnabledUnits = []string{"tandem-health.service", "tandem-health.timer"}

// ExampleConfig is the conffile that shows a device's configuration. tandem
// never reads it: it reads /etc/tandem/system.toml, which the administrator
// writes (from this example), and every unit waits for that file.
const ExampleConfig = "etc/tandem/system.toml.example"

// Options say what Build packages.
type Options struct {
	// Binaries maps a Debian architecture (amd64, arm64, armhf) to the
	// static tandem binary built for it.
	Binaries   map[string]string
	Version    string // Debian version (GitVersion)
	Maintainer string
	Date       time.Time // the changelog's date and the files' mtime
	Out        string    // directory the .deb files are written to
	// Licences are the licence texts of the Go modules linked into the
	// binary (Licences), for the copyright file.
	Licences []ModuleLicence
}

// Build writes tandem_<version>_<arch>.deb for every binary and
// tandem-rugix-ctrl_<version>_all.deb, and returns their paths.
func Build(o Options) ([]string, error) {
	if !upstreamVersion.MatchString(o.Version) {
		return nil, fmt.Errorf("version %q is not a valid Debian version", o.Version)
	}
	if len(o.Binaries) == 0 {
		return nil, fmt.Errorf("no binaries to package")
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	work, err := os.MkdirTemp("", "debpkg-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	archs := make([]string, 0, len(o.Binaries))
	for a := range o.Binaries {
		archs = append(archs, a)
	}
	sort.Strings(archs)
	var debs []string
	for _, arch := range archs {
		t := newTree(filepath.Join(work, "tandem-"+arch), o.Date)
		if err := tandemTree(t, o, o.Binaries[arch]); err != nil {
			return nil, fmt.Errorf("tandem %s: %w", arch, err)
		}
		deb, err := t.build(o, "tandem", arch, "", tandemDescription)
		if err != nil {
			return nil, err
		}
		debs = append(debs, deb)
	}
	t := newTree(filepath.Join(work, "tandem-rugix-ctrl"), o.Date)
	if err := rugixTree(t, o); err != nil {
		return nil, fmt.Errorf("tandem-rugix-ctrl: %w", err)
	}
	deb, err := t.build(o, "tandem-rugix-ctrl", "all", "tandem (= "+o.Version+")", rugixDescription)
	if err != nil {
		return nil, err
	}
	return append(debs, deb), nil
}

const tandemDescription = `A/B over-the-air update agent for embedded Linux
 tandem writes an update to the spare boot group of a device, boots it once
 on trial, and keeps it only when the new system commits itself. Bundles are
 signed and verified chunk by chunk before a byte reaches a slot; delta
 updates come from any HTTP server with Range support. It works with GRUB,
 U-Boot, systemd-boot and the Raspberry Pi's tryboot, and takes updates from
 Mender, thin-edge.io, Eclipse hawkBit, Memfault or a plain update channel.
 .
 This package holds the static tandem binary (agent, command line and
 bundler), tandem-init, the systemd units, man pages, shell completions and
 an example configuration in /etc/tandem/system.toml.example. Nothing runs
 until /etc/tandem/system.toml exists.`

// lintianOverrides are the lintian tags the tandem package overrides, each
// with the reason (docs/packages.md lists what lintian reports).
const lintianOverrides = `# tandem is built with CGO_ENABLED=0 on purpose: one binary for every
# device, and tandem-init runs as PID 1 before any library may be reachable.
# (lintian exempts Go binaries only when it sees a source package that
# build-depends on golang-go; these packages are built from the binaries.)
tandem: statically-linked-binary [usr/bin/tandem]
`

const rugixDescription = `rugix-ctrl command line of tandem
 Installs /usr/bin/rugix-ctrl as a link to tandem. Invoked under that name,
 tandem accepts the commands and flags that Rugix's fleet integrations (the
 Mender update module, the thin-edge.io workflow, the Memfault and Nexigon
 scripts) call, so that they run unchanged on a tandem device.`

func tandemTree(t *tree, o Options, binary string) error {
	b, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("binary: %w", err)
	}
	t.file("usr/bin/tandem", b, 0o755)
	t.link("usr/sbin/tandem-init", "../bin/tandem")
	units, err := fs.Glob(systemd.Units, "*")
	if err != nil {
		return err
	}
	for _, u := range units {
		b, err := fs.ReadFile(systemd.Units, u)
		if err != nil {
			return err
		}
		t.file(path.Join(UnitDir, u), b, 0o644)
	}
	t.file("usr/share/tandem/bootloader/grub/tandem.cfg", bootloader.GrubScript, 0o644)
	t.file("usr/share/tandem/bootloader/u-boot/boot.cmd", bootloader.UBootScript, 0o644)
	t.conffile(ExampleConfig, []byte(exampleConfig), 0o644)
	t.mkdir("etc/tandem/keys", 0o755)
	root, _ := cliCommands()
	if err := manPages(t, root, o.Version, o.Date); err != nil {
		return err
	}
	if err := completions(t, root); err != nil {
		return err
	}
	t.docs("tandem", o)
	t.file("usr/share/lintian/overrides/tandem", []byte(lintianOverrides), 0o644)
	return t.maintainerScripts(units)
}

func rugixTree(t *tree, o Options) error {
	t.link("usr/bin/rugix-ctrl", "tandem")
	_, rugix := cliCommands()
	if err := manPages(t, rugix, o.Version, o.Date); err != nil {
		return err
	}
	t.docs("tandem-rugix-ctrl", o)
	return nil
}

// tree is the directory a package is built from: its files, the conffiles
// and the maintainer scripts, all with the same mtime. The first error
// sticks (err) and build reports it.
type tree struct {
	root      string
	mtime     time.Time
	conffiles []string
	scripts   map[string]string
	err       error
}

func newTree(dir string, mtime time.Time) *tree {
	return &tree{root: dir, mtime: mtime, scripts: map[string]string{}}
}

func (t *tree) file(name string, data []byte, mode os.FileMode) {
	if t.err != nil {
		return
	}
	p := filepath.Join(t.root, name)
	if t.err = os.MkdirAll(filepath.Dir(p), 0o755); t.err != nil {
		return
	}
	if t.err = os.WriteFile(p, data, mode); t.err != nil {
		return
	}
	t.err = os.Chmod(p, mode) // not narrowed by the umask
}

func (t *tree) conffile(name string, data []byte, mode os.FileMode) {
	t.file(name, data, mode)
	t.conffiles = append(t.conffiles, "/"+name)
}

func (t *tree) mkdir(name string, mode os.FileMode) {
	if t.err == nil {
		t.err = os.MkdirAll(filepath.Join(t.root, name), mode)
	}
}

func (t *tree) link(name, target string) {
	if t.err != nil {
		return
	}
	p := filepath.Join(t.root, name)
	if t.err = os.MkdirAll(filepath.Dir(p), 0o755); t.err == nil {
		t.err = os.Symlink(target, p)
	}
}

// gz writes data compressed as gzip -9n does: best compression, no name,
// no timestamp (what Debian policy asks of man pages and changelogs).
func (t *tree) gz(name string, data []byte) {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	w.Write(data)
	w.Close()
	t.file(name, buf.Bytes(), 0o644)
}

// docs writes /usr/share/doc/<pkg>/: the copyright file and the changelog.
// A version without a Debian revision is a native package, whose changelog
// is changelog.gz.
func (t *tree) docs(pkg string, o Options) {
	date := o.Date.UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700")
	changelog := fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n  * Built from the tandem sources by tools/debpkg.\n\n -- %s  %s\n",
		pkg, o.Version, o.Maintainer, date)
	t.gz("usr/share/doc/"+pkg+"/changelog.gz", []byte(changelog))
	t.file("usr/share/doc/"+pkg+"/copyright", copyright(o.Licences), 0o644)
}

// maintainerScripts writes the maintainer scripts for the units: enable the default
// ones on first install (and keep the administrator's choice on upgrades),
// stop them on removal, forget them on purge. They honour DPKG_ROOT, so
// that dpkg --root with --force-script-chrootless installs into a
// directory without touching the host's systemd.
func (t *tree) maintainerScripts(units []string) error {
	var enabled, other []string
	for _, u := range units {
		if contains(EnabledUnits, u) {
			enabled = append(enabled, u)
		} else {
			other = append(other, u)
		}
	}
	if len(enabled) != len(EnabledUnits) {
		return fmt.Errorf("the units to enable %v are not all in systemd/", EnabledUnits)
	}
	data := map[string]string{
		"Enabled": strings.Join(enabled, " "),
		"Other":   strings.Join(other, " "),
		"All":     strings.Join(units, " "),
	}
	for _, name := range []string{"postinst", "prerm", "postrm"} {
		var buf bytes.Buffer
		if err := maintScripts.ExecuteTemplate(&buf, name, data); err != nil {
			return err
		}
		t.scripts[name] = buf.String()
	}
	return nil
}

var maintScripts = template.Must(template.New("").Parse(`
{{define "postinst"}}#!/bin/sh
# postinst of tandem (written by tools/debpkg)
set -e
if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
	# Enabled by default: enable on the first install; on an upgrade
	# only if the administrator did not disable them.
	for unit in {{.Enabled}}; do
		deb-systemd-helper unmask "$unit" >/dev/null || true
		if deb-systemd-helper --quiet was-enabled "$unit"; then
			deb-systemd-helper enable "$unit" >/dev/null || true
		else
			deb-systemd-helper update-state "$unit" >/dev/null || true
		fi
	done
	# Enabled by the administrator (each needs its own configuration):
	# keep the administrator's choice, enable nothing new.
	for unit in {{.Other}}; do
		deb-systemd-helper unmask "$unit" >/dev/null || true
		if deb-systemd-helper debian-installed "$unit" && deb-systemd-helper --quiet was-enabled "$unit"; then
			deb-systemd-helper enable "$unit" >/dev/null || true
		fi
		deb-systemd-helper update-state "$unit" >/dev/null || true
	done
	if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
	fi
fi
exit 0
{{end}}
{{define "prerm"}}#!/bin/sh
# prerm of tandem (written by tools/debpkg)
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	deb-systemd-invoke stop {{.All}} >/dev/null || true
fi
exit 0
{{end}}
{{define "postrm"}}#!/bin/sh
# postrm of tandem (written by tools/debpkg)
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = remove ] && command -v deb-systemd-helper >/dev/null; then
	for unit in {{.All}}; do
		deb-systemd-helper mask "$unit" >/dev/null || true
	done
fi
if [ "$1" = purge ]; then
	if command -v deb-systemd-helper >/dev/null; then
		for unit in {{.All}}; do
			deb-systemd-helper purge "$unit" >/dev/null || true
			deb-systemd-helper unmask "$unit" >/dev/null || true
		done
	fi
	# tandem's state in the default data-dir (slot database, chunk
	# indexes, resume journal); a data-dir set in system.toml is left.
	rm -rf "${DPKG_ROOT:-}/var/lib/tandem"
fi
exit 0
{{end}}`))

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// build writes DEBIAN/ (control, conffiles, md5sums, scripts) and runs
// dpkg-deb --build with every file owned by root.
func (t *tree) build(o Options, pkg, arch, depends, description string) (string, error) {
	if t.err != nil {
		return "", t.err
	}
	var sums bytes.Buffer
	var size int64
	err := filepath.WalkDir(t.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == t.root {
			return err
		}
		rel, _ := filepath.Rel(t.root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		size += (info.Size() + 1023) / 1024 * 1024
		if d.IsDir() || !info.Mode().IsRegular() {
			size += 1024
			return nil
		}
		if contains(t.conffiles, "/"+rel) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(&sums, "%x  %s\n", md5.Sum(b), filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return "", err
	}
	var control bytes.Buffer
	fmt.Fprintf(&control, "Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: %s\nInstalled-Size: %d\n",
		pkg, o.Version, arch, o.Maintainer, size/1024)
	if depends != "" {
		fmt.Fprintf(&control, "Depends: %s\n", depends)
	}
	fmt.Fprintf(&control, "Section: admin\nPriority: optional\nHomepage: %s\nDescription: %s\n", Homepage, description)
	t.file("DEBIAN/control", control.Bytes(), 0o644)
	t.file("DEBIAN/md5sums", sums.Bytes(), 0o644)
	if len(t.conffiles) > 0 {
		t.file("DEBIAN/conffiles", []byte(strings.Join(t.conffiles, "\n")+"\n"), 0o644)
	}
	for name, s := range t.scripts {
		t.file("DEBIAN/"+name, []byte(s), 0o755)
	}
	if t.err != nil {
		return "", t.err
	}
	// Every file, directory and link gets the same mtime: with
	// SOURCE_DATE_EPOCH set the same way, dpkg-deb writes the same bytes.
	err = filepath.WalkDir(t.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil // dpkg-deb clamps links' mtimes to SOURCE_DATE_EPOCH
		}
		return os.Chtimes(p, t.mtime, t.mtime)
	})
	if err != nil {
		return "", err
	}
	deb := filepath.Join(o.Out, fmt.Sprintf("%s_%s_%s.deb", pkg, o.Version, arch))
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", t.root, deb)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", t.mtime.Unix()))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("dpkg-deb --build %s: %w: %s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	return deb, nil
}
