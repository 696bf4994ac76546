// Package image builds the guests of tandem's real-boot tests
// (docs/testing.md, tier 3) from Debian packages: the kernel, busybox and
// their initramfs (a newc cpio archive written in Go), the test systems
// with their console command loop, and the test-specific boot settings.
// The disks themselves come from internal/image's Build and System, the
// code `tandem image build` runs, fed with the guests' root file systems,
// specs and test hooks (image.Options), so every real-boot test also tests
// the shipped builder. The x86-64 guest is assembled in x86.go, the arm64
// one in arm64.go.
package image

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	diskimage "github.com/tandem-ota/tandem/internal/image"
)

// Kernel is a Debian kernel unpacked from its package.
type Kernel struct {
	Image  string // boot/vmlinuz-<version> (or the arm64 Image)
	ModDir string // lib/modules/<version>
}

// DebianKernel fetches the kernel that metapackage meta (linux-image-amd64,
// linux-image-arm64:arm64) points to and returns its image and modules.
func DebianKernel(d Debs, meta string) (Kernel, error) {
	pkg, err := d.Resolve(meta, "linux-image-")
	if err != nil {
		return Kernel{}, err
	}
	dir, err := d.Extract(pkg)
	if err != nil {
		return Kernel{}, err
	}
	imgs, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	mods, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*"))
	if len(imgs) != 1 || len(mods) != 1 {
		return Kernel{}, fmt.Errorf("%s: want one boot/vmlinuz-* and one lib/modules/*, found %d and %d", pkg, len(imgs), len(mods))
	}
	return Kernel{Image: imgs[0], ModDir: mods[0]}, nil
}

// Busybox fetches busybox-static (pkg, e.g. "busybox-static" or
// "busybox-static:arm64") and returns the path of the static binary.
func Busybox(d Debs, pkg string) (string, error) {
	dir, err := d.Extract(pkg)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "bin", "busybox")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s: %w", pkg, err)
	}
	return p, nil
}

// Applets are the busybox applets the guest scripts use; each gets a
// symlink in /bin (the guest root file system is mounted read-only, so
// `busybox --install` cannot run there).
var Applets = []string{
	"sh", "ash", "cat", "cp", "dd", "echo", "grep", "head", "hexdump", "insmod", "ln", "ls", "mkdir",
	"mount", "mv", "od", "poweroff", "printf", "reboot", "rm", "sed", "setsid", "sha256sum",
	"sleep", "stat", "stty", "switch_root", "sync", "tail", "test", "tr", "true", "false", "umount",
	"uname", "wc", "cmp", "ifconfig", "route", "dmesg", "chattr", "lsattr", "find", "seq", "date", "kill", "watchdog", "[",
}

// installBusybox puts busybox at <root>/bin/busybox with applet symlinks.
func installBusybox(root, busybox string) error {
	if err := diskimage.CopyFile(busybox, filepath.Join(root, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	for _, a := range Applets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			return err
		}
	}
	return nil
}

// Module is a kernel module to load in the initramfs, with its parameters.
type Module struct {
	Name   string
	Params string // e.g. "heartbeat=10"
}

// InitramfsOptions describe the initramfs.
type InitramfsOptions struct {
	Busybox string
	Kernel  Kernel
	Modules []Module // loaded in this order, each after its dependencies
	// Version, when set, is left in /dev/.tandem-e2e-initramfs for the
	// system to read: which initramfs booted it.
	Version string
}

// initScript is the initramfs /init: load the modules, mount the root file
// system named by root= read-only and switch to its init (init= on the
// command line, else /sbin/init). A plain read-only mount: the system
// images have no journal (diskimage.System), so the kernel changes nothing
// of the slot, not even in the page cache, and a patch's source check
// accepts it (docs/delta.md, "Patches"). A failure exits, which panics the
// kernel (and panic= reboots it).
const initScript = `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
. /modules.sh
root=""
init=/sbin/init
for arg in $(cat /proc/cmdline); do
  case "$arg" in root=*) root="${arg#root=}" ;; init=*) init="${arg#init=}" ;; esac
done
i=0
while [ ! -b "$root" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if ! mount -t ext4 -o ro "$root" /newroot; then
  echo "TANDEM-E2E initramfs: cannot mount the root file system $root"
  exit 1
fi
[ -f /version ] && cp /version /dev/.tandem-e2e-initramfs
umount /proc /sys
mount --move /dev /newroot/dev 2>/dev/null || umount /dev
exec switch_root /newroot "$init"
`

