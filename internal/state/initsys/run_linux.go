package initsys

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"

	"github.com/tandem-ota/tandem/internal/bounded"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/state"
	"golang.org/x/sys/unix"
)

// Device paths of init's own mounts, on the /run tmpfs of the old root.
const (
	newRootDir = "/run/tandem/root"    // the overlay: the new root
	upperDir   = "/run/tandem/overlay" // the tmpfs of a discarded overlay
	oldRootDir = "/run/tandem/oldroot" // where pivot_root puts the old root (detached at once)
)

// Main is `tandem init` and tandem invoked as tandem-init: it runs the init
// sequence as PID 1 and execs the real init. It returns only when no init
// could be executed.
func Main(args []string) error {
	if os.Getpid() != 1 {
		return fmt.Errorf("tandem init runs as the first process (pid 1) only: boot with init=/usr/sbin/tandem-init (docs/state.md)")
	}
	return Run(Options{Root: "/", KernelFS: true, Args: args})
}

// Run performs the init sequence under o.Root and execs the real init. It
// returns only when no init could be executed; any failure before is
// logged, recorded in the boot report and survived.
func Run(o Options) error {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.KernelFS {
		mountKernelFS(&o)
	}
	log := o.logger()
	m := &mounter{o: &o, log: log}
	rep := m.setup()
	base := o.Root
	if m.newRoot != "" {
		if err := m.switchRoot(); err != nil {
			log.printf("switch to the overlay: %v; booting the read-only system without overlay", err)
			rep.Status, rep.Error, rep.Overlay = state.BootDegraded, "switch to the overlay: "+err.Error(), state.OverlayDisabled
		} else {
			base = "/"
		}
	}
	if err := writeReport(base, rep); err != nil {
		log.printf("write %s: %v", state.BootReportPath, err)
	}
	return execInit(&o, base, log)
}

