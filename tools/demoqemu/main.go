// Command demoqemu is `make demo-qemu`: it makes a small root file system
// from Debian packages (the real-boot tests' guest, internal/e2e/image),
// turns it into a factory disk with the real `tandem image build`, boots it
// in QEMU (UEFI, GRUB), serves version 2's bundle over HTTP on 127.0.0.1,
// installs it from inside the guest by delta, reboots into the trial and
// commits it, printing what happened at each step. It needs what `make deps`
// installs and about 1 GB in the work directory; it takes a few minutes.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	diskimage "github.com/tandem-ota/tandem/internal/image"

	"github.com/tandem-ota/tandem/internal/e2e/image"
	"github.com/tandem-ota/tandem/internal/e2e/qemu"
)

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

func main() {
	tandem := flag.String("tandem", "bin/tandem", "the static amd64 tandem binary (make build)")
	work := flag.String("work", "/var/tmp/tandem-demo", "work directory (kept: disk, bundles, console log)")
	cache := flag.String("cache", "/var/tmp/tandem-e2e", "download cache of the Debian packages (shared with the e2e tests)")
	flag.Parse()
	if err := run(*tandem, *work, *cache); err != nil {
		fmt.Fprintf(os.Stderr, "demo-qemu: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

// sh runs a host command, printing it and its output.
func sh(dir, name string, args ...string) error {
	fmt.Printf("$ %s %s\n", filepath.Base(name), strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, os.Stdout, os.Stdout
	return cmd.Run()
}

const specText = `compatible = "tandem-demo"
version = "%s"
boot-flow = "grub"
spare = "empty"

[disk]
partition-prefix = "/dev/vda"
system-size = "48M"
data-size = "64M"

[boot]
kernel = "/boot/vmlinuz"
initramfs = "/boot/initrd.img"
cmdline = "console=ttyS0 panic=1 quiet"
attempts = 2

[keys]
signing = ["release.key"]
trusted = ["release.pub"]

[tandem]
binary = "tandem"
reboot-command = ["/bin/reboot", "-f"]
`

func run(tandemBin, work, cache string) error {
	for _, f := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w (hint: make deps installs ovmf)", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(work, "www"), 0o755); err != nil {
		return err
	}
	bin, err := filepath.Abs(tandemBin)
	if err != nil {
		return err
	}
	if err := diskimage.CopyFile(bin, filepath.Join(work, "tandem"), 0o755); err != nil {
		return fmt.Errorf("%w (hint: make build)", err)
	}
	tandem := filepath.Join(work, "tandem")

	step("1. a root file system from Debian packages (linux-image-amd64, busybox-static), versions 1.0.0 and 2.0.0")
	x := &image.X86{Loader: image.LoaderGrub, Work: work, Cache: cache}
	if err := x.Prepare(); err != nil {
		return err
	}
	for _, v := range []string{"1.0.0", "2.0.0"} {
		dir := filepath.Join(work, "rootfs-"+v)
		os.RemoveAll(dir)
		if err := x.RootFS(dir, v); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(work, "image-"+v+".toml"), fmt.Appendf(nil, specText, v), 0o644); err != nil {
			return err
		}
		fmt.Printf("%s: busybox, /sbin/init, /boot/vmlinuz, /boot/initrd.img\n", dir)
	}
	os.Remove(filepath.Join(work, "release.key"))
	os.Remove(filepath.Join(work, "release.pub"))
	if err := sh(work, tandem, "key", "generate", "release"); err != nil {
		return err
	}

	step("2. tandem image build: the factory disk of 1.0.0 (and its bundle), then 2.0.0's bundle")
	if err := sh(work, tandem, "image", "build", "--spec", "image-1.0.0.toml", "--rootfs", "rootfs-1.0.0", "--out", "disk.img", "--bundle", "www/v1.tandem"); err != nil {
		return err
	}
	if err := sh(work, tandem, "image", "build", "--spec", "image-2.0.0.toml", "--rootfs", "rootfs-2.0.0", "--out", "disk-2.0.0.img", "--bundle", "www/v2.tandem"); err != nil {
		return err
	}
	os.Remove(filepath.Join(work, "disk-2.0.0.img"))

	step("3. serve the bundles over HTTP on 127.0.0.1 (with Range: a device fetches only what it lacks)")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var served atomic.Int64
	files := http.FileServer(http.Dir(filepath.Join(work, "www")))
	srv := &http.Server{ReadHeaderTimeout: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("    http: %s %s %s\n", r.Method, r.URL.Path, r.Header.Get("Range"))
		files.ServeHTTP(countingWriter{w, &served}, r)
	})}
	go srv.Serve(l)
	defer srv.Close()
	url := fmt.Sprintf("http://10.0.2.2:%d/v2.tandem", l.Addr().(*net.TCPAddr).Port) // QEMU's user network: 10.0.2.2 is the host
	fmt.Printf("serving %s on %s (the guest sees it as %s)\n", filepath.Join(work, "www"), l.Addr(), url)

	step("4. boot the disk in QEMU (OVMF, the real GRUB with tandem's script)")
	vars := filepath.Join(work, "OVMF_VARS.fd")
	if err := diskimage.CopyFile(ovmfVars, vars, 0o644); err != nil {
		return err
	}
	log := filepath.Join(work, "console.log")
	os.Remove(log)
	vm, err := qemu.Start(qemu.Options{Binary: "qemu-system-x86_64", Args: qemu.X86(ovmfCode, vars, filepath.Join(work, "disk.img"), 0), Log: log, Scale: 1})
	if err != nil {
		return err
	}
	defer vm.Kill()
	g := &guest{vm: vm}
	if err := g.booted("a", "1.0.0"); err != nil {
		return err
	}
	if err := g.run("export PATH=/bin:/usr/bin; tandem system info"); err != nil {
		return err
	}

	step("5. install 2.0.0 from inside the guest, by delta from the slot it runs")
	if err := g.run("tandem update install " + url); err != nil {
		return err
	}
	size, _ := os.Stat(filepath.Join(work, "www", "v2.tandem"))
	fmt.Printf("the host served %d bytes of the %d-byte bundle\n", served.Load(), size.Size())

	step("6. reboot into 2.0.0 on trial (group b)")
	if err := vm.Send("tandem system reboot --spare"); err != nil {
		return err
	}
	if err := g.booted("b", "2.0.0"); err != nil {
		return err
	}
	if err := g.run("export PATH=/bin:/usr/bin; tandem system info"); err != nil {
		return err
	}

	step("7. commit: 2.0.0 becomes the default")
	if err := g.run("tandem system commit && tandem system info"); err != nil {
		return err
	}
	fmt.Printf("\ndemo done: 1.0.0 → 2.0.0 by delta, tried and committed. Console log: %s\n", log)
	return nil
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

type guest struct{ vm *qemu.VM }

var bootedRe = regexp.MustCompile(`TANDEM-E2E booted group=(\S*) version=(\S*)\r?\n`)

// booted waits for the guest's boot marker and its command loop.
func (g *guest) booted(group, version string) error {
	m, err := g.vm.Expect(bootedRe, 5*time.Minute)
	if err != nil {
		return fmt.Errorf("no boot: %w", err)
	}
	fmt.Printf("booted: group %s, version %s\n", m[1], m[2])
	if m[1] != group || m[2] != version {
		return fmt.Errorf("booted group %s version %s, want group %s version %s", m[1], m[2], group, version)
	}
	return g.vm.ExpectString(image.MarkerReady, 3*time.Minute)
}

// run runs a command in the guest and prints it and its output.
func (g *guest) run(cmd string) error {
	fmt.Printf("guest$ %s\n", cmd)
	out, rc, err := g.vm.Run(cmd, 5*time.Minute)
	fmt.Print(indent(out))
	if err != nil {
		return err
	}
	if rc != 0 {
		return fmt.Errorf("%s: exit status %d", cmd, rc)
	}
	return nil
}

// indent indents the guest's output, keeping of a progress bar (lines
// redrawn after a carriage return) its last state.
func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\r\n"), "\n") {
		l = strings.TrimRight(l, "\r")
		if i := strings.LastIndex(l, "\r"); i >= 0 {
			l = l[i+1:]
		}
		if l = strings.TrimSpace(l); l != "" || s != "" {
			b.WriteString("    " + l + "\n")
		}
	}
	return b.String()
}
