package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/e2e/image"
	"github.com/tandem-ota/tandem/internal/e2e/qemu"
)

// OVMF firmware of Debian's ovmf package (4 MiB flash layout).
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// x86Env is a built set of images for one boot loader: the factory disk and
// the signed bundles on its data partition (/data/bundles/<version>.tandem;
// with state the data partition is blank and the bundles are only served).
type x86Env struct {
	name   string // the variant: the loader, or "grub-state"
	loader string
	dir    string
	www    string     // the bundles again, served over HTTP by serve
	disk   string     // factory disk image (template, copied per machine)
	x      *image.X86 // the builder, for a version built later (patchRelease)
}

var (
	x86Mu   sync.Mutex
	x86Envs = map[string]*x86Env{}
)

// Bundles on the data partition; v4-exit and v4-hang fail to come up.
var x86Bundles = []struct{ name, version, behavior string }{
	{"v2", "2.0.0", ""},
	{"v3", "3.0.0", ""},
	{"v4-exit", "4.0.0", "exit"},
	{"v4-hang", "4.0.0", "hang"},
}

func x86Build(t *testing.T, loader string) *x86Env {
	t.Helper()
	return x86BuildVariant(t, loader, loader, nil)
}

// x86BuildVariant builds (once per name) the images of a loader, booting
// through tandem init when st is set.
func x86BuildVariant(t *testing.T, name, loader string, st *image.State) *x86Env {
	t.Helper()
	for _, p := range []string{"qemu-system-x86_64", "grub-mkimage", "mkfs.ext4", "mkfs.vfat", "mcopy", "sfdisk", "apt-get", "dpkg-deb"} {
		needTool(t, p)
	}
	for _, p := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(p); err != nil {
			needFile(t, p)
		}
	}
	x86Mu.Lock()
	defer x86Mu.Unlock()
	if e, ok := x86Envs[name]; ok {
		if e == nil {
			t.Fatalf("the %s images failed to build in an earlier test", name)
		}
		return e
	}
	x86Envs[name] = nil
	dir := filepath.Join(work(t), "x86-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hostTandem(t, dir, "key", "generate", "release")
	x := &image.X86{Loader: loader, Work: dir, Cache: Cache, Tandem: tandemBinary(t, "amd64"),
		PubKey: filepath.Join(dir, "release.pub"), Key: filepath.Join(dir, "release.key"), Attempts: 2, State: st}
	if err := x.Prepare(); err != nil {
		t.Fatal(err)
	}
	bundles := systemBundles(t, dir, image.X86Compatible, x.System, x.BootFiles)
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, p := range bundles {
		if err := os.Link(p, filepath.Join(www, name)); err != nil {
			t.Fatal(err)
		}
	}
	// The factory disk comes from the image builder (tandem image build);
	// with state its data partition is blank.
	e := &x86Env{name: name, loader: loader, dir: dir, www: www, disk: filepath.Join(dir, "factory.img"), x: x}
	if _, err := x.Factory(e.disk, bundles); err != nil {
		t.Fatal(err)
	}
	if st != nil {
		growDisk(t, e.disk)
	}
	x86Envs[name] = e
	return e
}

// machine makes a new device from the factory image (its own disk and EFI
// variable store) and powers it on.
func (e *x86Env) machine(t *testing.T, name string) *Machine {
	t.Helper()
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk, vars := filepath.Join(dir, "disk.img"), filepath.Join(dir, "OVMF_VARS.fd")
	copySparse(t, e.disk, disk)
	copySparse(t, ovmfVars, vars)
	m := &Machine{t: t, Name: fmt.Sprintf("%s/%s", e.name, name), Log: filepath.Join(dir, "console.log"),
		Binary: "qemu-system-x86_64", Args: qemu.X86(ovmfCode, vars, disk, 0), Disk: disk}
	m.Start()
	return m
}

// serve serves the bundles over HTTP on the host's loopback (with Range
// support, so installs can be delta) and returns the base URL the guest
// uses: QEMU's user-mode network maps 10.0.2.2 to the host's 127.0.0.1.
func (e *x86Env) serve(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(e.www)), ReadHeaderTimeout: time.Minute}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return fmt.Sprintf("http://10.0.2.2:%d/", l.Addr().(*net.TCPAddr).Port)
}

// systemBundles builds with system, a guest's System (the image builder's
// system partition), a signed bundle of every version in x86Bundles, and
// returns them by file name. bootFiles, when given, returns more slot
// arguments of a version (boot files), put first.
func systemBundles(t *testing.T, dir, compatible string, system func(out, version, behavior string) error,
	bootFiles ...func(version string) ([]string, error)) map[string]string {
	t.Helper()
	bundles := map[string]string{}
	for _, b := range x86Bundles {
		img := filepath.Join(dir, "system-"+b.name+".ext4")
		if err := system(img, b.version, b.behavior); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, b.name+".tandem")
		args := []string{"bundle", "create", out, "--compatible", compatible, "--version", b.version}
		for _, f := range bootFiles {
			slots, err := f(b.version)
			if err != nil {
				t.Fatal(err)
			}
			args = append(args, slots...)
		}
		hostTandem(t, dir, append(args, "--slot", "system="+img, "--key", filepath.Join(dir, "release.key"))...)
		bundles[b.name+".tandem"] = out
		os.Remove(img)
	}
	return bundles
}

// patchRelease builds a healthy system of version, its signed bundle
// name.tandem in the web root, and with the real `tandem bundle delta` the
// patch from the bundle from.tandem next to it (name.tandem.patches/), as a
// release pipeline publishes them (docs/delta.md, "Patches"). It returns the
// bytes the dynamic path (chunk reuse, --no-patch) downloads for the same
// update, measured on the host: a simulated device whose active slot holds
// from's system image installs the bundle from hostBase with --no-patch.
func (e *x86Env) patchRelease(t *testing.T, from, name, version, hostBase string) int64 {
	t.Helper()
	img := filepath.Join(e.dir, "system-"+name+".ext4")
	if err := e.x.System(img, version, ""); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(img)
	key := filepath.Join(e.dir, "release.key")
	bundle := filepath.Join(e.www, name+".tandem")
	args := []string{"bundle", "create", bundle, "--compatible", image.X86Compatible, "--version", version}
	if slots, err := e.x.BootFiles(version); err != nil {
		t.Fatal(err)
	} else {
		args = append(args, slots...)
	}
	hostTandem(t, e.dir, append(args, "--slot", "system="+img, "--key", key)...)
	hostTandem(t, e.dir, "bundle", "delta", bundle, "--from", filepath.Join(e.www, from+".tandem"), "--key", key)

	dev, src := filepath.Join(e.dir, "sim-"+name), filepath.Join(e.dir, "system-"+from+".ext4")
	defer os.RemoveAll(dev)
	defer os.Remove(src)
	pub := filepath.Join(e.dir, "release.pub")
	hostTandem(t, e.dir, "bundle", "extract", filepath.Join(e.www, from+".tandem"), "system", src, "--trust", pub)
	hostTandem(t, e.dir, "sim", "new", dev, "--boot-flow", "grub", "--image", src, "--compatible", image.X86Compatible,
		"--factory-version", "3.0.0", "--trust", pub)
	out := hostTandemOutput(t, e.dir, "--root", dev, "update", "install", hostBase+name+".tandem", "--no-patch", "--json")
	done, ok := parseDone(out)
	if !ok || done.Method != "delta" || done.BytesDownloaded <= 0 {
		t.Fatalf("the host's --no-patch install of %s: no delta done event:\n%s", name, out)
	}
	return done.BytesDownloaded
}
