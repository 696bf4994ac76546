package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/signature"
)

func needTools(t *testing.T, flow string) {
	t.Helper()
	if err := CheckTools(append(tools(flow), "mdir", "mtype", "debugfs", "zstd")...); err != nil {
		t.Skipf("%v (scripts/install-deps.sh installs it)", err)
	}
}

// fixture is a spec directory: keys, a fake tandem binary and a tiny root
// file system.
type fixture struct {
	dir, rootfs, pub string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	cwd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	err := signature.GenerateKeyFiles("release")
	os.Chdir(cwd)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, rootfs: filepath.Join(dir, "rootfs"), pub: filepath.Join(dir, "release.pub")}
	files := map[string]string{
		"boot/vmlinuz-6.1": "kernel image", "boot/initrd.img-6.1": "initramfs", "etc/fstab": "proc /proc proc defaults 0 0",
		"etc/os-release": "VERSION_ID=1.0.0\n", "usr/bin/sh": "#!shell",
	}
	for p, c := range files {
		if err := WriteFile(filepath.Join(f.rootfs, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"boot/vmlinuz": "vmlinuz-6.1", "boot/initrd.img": "/boot/initrd.img-6.1", "bin": "usr/bin"} {
		if err := os.Symlink(target, filepath.Join(f.rootfs, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(f.rootfs, "usr/bin/sh"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(dir, "tandem-device"), []byte("#!/bin/sh\necho tandem\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

const baseSpec = `compatible = "acme-gw"
version = "1.2.0"
boot-flow = "%FLOW%"
spare = "%SPARE%"

[disk]
partition-prefix = "/dev/vda"
system-size = "16M"
data-size = "8M"
boot-size = "34M"

[boot]
kernel = "/boot/vmlinuz"
initramfs = "/boot/initrd.img"
cmdline = "console=ttyS0 quiet"
attempts = 2
%ARCH%

[keys]
signing = ["release.key"]
trusted = ["release.pub"]

[tandem]
binary = "tandem-device"
reboot-command = ["/bin/reboot", "-f"]
`

func (f *fixture) spec(t *testing.T, flow, spare, extra string) *Spec {
	t.Helper()
	text := strings.NewReplacer("%FLOW%", flow, "%SPARE%", spare, "%ARCH%", extra).Replace(baseSpec)
	s, err := ParseSpec(filepath.Join(f.dir, "image.toml"), []byte(text), "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// partition copies partition p of disk to a file.
func partition(t *testing.T, disk string, p PartitionInfo) string {
	t.Helper()
	in, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out := filepath.Join(t.TempDir(), p.Label)
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(o, io.NewSectionReader(in, p.Start, p.Size)); err != nil {
		t.Fatal(err)
	}
	o.Close()
	return out
}

func checkTable(t *testing.T, disk string, r *Result) {
	t.Helper()
	var table struct {
		PartitionTable struct {
			Label      string
			Partitions []struct {
				Start, Size int64
				Type, Name  string
			}
		}
	}
	if err := json.Unmarshal([]byte(tool(t, "sfdisk", "--json", disk)), &table); err != nil {
		t.Fatal(err)
	}
	pt := table.PartitionTable
	if pt.Label != "gpt" || len(pt.Partitions) != 4 {
		t.Fatalf("partition table: %+v", pt)
	}
	for i, want := range []struct {
		name string
		size int64
		typ  string
	}{{"boot", 34 * MiB, TypeESP}, {"system-a", 16 * MiB, TypeLinux}, {"system-b", 16 * MiB, TypeLinux}, {"data", 8 * MiB, TypeLinux}} {
		p := pt.Partitions[i]
		if p.Name != want.name || p.Size*512 != want.size || p.Type != want.typ || p.Start*512 != r.Partitions[i].Start {
			t.Errorf("partition %d: got %+v, want %+v at %d", i+1, p, want, r.Partitions[i].Start)
		}
	}
}

// debugfsOut runs a debugfs request on an ext4 image.
func debugfsOut(t *testing.T, img, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, img).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", req, err)
	}
	return string(out)
}

func TestBuildGrub(t *testing.T) {
	needTools(t, FlowGrub)
	f := newFixture(t)
	s := f.spec(t, "grub", "copy", "")
	out := filepath.Join(t.TempDir(), "disk.img")
	var steps []string
	r, err := Build(s, Options{RootFS: f.rootfs, Out: out, Created: 1, Progress: func(s string) { steps = append(steps, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 5 || r.Bundle != strings.TrimSuffix(out, ".img")+".tandem" {
		t.Errorf("steps %q, bundle %s", steps, r.Bundle)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".disk.img.tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	checkTable(t, out, r)

	boot := partition(t, out, r.Partitions[0])
	dir := tool(t, "mdir", "-b", "-i", boot, "::/EFI/BOOT")
	for _, want := range []string{"BOOTX64.EFI", "grub.cfg", "tandem.cfg"} {
		if !strings.Contains(dir, want) {
			t.Errorf("EFI/BOOT lacks %s:\n%s", want, dir)
		}
	}
	cfg := tool(t, "mtype", "-i", boot, "::/EFI/BOOT/grub.cfg")
	if want := "linux (${tandem_disk},gpt${tandem_part})/boot/vmlinuz root=/dev/vda${tandem_part} tandem.group=${tandem_group} console=ttyS0 quiet"; !strings.Contains(cfg, want) {
		t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
	}
	// GRUB's regexp takes --set=<group>:<variable> (a space makes three arguments).
	if want := `regexp --set=1:tandem_disk '^([^,]+),' "${root}"`; !strings.Contains(cfg, want) {
		t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
	}
	if got := tool(t, "mtype", "-i", boot, "::/EFI/BOOT/tandem.cfg"); !strings.Contains(got, "tandem_trial") {
		t.Errorf("tandem.cfg is not the shipped script:\n%s", got)
	}
	if env := tool(t, "mtype", "-i", boot, "::/tandem/primary.grubenv"); !strings.Contains(env, "tandem_default=a") {
		t.Errorf("primary.grubenv: %q", env)
	}

	sys := partition(t, out, r.Partitions[1])
	toml := debugfsOut(t, sys, "cat /etc/tandem/system.toml")
	c, err := config.Parse("system.toml", []byte(toml))
	if err != nil {
		t.Fatalf("system.toml in the image: %v\n%s", err, toml)
	}
	if c.Compatible != "acme-gw" || !strings.Contains(toml, `device = "/dev/vda3"`) || !strings.Contains(toml, "attempts = 2") ||
		strings.Join(c.RebootCommand, " ") != "/bin/reboot -f" {
		t.Errorf("system.toml:\n%s", toml)
	}
	pub, _ := os.ReadFile(f.pub)
	if got := debugfsOut(t, sys, "cat /etc/tandem/keys/release.pub"); got != string(pub) {
		t.Errorf("trusted key in the image: %q", got)
	}
	if got := debugfsOut(t, sys, "cat /usr/bin/tandem"); got != "#!/bin/sh\necho tandem\n" {
		t.Errorf("/usr/bin/tandem: %q", got)
	}
	fstab := debugfsOut(t, sys, "cat /etc/fstab")
	if !strings.Contains(fstab, "proc /proc proc defaults 0 0\nPARTLABEL=boot /boot/efi vfat") || !strings.Contains(fstab, "PARTLABEL=data /data ext4") {
		t.Errorf("fstab:\n%s", fstab)
	}
	if st := debugfsOut(t, sys, "stat /usr/bin/sh"); !regexp.MustCompile(`Mode:\s+04755`).MatchString(st) || !regexp.MustCompile(`User:\s+0\s`).MatchString(st) {
		t.Errorf("setuid /usr/bin/sh:\n%s", st)
	}
	spare := partition(t, out, r.Partitions[2])
	if a, b := readAll(t, sys), readAll(t, spare); !bytes.Equal(a, b) {
		t.Error("spare = copy: system-b differs from system-a")
	}
	data := partition(t, out, r.Partitions[3])
	if ls := debugfsOut(t, data, "ls -l /"); !strings.Contains(ls, "tandem") {
		t.Errorf("data partition:\n%s", ls)
	}
	// A slot image has no journal (a mounted one would not read back as
	// written, and patches would not match); the read-write data partition has.
	if st := debugfsOut(t, sys, "stats -h"); strings.Contains(st, "has_journal") || !strings.Contains(st, "Filesystem features:") {
		t.Errorf("system partition has a journal:\n%s", st)
	}
	if st := debugfsOut(t, data, "stats -h"); !strings.Contains(st, "has_journal") {
		t.Errorf("data partition has no journal:\n%s", st)
	}

	// The bundle verifies with the image's trusted key, and its payload is system-a.
	trust, err := signature.ParseTrust(pub)
	if err != nil {
		t.Fatal(err)
	}
	verify := bundle.TrustVerifier(trust, time.Now(), nil)
	h, hash, err := bundle.VerifyFile(r.Bundle, verify)
	if err != nil {
		t.Fatal(err)
	}
	if h.Compatible != "acme-gw" || h.Version != "1.2.0" || hash.String() != r.BundleHash {
		t.Errorf("bundle header %+v hash %s, result %s", h, hash, r.BundleHash)
	}
	payload := filepath.Join(t.TempDir(), "system")
	if err := bundle.ExtractFile(r.Bundle, "system", payload, verify); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, payload), readAll(t, sys)[:len(readAll(t, payload))]) {
		t.Error("the bundle's system payload is not system-a")
	}
}

func readAll(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildUBootEmptySpare(t *testing.T) {
	needTools(t, FlowUBoot)
	f := newFixture(t)
	s := f.spec(t, "uboot", "empty", "")
	out := filepath.Join(t.TempDir(), "disk.img")
	r, err := Build(s, Options{RootFS: f.rootfs, Out: out, Bundle: filepath.Join(t.TempDir(), "v1.tandem")})
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, out, r)
	boot := partition(t, out, r.Partitions[0])
	dir := tool(t, "mdir", "-b", "-i", boot, "::/")
	for _, want := range []string{"boot.scr", "uboot.env", "uboot-redund.env"} {
		if !strings.Contains(dir, want) {
			t.Errorf("boot partition lacks %s:\n%s", want, dir)
		}
	}
	scr := tool(t, "mtype", "-i", boot, "::/boot.scr")
	for _, want := range []string{"load ${devtype} ${devnum}:${tandem_part} ${kernel_addr_r} /boot/vmlinuz", "booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize}", "tandem_env_file"} {
		if !strings.Contains(scr, want) {
			t.Errorf("boot.scr lacks %q", want)
		}
	}
	toml := debugfsOut(t, partition(t, out, r.Partitions[1]), "cat /etc/tandem/system.toml")
	if !strings.Contains(toml, `type = "uboot"`) || !strings.Contains(toml, `boot-dir = "/boot/firmware"`) {
		t.Errorf("system.toml:\n%s", toml)
	}
	if b := readAll(t, partition(t, out, r.Partitions[2])); !bytes.Equal(b, make([]byte, len(b))) {
		t.Error("spare = empty: system-b is not zero")
	}
}

func TestBuildSystemdBootFromTar(t *testing.T) {
	needTools(t, FlowSDBoot)
	f := newFixture(t)
	s := f.spec(t, "systemd-boot", "copy", "")
	if _, err := os.Stat(s.Boot.EFIBinary); err != nil {
		t.Skipf("%v (apt-get install systemd-boot-efi)", err)
	}
	for _, comp := range []string{"tar", "gz", "zst"} {
		t.Run(comp, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "rootfs.tar."+comp)
			writeTar(t, archive, f.rootfs, comp)
			out := filepath.Join(t.TempDir(), "disk.img")
			r, err := Build(s, Options{RootFS: archive, Out: out})
			if err != nil {
				t.Fatal(err)
			}
			boot := partition(t, out, r.Partitions[0])
			entry := tool(t, "mtype", "-i", boot, "::/loader/entries/tandem-b.conf")
			if want := "options root=/dev/vda3 tandem.group=b console=ttyS0 quiet"; !strings.Contains(entry, want) {
				t.Errorf("tandem-b.conf lacks %q:\n%s", want, entry)
			}
			if k := tool(t, "mtype", "-i", boot, "::/a/vmlinuz"); k != "kernel image" {
				t.Errorf("/a/vmlinuz on the ESP: %q", k)
			}
			sys := partition(t, out, r.Partitions[1])
			st := debugfsOut(t, sys, "stat /home/user/notes")
			if !regexp.MustCompile(`User:\s+1000\s+Group:\s+1001`).MatchString(st) {
				t.Errorf("owner of /home/user/notes:\n%s", st)
			}
			if st := debugfsOut(t, sys, "stat /dev/console"); !strings.Contains(st, "Type: character special") || !regexp.MustCompile(`Mode:\s+0600`).MatchString(st) {
				t.Errorf("/dev/console:\n%s", st)
			}
		})
	}
}

// capNetRaw is the security.capability value of cap_net_raw=ep (VFS
// capability revision 2), as `setcap cap_net_raw+ep` writes it.
const capNetRaw = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// writeTar archives dir (owned by root) with a file owned by 1000:1001, a
// character device and /usr/bin/ping with capNetRaw added, compressed as
// comp says.
func writeTar(t *testing.T, out, dir, comp string) {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, _ := d.Info()
		link, _ := os.Readlink(p)
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Name, h.Uid, h.Gid, h.Uname, h.Gname = rel, 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			tw.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*tar.Header{
		{Name: "./home/user/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 1000, Gid: 1001},
		{Name: "./home/user/notes", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1000, Gid: 1001, Size: 5},
		{Name: "dev/console", Typeflag: tar.TypeChar, Mode: 0o600, Devmajor: 5, Devminor: 1},
		// ping with its file capability, as GNU tar --xattrs writes it.
		{Name: "./usr/bin/ping", Typeflag: tar.TypeReg, Mode: 0o755, Size: 5, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": capNetRaw}},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("notes"))
		}
	}
	tw.Close()
	var w bytes.Buffer
	switch comp {
	case "gz":
		z := gzip.NewWriter(&w)
		z.Write(raw.Bytes())
		z.Close()
	case "zst":
		z, _ := zstd.NewWriter(&w)
		z.Write(raw.Bytes())
		z.Close()
	default:
		w = raw
	}
	if err := os.WriteFile(out, w.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBadSpecs(t *testing.T) {
	for _, c := range []struct{ name, from, to, want string }{
		{"no compatible", `compatible = "acme-gw"`, ``, "compatible: required"},
		{"bad version", `version = "1.2.0"`, `version = "one"`, "version:"},
		{"unknown flow", `boot-flow = "grub"`, `boot-flow = "lilo"`, `boot-flow: "lilo": want grub, uboot, systemd-boot or rpi-tryboot`},
		{"rpi kernel", `boot-flow = "grub"`, `boot-flow = "rpi-tryboot"`, "boot.kernel: not used by rpi-tryboot"},
		{"firmware", `attempts = 2`, "attempts = 2\nfirmware = \"/boot/fw\"", "boot.firmware: only for rpi-tryboot"},
		{"spare", `spare = "copy"`, `spare = "mirror"`, `spare: "mirror"`},
		{"prefix", `partition-prefix = "/dev/vda"`, `partition-prefix = "vda"`, "disk.partition-prefix: required"},
		{"size", `system-size = "16M"`, `system-size = "16K"`, `disk.system-size: "16K"`},
		{"no size", `system-size = "16M"`, ``, `disk.system-size: ""`},
		{"small boot", `boot-size = "34M"`, `boot-size = "8M"`, "disk.boot-size: \"8M\": a FAT32 boot partition"},
		{"arch", `attempts = 2`, "attempts = 2\narch = \"riscv64\"", `boot.arch: "riscv64"`},
		{"kernel", `kernel = "/boot/vmlinuz"`, `kernel = "boot/vmlinuz"`, `boot.kernel: "boot/vmlinuz"`},
		{"cmdline", `cmdline = "console=ttyS0 quiet"`, `cmdline = "a;b"`, "boot.cmdline: may not contain"},
		{"attempts", `attempts = 2`, `attempts = 12`, "boot.attempts: 12"},
		{"signing", `signing = ["release.key"]`, ``, "keys.signing: required"},
		{"trusted", `trusted = ["release.pub"]`, `trusted = ["release.key"]`, "keys.trusted:"},
		{"unknown key", `[tandem]`, "[tandem]\nbinaries = 1", "tandem.binaries: unknown key"},
		{"reboot", `reboot-command = ["/bin/reboot", "-f"]`, `reboot-command = ["a\"b"]`, "tandem.reboot-command:"},
		{"type", `attempts = 2`, `attempts = "2"`, "boot.attempts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			text := strings.NewReplacer("%FLOW%", "grub", "%SPARE%", "copy", "%ARCH%", "").Replace(baseSpec)
			if !strings.Contains(text, c.from) {
				t.Fatalf("base spec lacks %q", c.from)
			}
			_, err := ParseSpec("image.toml", []byte(strings.Replace(text, c.from, c.to, 1)), "")
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, config.ErrInvalid) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v, want one line with %q wrapping config.ErrInvalid", err, c.want)
			}
		})
	}
}

// TestBuildRefusesBeforeWriting checks inputs that are wrong outside the
// spec: nothing is written.
func TestBuildRefusesBeforeWriting(t *testing.T) {
	needTools(t, FlowGrub)
	f := newFixture(t)
	for _, c := range []struct {
		name   string
		change func(s *Spec, o *Options)
		want   string
	}{
		{"no kernel", func(s *Spec, o *Options) { s.Boot.Kernel = "/boot/none" }, "boot.kernel:"},
		{"no rootfs", func(s *Spec, o *Options) { o.RootFS += "-missing" }, "root file system:"},
		{"no signing key", func(s *Spec, o *Options) { s.Keys.Signing = []string{f.dir + "/none.key"} }, "keys.signing:"},
		{"no trusted key", func(s *Spec, o *Options) { s.Keys.Trusted = []string{f.dir + "/none.pub"} }, "keys.trusted:"},
		{"other arch", func(s *Spec, o *Options) { s.Tandem.Binary, s.Boot.Arch = "", "arm64" }, "tandem.binary: this tandem is for"},
		{"system too small", func(s *Spec, o *Options) {
			big := make([]byte, 17*MiB)
			rand.Read(big) // zeros would become a hole
			os.WriteFile(filepath.Join(o.RootFS, "big"), big, 0o644)
			t.Cleanup(func() { os.Remove(filepath.Join(o.RootFS, "big")) })
		}, "system partition:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := f.spec(t, "grub", "copy", "")
			dir := t.TempDir()
			o := Options{RootFS: f.rootfs, Out: filepath.Join(dir, "disk.img")}
			c.change(s, &o)
			_, err := Build(s, o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("written: %v", left)
			}
		})
	}
}

func TestMissingToolHint(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := CheckTools(tools(FlowUBoot)...)
	if err == nil || err.Error() != "fakeroot is not installed (hint: apt-get install fakeroot)" {
		t.Errorf("got %v", err)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(strings.NewReplacer("%FLOW%", "grub", "%SPARE%", "copy", "%ARCH%", "").Replace(baseSpec)))
	f.Add([]byte("compatible = 1\n[disk]\nsystem-size = \"1G\""))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec("/x/image.toml", data, "")
		if err != nil {
			if !errors.Is(err, config.ErrInvalid) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: not one line wrapping config.ErrInvalid", err)
			}
			return
		}
		if len(data) > MaxSpecSize || s.Disk.system <= 0 || s.Disk.system%MiB != 0 || s.Boot.Attempts < 1 {
			t.Fatalf("accepted %+v", s)
		}
	})
}