// BuildInitramfs writes the initramfs (gzip cpio) to out.
func BuildInitramfs(out string, o InitramfsOptions) error {
	tmp, err := os.MkdirTemp(filepath.Dir(out), "initramfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := installBusybox(tmp, o.Busybox); err != nil {
		return err
	}
	for _, d := range []string{"proc", "sys", "dev", "newroot", "lib/modules"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			return err
		}
	}
	var names []string
	params := map[string]string{}
	for _, m := range o.Modules {
		names = append(names, m.Name)
		params[modName(m.Name)] = m.Params
	}
	order, err := Modules(o.Kernel.ModDir, names...)
	if err != nil {
		return err
	}
	var sh strings.Builder
	for _, p := range order {
		base := filepath.Base(p)
		if err := diskimage.CopyFile(p, filepath.Join(tmp, "lib", "modules", base), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&sh, "insmod /lib/modules/%s %s\n", base, params[modName(base)])
	}
	if err := diskimage.WriteFile(filepath.Join(tmp, "modules.sh"), []byte(sh.String()), 0o644); err != nil {
		return err
	}
	if err := diskimage.WriteFile(filepath.Join(tmp, "init"), []byte(initScript), 0o755); err != nil {
		return err
	}
	if o.Version != "" {
		if err := diskimage.WriteFile(filepath.Join(tmp, "version"), []byte(o.Version+"\n"), 0o644); err != nil {
			return err
		}
	}
	return Initramfs(out, tmp)
}

// SystemOptions describe one system's root file system (the image builder,
// internal/image, adds tandem, its system.toml and the trusted keys).
type SystemOptions struct {
	Version  string            // VERSION_ID in /etc/os-release
	Busybox  string            // host path of the static busybox
	Boot     map[string]string // files under /boot: name → host path (kernel, initramfs)
	Mounts   []Mount           // mounted by /sbin/init, in order
	Behavior string            // "" (healthy), "exit" (init exits: kernel panic) or "hang" (arms the watchdog and hangs)
	Files    map[string]string // more files: device path → content
	Links    map[string]string // symbolic links: device path → target
	Trees    []string          // host directories copied into the root (symbolic links kept)
}

// Mount is one file system the guest init mounts.
type Mount struct {
	Device, Dir, Type string
}

// Marker lines the guest prints on its serial console.
const (
	MarkerBooted = "TANDEM-E2E booted"  // followed by " group=<g> version=<v>"
	MarkerReady  = "TANDEM-E2E ready"   // the command loop reads lines now
	MarkerRC     = "TANDEM-E2E rc="     // after each command: its exit status
	MarkerFail   = "TANDEM-E2E failing" // the system fails on purpose (Behavior)
)

// sysInit is the system's /sbin/init. It mounts what the device needs,
// prints the boot marker, and then runs a command loop on the console: each
// line read is run by the shell, followed by "TANDEM-E2E rc=<status>".
const sysInit = `#!/bin/sh
export PATH=/bin
# tandem init (images with state) has mounted /proc, /sys, /dev and /run already.
[ -e /proc/mounts ] || mount -t proc proc /proc
mounted() { grep -q " $1 " /proc/mounts; }
mounted /sys || mount -t sysfs sys /sys
mounted /dev || mount -t devtmpfs dev /dev
mounted /run || mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
if [ -d /sys/firmware/efi/efivars ] && ! mounted /sys/firmware/efi/efivars; then mount -t efivarfs efivarfs /sys/firmware/efi/efivars; fi
. /etc/e2e/mounts.sh
# A persistent, empty /etc/machine-id is given an id once (as systemd-machine-id-setup does).
if [ -f /etc/machine-id ] && [ ! -s /etc/machine-id ]; then
  head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > /etc/machine-id && echo >> /etc/machine-id
fi
# QEMU user-mode network (x86-64 images): the host is 10.0.2.2.
if [ -e /sys/class/net/eth0 ]; then
  ifconfig lo 127.0.0.1 up
  ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up
  route add default gw 10.0.2.2
fi
group=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in tandem.group=*) group="${arg#tandem.group=}" ;; esac
done
. /etc/os-release
echo "TANDEM-E2E booted group=$group version=$VERSION_ID"
case "$(cat /etc/e2e/behavior)" in
exit)
  echo "TANDEM-E2E failing: init exits"
  exit 1 ;;
hang)
  echo "TANDEM-E2E failing: init hangs with the watchdog armed"
  exec 3>/dev/watchdog
  while :; do sleep 3600; done ;;
esac
stty -echo 2>/dev/null
echo "TANDEM-E2E ready"
while IFS= read -r line; do
  eval "$line"
  echo "TANDEM-E2E rc=$?"
done
echo "TANDEM-E2E console closed"
while :; do sleep 3600; done
`