// mountKernelFS mounts /proc, /sys, /dev and /run under o.Root where they
// are not mount points yet, and efivarfs on an EFI system. Errors are
// logged (to stderr: /dev may be missing) and survived.
func mountKernelFS(o *Options) {
	for _, k := range []struct {
		dir, fstype, data string
		flags             uintptr
	}{
		{"/proc", "proc", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"/sys", "sysfs", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"/dev", "devtmpfs", "mode=0755", unix.MS_NOSUID},
		{"/run", "tmpfs", "mode=0755", unix.MS_NOSUID | unix.MS_NODEV},
		// The systemd-boot flow reads the boot loader's state in EFI variables.
		{"/sys/firmware/efi/efivars", "efivarfs", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	} {
		p := rootfs.Join(o.Root, k.dir)
		if _, err := os.Stat(p); err != nil || isMountPoint(p) {
			continue // efivars exists on EFI systems only
		}
		if err := unix.Mount(k.fstype, p, k.fstype, k.flags, k.data); err != nil {
			fmt.Fprintf(os.Stderr, "tandem-init: mount %s on %s: %v\n", k.fstype, k.dir, err)
		}
	}
}

// isMountPoint reports whether host path p is on another device than its parent.
func isMountPoint(p string) bool {
	var st, parent unix.Stat_t
	if unix.Stat(p, &st) != nil || unix.Stat(p+"/..", &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// mounter performs a plan's mounts for real; it remembers them to undo
// them when the state part fails.
type mounter struct {
	o       *Options
	log     *logger
	dev     string // the data partition's device path
	label   string // its configured label (given to mkfs)
	fstype  string // the file system mkfs made on it
	mount   string // its mount point (device path), "" until mounted
	newRoot string // host path of the overlay, "" until mounted
	mounts  []string
	grown   []string // what growing the data partition did (grow_linux.go)
}

func (m *mounter) host(p string) string { return rootfs.Join(m.o.Root, p) }

func (m *mounter) mnt(src, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(src, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", src, target, err)
	}
	m.mounts = append(m.mounts, target)
	return nil
}

// undo detaches every mount made so far, last first.
func (m *mounter) undo() {
	for i := len(m.mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(m.mounts[i], unix.MNT_DETACH); err != nil {
			m.log.printf("undo: unmount %s: %v", m.mounts[i], err)
		}
	}
	m.mounts, m.mount, m.newRoot = nil, "", ""
}

// setup runs the state part and returns its report. On any failure it
// undoes its mounts and boots with a discarded overlay (or, if even that
// fails, none).
func (m *mounter) setup() state.BootReport {
	rep := state.BootReport{Status: state.BootOK, Actions: []string{}}
	overlay, err := m.runState(&rep)
	rep.Overlay = overlay
	if err == nil {
		return rep
	}
	m.log.printf("state: %v; booting with the overlay discarded", err)
	m.undo()
	rep.Status, rep.Error, rep.Overlay = state.BootDegraded, err.Error(), state.OverlayDiscard
	rep.Actions = []string{}
	if err := m.Do(state.Action{Kind: state.ActOverlay, Mode: state.OverlayDiscard}); err != nil {
		m.log.printf("discarded overlay: %v; booting the read-only system without overlay", err)
		m.undo()
		rep.Error += "; discarded overlay: " + err.Error()
		rep.Overlay = state.OverlayDisabled
		return rep
	}
	rep.Actions = append(rep.Actions, "overlay discard on /")
	return rep
}

// runState finds the data partition, computes the plan and applies it. A
// degraded plan (data partition missing or unusable) is not an error: it
// is recorded in rep.
func (m *mounter) runState(rep *state.BootReport) (string, error) {
	devRoot := m.o.Root
	if devRoot == "/" {
		devRoot = ""
	}
	d, err := device.Open(device.Options{Root: devRoot})
	if err != nil {
		return "", fmt.Errorf("system configuration: %w", err)
	}
	osfs := rootfs.NewOS(m.o.Root)
	c, err := state.Load(osfs)
	if err != nil {
		return "", fmt.Errorf("state configuration: %w", err)
	}
	var in state.Input
	in.DataDir = d.Config.DataDir
	var store *state.Store
	var why string
	if c.Managed() {
		if in.Booting, err = d.ActiveGroup(); err != nil {
			return "", fmt.Errorf("the booting group: %w", err)
		}
		unmount := m.mountBootDir(d.Config.BootFlow.BootDir)
		in.Default, err = d.Flow.Default()
		unmount()
		if err != nil {
			return "", fmt.Errorf("the boot loader's default group (is boot-flow.boot-dir reachable before init?): %w", err)
		}
		m.label = c.Data.Label
		var sfs rootfs.FS = osfs
		if spec := cmdlineParam(m.o.Root, CmdlinePause); spec != "" {
			// The real-boot power-cut tests stop init before the chosen write.
			if sfs, err = rootfs.WithPause(osfs, spec, m.log.w); err != nil {
				m.log.printf("%s: %v", CmdlinePause, err)
				sfs = osfs
			}
		}
		store = &state.Store{FS: sfs, Mount: c.Data.Mount, KeepOnReset: []string{d.Config.DataDir}}
		in.Data, why = m.findAndMount(c, d)
		rep.Device = m.dev
		rep.Actions = append(rep.Actions, m.grown...)
		if in.Data == state.DataMounted {
			switch l, err := store.Load(); {
			case err == nil:
				in.Layout = &l
			case !errors.Is(err, state.ErrNoLayout):
				return "", err
			}
		}
		m.log.printf("booting group %s, default group %s, data partition %s", in.Booting, in.Default, in.Data)
	}
	plan := state.Plan(c, in)
	overlay := state.OverlayDisabled
	for _, a := range plan {
		rep.Actions = append(rep.Actions, a.String())
		switch a.Kind {
		case state.ActOverlay:
			overlay = a.Mode
		case state.ActWarn:
			rep.Status, rep.Error = state.BootDegraded, a.Message
			if why != "" {
				rep.Error += " (" + why + ")"
			}
		}
	}
	if _, err := state.Apply(plan, store, in.Layout, m.o.Root, m); err != nil {
		return overlay, err
	}
	return overlay, nil
}

// mountBootDir mounts read-only, where it is not mounted yet, the file
// system that /etc/fstab puts at dir (the boot flow's boot-dir) or at its
// nearest parent, so that the boot loader's default group can be read;
// the returned function detaches it again (the real init mounts it as
// usual). Sources: a /dev path, LABEL=, PARTLABEL=, UUID= or PARTUUID=
// (findSpec).
func (m *mounter) mountBootDir(dir string) func() {
	noop := func() {}
	b, err := bounded.ReadFile(m.host("/etc/fstab"), 64<<10)
	if dir == "" || err != nil {
		return noop
	}
	var src, mp, fstype string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || strings.HasPrefix(f[0], "#") || f[1] == "/" {
			continue
		}
		if (dir == f[1] || strings.HasPrefix(dir, f[1]+"/")) && len(f[1]) > len(mp) {
			src, mp, fstype = f[0], f[1], f[2]
		}
	}
	if mp == "" || isMountPoint(m.host(mp)) {
		return noop
	}
	dev, err := findSpec(m.o, src)
	if err != nil {
		m.log.printf("boot-dir %s: /etc/fstab source: %v", dir, err)
		return noop
	}
	if fstype == "auto" {
		fstype, _, _, _ = probe(m.host(dev))
	}
	if err := unix.Mount(m.host(dev), m.host(mp), fstype, unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
		m.log.printf("boot-dir %s: mount %s read-only: %v", dir, dev, err)
		return noop
	}
	m.log.printf("mounted %s read-only on %s to read the boot loader's state", dev, mp)
	return func() {
		if err := unix.Unmount(m.host(mp), unix.MNT_DETACH); err != nil {
			m.log.printf("unmount %s: %v", mp, err)
		}
	}
}

// findAndMount finds the data partition and, when it holds a file system,
// checks and mounts it. It says what the plan must assume, and why the
// partition is missing.
func (m *mounter) findAndMount(c *state.Config, d *device.Device) (state.DataStatus, string) {
	dev, err := findData(m.o, d, c.Data)
	if err != nil {
		m.log.printf("%v", err)
		return state.DataMissing, err.Error()
	}
	m.dev = dev
	if c.Data.Grow {
		m.growPartition()
	}
	fstype, _, blank, err := probe(m.host(dev))
	switch {
	case err != nil:
		m.log.printf("%v", err)
		return state.DataMissing, err.Error()
	case blank:
		m.log.printf("%s is blank", dev)
		return state.DataBlank, ""
	case fstype == "":
		m.log.printf("%s holds no file system tandem recognises (ext4, btrfs, xfs, f2fs), or a damaged one: it is left untouched", dev)
		return state.DataMissing, "no recognised file system on " + dev
	}
	if c.Data.Fsck {
		if err := m.fsck(fstype); err != nil {
			m.log.printf("%v", err)
			return state.DataMissing, err.Error()
		}
	}
	if err := m.mountData(fstype, c.Data.Mount); err != nil {
		m.log.printf("%v", err)
		return state.DataMissing, err.Error()
	}
	if c.Data.Grow {
		m.growFS(c.Data.Mount)
	}
	return state.DataMounted, ""
}

func (m *mounter) fsck(fstype string) error {
	tool := m.o.tool("fsck." + fstype)
	if tool == "" {
		m.log.printf("fsck.%s is not present: %s not checked", fstype, m.dev)
		return nil
	}
	out, err := exec.Command(tool, "-p", m.host(m.dev)).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() < 4:
		m.log.printf("fsck %s: errors corrected (exit %d)", m.dev, ee.ExitCode())
	default:
		return fmt.Errorf("fsck %s: %v: %s", m.dev, err, oneLine(out))
	}
	m.log.printf("fsck %s: clean", m.dev)
	return nil
}

func (m *mounter) mountData(fstype, mount string) error {
	target := m.host(mount)
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := m.mnt(m.host(m.dev), target, fstype, unix.MS_NOATIME|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return err
	}
	m.mount = mount
	m.log.printf("mounted %s (%s) on %s", m.dev, fstype, mount)
	return nil
}

// Did logs a state transition or seed the plan performed (state.Recorder).
func (m *mounter) Did(a state.Action) { m.log.printf("%s", a) }

// Do performs one action of the plan (state.Mounter).
func (m *mounter) Do(a state.Action) error {
	switch a.Kind {
	case state.ActWarn:
		m.log.printf("%s", a.Message)
	case state.ActMkfs:
		return m.mkfs(a.Filesystem)
	case state.ActFsck:
		// Done before the plan (the journal is part of what the boot finds).
	case state.ActMount:
		if m.mount == "" {
			return m.mountData(m.fstype, a.Target)
		}
	case state.ActOverlay:
		return m.overlay(a)
	case state.ActBind:
		return m.bind(a)
	default:
		return fmt.Errorf("tandem init cannot do %s", a.Kind)
	}
	return nil
}

func (m *mounter) mkfs(fstype string) error {
	tool := m.o.tool("mkfs." + fstype)
	if tool == "" {
		return fmt.Errorf("mkfs.%s is not present: cannot make the data partition's file system", fstype)
	}
	var args []string
	if m.label != "" {
		flag := "-L"
		if fstype == "f2fs" {
			flag = "-l"
		}
		args = append(args, flag, m.label)
	}
	if fstype == "ext4" {
		args = append(args, "-q")
	}
	out, err := exec.Command(tool, append(args, m.host(m.dev))...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.%s %s: %v: %s", fstype, m.dev, err, oneLine(out))
	}
	m.fstype = fstype
	m.log.printf("made the %s file system on %s", fstype, m.dev)
	return nil
}

// overlay mounts the writable layer over the read-only root at newRootDir:
// the upper on a new tmpfs (discard) or on the data partition (persist).
func (m *mounter) overlay(a state.Action) error {
	var upper string
	switch a.Mode {
	case state.OverlayDiscard:
		upper = m.host(upperDir)
		if err := os.MkdirAll(upper, 0o755); err != nil {
			return err
		}
		if err := m.mnt("tmpfs", upper, "tmpfs", 0, "mode=0755"); err != nil {
			return err
		}
	case state.OverlayPersist:
		upper = m.host(a.Source)
	default:
		return fmt.Errorf("overlay mode %q", a.Mode)
	}
	for _, d := range []string{"upper", "work"} {
		if err := os.MkdirAll(path.Join(upper, d), 0o755); err != nil {
			return err
		}
	}
	target := m.host(newRootDir)
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	lower := m.o.Root
	if strings.ContainsAny(lower+upper, ",:\\") {
		return fmt.Errorf("overlay paths may not contain ',', ':' or '\\': %s, %s", lower, upper)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lower, upper, upper)
	if err := m.mnt("overlay", target, "overlay", 0, opts); err != nil {
		return err
	}
	m.newRoot = target
	m.log.printf("overlay %s on / (upper %s)", a.Mode, strings.TrimPrefix(upper, strings.TrimSuffix(m.o.Root, "/")))
	return nil
}

// bind bind-mounts a persistent path from the data partition onto its
// place in the new root (or the read-only root when there is no overlay),
// creating the mount point when the image has none.
func (m *mounter) bind(a state.Action) error {
	base := m.newRoot
	if base == "" {
		base = m.o.Root
	}
	dst := rootfs.Join(base, a.Target)
	if a.Path.Kind == state.KindDirectory {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
	} else if _, err := os.Lstat(dst); err != nil {
		if err := os.MkdirAll(path.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	if err := m.mnt(m.host(a.Source), dst, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	m.log.printf("bound %s", a.Target)
	return nil
}

// switchRoot makes the overlay the root: a new /run tmpfs in it, the data
// partition and the kernel's file systems moved into it, then pivot_root
// (the old root detached), or, where pivot_root is refused, a move onto /
// and chroot.
func (m *mounter) switchRoot() error {
	nr := m.newRoot
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if err := unix.Mount("tmpfs", nr+"/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount /run in the new root: %w", err)
	}
	if m.mount != "" {
		if err := os.MkdirAll(nr+m.mount, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.host(m.mount), nr+m.mount, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move the data partition: %w", err)
		}
	}
	for _, k := range []string{"/dev", "/proc", "/sys"} {
		if isMountPoint(m.host(k)) {
			if err := unix.Mount(m.host(k), nr+k, "", unix.MS_MOVE, ""); err != nil {
				return fmt.Errorf("move %s: %w", k, err)
			}
		}
	}
	if err := unix.Chdir(nr); err != nil {
		return err
	}
	if err := os.MkdirAll(nr+oldRootDir, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", oldRootDir[1:]); err == nil {
		if err := unix.Chdir("/"); err != nil {
			return err
		}
		if err := unix.Unmount(oldRootDir, unix.MNT_DETACH); err != nil {
			m.log.printf("detach the old root: %v", err)
		}
		_ = os.Remove(oldRootDir)
	} else {
		m.log.printf("pivot_root: %v; moving the new root onto / instead", err)
		if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move the new root onto /: %w", err)
		}
		if err := unix.Chroot("."); err != nil {
			return err
		}
		if err := unix.Chdir("/"); err != nil {
			return err
		}
	}
	m.log.printf("switched to the overlay root")
	return nil
}

// writeReport writes the boot report under root (the new root after the switch).
func writeReport(root string, rep state.BootReport) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	p := rootfs.Join(root, state.BootReportPath)
	if err := os.MkdirAll(path.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, append(b, '\n'), 0o644)
}

// execInit execs the real init (the configured one, then the kernel's
// fallbacks), never tandem itself. It returns only when none could be run.
func execInit(o *Options, root string, log *logger) error {
	first := o.Init
	if first == "" {
		first = cmdlineParam(root, CmdlineInit)
	}
	if first == "" {
		first = DefaultInit
	}
	var self unix.Stat_t
	selfErr := unix.Stat("/proc/self/exe", &self)
	var errs []string
	for _, p := range append([]string{first}, fallbackInits...) {
		hp := rootfs.Join(root, p)
		var st unix.Stat_t
		if err := unix.Stat(hp, &st); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		if selfErr == nil && st.Dev == self.Dev && st.Ino == self.Ino {
			errs = append(errs, p+" is tandem itself")
			continue
		}
		log.printf("exec %s", p)
		err := unix.Exec(hp, append([]string{p}, o.Args...), os.Environ())
		errs = append(errs, fmt.Sprintf("%s: %v", p, err))
	}
	return fmt.Errorf("no init could be executed: %s", strings.Join(errs, "; "))
}

func oneLine(b []byte) string {
	return strings.Join(strings.Fields(string(b)), " ")
}