// SystemTree writes the tree of a system image under dir.
func SystemTree(dir string, o SystemOptions) error {
	if err := installBusybox(dir, o.Busybox); err != nil {
		return err
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "boot", "data", "etc/tandem/keys", "etc/tandem/hooks"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := diskimage.WriteFile(filepath.Join(dir, "sbin", "init"), []byte(sysInit), 0o755); err != nil {
		return err
	}
	// The image builder puts tandem at /usr/bin/tandem; the guest's PATH is /bin.
	if err := os.Symlink("/usr/bin/tandem", filepath.Join(dir, "bin", "tandem")); err != nil {
		return err
	}
	osr := fmt.Sprintf("ID=tandem-e2e\nNAME=\"tandem e2e\"\nVERSION_ID=%s\n", o.Version)
	if err := diskimage.WriteFile(filepath.Join(dir, "etc", "os-release"), []byte(osr), 0o644); err != nil {
		return err
	}
	var mounts strings.Builder
	for _, m := range o.Mounts {
		if err := os.MkdirAll(filepath.Join(dir, m.Dir), 0o755); err != nil {
			return err
		}
		fmt.Fprintf(&mounts, "mount -t %s %s %s || echo \"TANDEM-E2E cannot mount %s\"\n", m.Type, m.Device, m.Dir, m.Dir)
	}
	if err := diskimage.WriteFile(filepath.Join(dir, "etc", "e2e", "mounts.sh"), []byte(mounts.String()), 0o644); err != nil {
		return err
	}
	if err := diskimage.WriteFile(filepath.Join(dir, "etc", "e2e", "behavior"), []byte(o.Behavior+"\n"), 0o644); err != nil {
		return err
	}
	for p, c := range o.Files {
		if err := diskimage.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			return err
		}
	}
	for p, target := range o.Links {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, filepath.Join(dir, p)); err != nil {
			return err
		}
	}
	for _, t := range o.Trees {
		// cp -a keeps the links; the tree's .done marker is left out.
		if err := diskimage.Run("cp", "-a", "--no-preserve=ownership", t+"/.", dir); err != nil {
			return err
		}
		_ = os.Remove(filepath.Join(dir, ".done"))
	}
	names := make([]string, 0, len(o.Boot))
	for n := range o.Boot {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := diskimage.CopyFile(o.Boot[n], filepath.Join(dir, "boot", n), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// systemConfig is /etc/tandem/system.toml of a test image
// (image.SystemConfig): two block slots, partitions sysA and sysB of the
// virtio disk, and the [boot-flow] table's body flow.
func systemConfig(compatible string, sysA, sysB int, flow string) string {
	return diskimage.SystemConfig{Compatible: compatible, Root: "/dev/vda", SysA: sysA, SysB: sysB, Flow: flow,
		Top: "reboot-command = [\"/bin/reboot\", \"-f\"]\n"}.String()
}

// buildSystem writes the system partition image of a guest version at out
// with the image builder (image.System) from the root file system that
// root writes under a temporary directory in work.
func buildSystem(work string, s *diskimage.Spec, o diskimage.Options, out string, root func(dir string) error) error {
	tree, err := os.MkdirTemp(work, "rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tree)
	if err := root(tree); err != nil {
		return err
	}
	o.RootFS = tree
	return diskimage.System(s, o, out)
}

// buildFactory writes a guest's factory disk at out with the image builder
// (image.Build, as `tandem image build`; its bundle of the factory version
// next to it as <out>.tandem) from the root file system that root writes.
// The data partition holds the bundles (name → host path) under /bundles,
// or is left blank (tandem init makes it at the first boot).
func buildFactory(work string, s *diskimage.Spec, o diskimage.Options, out string, bundles map[string]string, blank bool, root func(dir string) error) (*diskimage.Result, error) {
	tmp, err := os.MkdirTemp(work, "factory-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "rootfs")
	if err := root(tree); err != nil {
		return nil, err
	}
	o.RootFS, o.Out, o.Bundle, o.DataEmpty = tree, out, out+".tandem", blank
	if !blank {
		o.DataTree = filepath.Join(tmp, "data")
		if err := os.MkdirAll(o.DataTree, 0o755); err != nil {
			return nil, err
		}
		for name, p := range bundles {
			if strings.Contains(name, "/") {
				return nil, fmt.Errorf("bundle name %q has a slash", name)
			}
			if err := diskimage.CopyFile(p, filepath.Join(o.DataTree, "bundles", name), 0o644); err != nil {
				return nil, err
			}
		}
	}
	return diskimage.Build(s, o)
}
