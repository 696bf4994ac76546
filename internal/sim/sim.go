// Package sim is the simulated device: a whole device in a directory (its
// configuration, a boot partition made of plain files, file-backed slots, a
// data directory) and models of the boot loaders that play each boot flow's
// rule table from docs/boot-flows.md. Users try tandem, their bundles and
// their fleet scripts on it without hardware; tandem's own tests stand on it.
//
// The boot-loader models are written from the rule tables, not from the
// bootflow package, so that the tests compare two readings of the same rules.
package sim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/state"
)

// DefaultSlotSize is the size of each system slot image when none is given.
const DefaultSlotSize = 16 << 20

// Options describe a new simulated device.
type Options struct {
	BootFlow   string // grub, uboot, rpi-tryboot, systemd-boot or custom
	Compatible string // default "tandem-sim"
	SlotSize   int64  // bytes per system slot; default DefaultSlotSize (or the image size)
	// SlotSizeText is SlotSize as `tandem sim new --slot-size` takes it
	// ("64M"); Check parses it.
	SlotSizeText string
	Image        string   // host path of a factory image written into system-a
	Trust        []string // host paths of trusted public keys
	Groups       []string // default a, b
	Attempts     int      // trial attempts (grub, uboot, custom); default 1
	// FactoryVersion is the version of the factory image in the first group
	// ("" = unknown).
	FactoryVersion string
	// UBootBackend selects the uboot back end: file (default) or fw-setenv
	// (then the device gets an fw_env.config naming its env files).
	UBootBackend string
	// BootCounting (systemd-boot): each group gets kernel, initrd and
	// cmdline file slots in /boot/tandem/<group>/ and the flow uses boot
	// counting (docs/boot-flows.md).
	BootCounting bool
	// State are host paths of state configuration files, copied to
	// /etc/tandem/state.d; with a data partition declared, the device gets
	// a data folder and every boot runs the state mount plan.
	State []string
}

// New creates a simulated device in dir (which must not exist or be empty):
// group a (the first) active and default.
func New(dir string, o Options) error {
	if o.Compatible == "" {
		o.Compatible = "tandem-sim"
	}
	if len(o.Groups) == 0 {
		o.Groups = []string{"a", "b"}
	}
	if o.Attempts == 0 {
		o.Attempts = 1
	}
	created, err := checkEmpty(dir)
	if err != nil {
		return err
	}
	if err := create(dir, o); err != nil {
		if created {
			os.RemoveAll(dir)
		}
		return err
	}
	return nil
}

func create(dir string, o Options) error {
	size, err := slotSize(o)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	fsys := rootfs.NewOS(abs)
	for _, d := range []string{"/etc/tandem/keys", "/etc/tandem/hooks", "/boot", "/slots", "/var/lib/tandem", "/proc", "/run"} {
		if err := fsys.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(fsys.Path(config.DefaultPath), []byte(configText(abs, o)), 0o644); err != nil {
		return err
	}
	for i, g := range o.Groups {
		img := fsys.Path("/slots/system-" + g + ".img")
		src := ""
		if i == 0 {
			src = o.Image
		}
		if err := makeSlot(img, src, size); err != nil {
			return err
		}
	}
	for _, k := range o.Trust {
		if err := copyFile(k, fsys.Path("/etc/tandem/keys/"+filepath.Base(k))); err != nil {
			return fmt.Errorf("trust %s: %w", k, err)
		}
	}
	if err := installState(fsys, o.State); err != nil {
		return err
	}
	cfg, err := config.Load(abs, "")
	if err != nil {
		return fmt.Errorf("generated configuration: %w", err)
	}
	if err := loaderFor(cfg).install(fsys, cfg); err != nil {
		return err
	}
	st := &device.SimState{BootFlow: o.BootFlow}
	if err := device.WriteSimState(abs, st); err != nil {
		return err
	}
	_, _, err = boot(abs, cfg, st, RebootOptions{})
	return err
}

// installState copies the state configuration files and, when they
// declare a data partition, creates the data folder (an empty partition).
func installState(fsys *rootfs.OS, files []string) error {
	if len(files) == 0 {
		return nil
	}
	if err := fsys.MkdirAll(state.ConfigDir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if err := copyFile(f, fsys.Path(state.ConfigDir+"/"+filepath.Base(f))); err != nil {
			return fmt.Errorf("state %s: %w", f, err)
		}
	}
	c, err := state.Load(fsys)
	if err != nil {
		return err
	}
	if c.Managed() {
		return os.Mkdir(fsys.Path("/"+DataFolder), 0o755)
	}
	return nil
}

// checkEmpty makes sure dir is empty, creating it if needed (created=true).
func checkEmpty(dir string) (created bool, err error) {
	ents, err := os.ReadDir(dir)
	if rootfs.IsNotExist(err) {
		return true, os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return false, err
	}
	if len(ents) > 0 {
		return false, fmt.Errorf("%s is not empty; give a new directory", dir)
	}
	return false, nil
}

func slotSize(o Options) (int64, error) {
	size := o.SlotSize
	if o.Image == "" {
		if size == 0 {
			size = DefaultSlotSize
		}
		return size, nil
	}
	fi, err := os.Stat(o.Image)
	if err != nil {
		return 0, fmt.Errorf("image: %w", err)
	}
	switch {
	case size == 0:
		size = max(fi.Size(), DefaultSlotSize)
	case fi.Size() > size:
		return 0, fmt.Errorf("image %s (%d bytes) is larger than the slot size %d", o.Image, fi.Size(), size)
	}
	return size, nil
}

func makeSlot(path, image string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if image != "" {
		src, err := os.Open(image)
		if err != nil {
			f.Close()
			return err
		}
		_, err = io.Copy(f, src)
		src.Close()
		if err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func configText(root string, o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Simulated device made by `tandem sim new`; reference: docs/configuration.md\n")
	fmt.Fprintf(&b, "compatible = %q\n", o.Compatible)
	b.WriteString("data-dir = \"/var/lib/tandem\"\n\n")
	counting := o.BootFlow == config.FlowSystemdBoot && o.BootCounting
	for _, g := range o.Groups {
		fmt.Fprintf(&b, "[slots.system-%s]\ntype = \"file\"\npath = \"/slots/system-%s.img\"\n\n", g, g)
		if counting {
			for _, f := range [][2]string{{"kernel", "vmlinuz"}, {"initrd", "initrd.img"}, {"cmdline", "cmdline"}} {
				fmt.Fprintf(&b, "[slots.%s-%s]\ntype = \"file\"\npath = \"/boot/tandem/%s/%s\"\nresize = true\n\n", f[0], g, g, f[1])
			}
		}
	}
	for i, g := range o.Groups {
		boot := ""
		if counting {
			boot = fmt.Sprintf(", kernel = \"kernel-%s\", initrd = \"initrd-%s\", cmdline = \"cmdline-%s\"", g, g, g)
		}
		fmt.Fprintf(&b, "[groups.%s]\nslots = { system = \"system-%s\"%s }\n", g, g, boot)
		if i == 0 && o.FactoryVersion != "" {
			fmt.Fprintf(&b, "factory-version = %q\n", o.FactoryVersion)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "[boot-flow]\ntype = %q\n", o.BootFlow)
	if o.Attempts > 1 {
		fmt.Fprintf(&b, "attempts = %d\n", o.Attempts)
	}
	switch o.BootFlow {
	case config.FlowUBoot, config.FlowMenderUBoot, config.FlowRAUCUBoot:
		if o.UBootBackend == config.UBootBackendFwSetenv {
			fmt.Fprintf(&b, "backend = %q\nfw-env-config = \"/etc/fw_env.config\"\n", o.UBootBackend)
		}
	case config.FlowRPiTryboot:
		b.WriteString("partitions = {")
		for i, g := range o.Groups {
			fmt.Fprintf(&b, " %s = %d,", g, i+2)
		}
		b.WriteString(" }\n")
		s := b.String()
		b.Reset()
		b.WriteString(strings.TrimSuffix(s, ", }\n") + " }\n")
	case config.FlowCustom:
		fmt.Fprintf(&b, "controller = [%q]\n", ControllerPath)
	case config.FlowSystemdBoot:
		if counting {
			b.WriteString("boot-counting = true\noptions = {")
			for i, g := range o.Groups {
				fmt.Fprintf(&b, "%s %s = \"root=/dev/sim-system-%s\"", map[bool]string{true: ",", false: ""}[i > 0], g, g)
			}
			b.WriteString(" }\n")
		}
	}
	return b.String()
}

// Reboot plays the boot loader of the device in dir by its rule table and
// makes the chosen group the running one. hang: the chosen system fails
// before it can commit (one failed attempt). It returns the group and notes
// on how the boot loader decided (fallbacks the real one would print).
func Reboot(dir string, hang bool) (string, []string, error) {
	return RebootWith(dir, RebootOptions{Hang: hang})
}

// RebootOptions are the options of RebootWith.
type RebootOptions struct {
	// Hang: the chosen system fails before it can commit.
	Hang bool
	// CutAt cuts the power at that cut point of the boot's state work (the
	// transitions of the mount plan: format, reset, commit, rollback,
	// snapshot, adopt, collect, seeds), Mode says what survives; 0 never
	// cuts. Negative: the simulated file layer without a cut (no real
	// fsync: fast, for tests). The boot loader's own writes are never cut.
	CutAt int
	Mode  rootfs.CutMode
}

// RebootEnv is Reboot with the power-cut switch of the environment
// (CutFromEnv: TANDEM_SIM_CUT, TANDEM_SIM_CUT_MODE), as `tandem sim reboot` runs it.
func RebootEnv(dir string, hang bool, getenv func(string) string) (string, []string, error) {
	at, mode, err := CutFromEnv(getenv)
	if err != nil {
		return "", nil, err
	}
	return RebootWith(dir, RebootOptions{Hang: hang, CutAt: at, Mode: mode})
}

// RebootWith is Reboot with options. A power cut in the state work returns
// an error wrapping rootfs.ErrPowerCut; the device is then as the cut left
// it, still running the group of the boot before, and the next reboot boots again.
func RebootWith(dir string, o RebootOptions) (string, []string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	st, err := device.ReadSimState(abs)
	if err != nil {
		return "", nil, err
	}
	if st == nil {
		return "", nil, fmt.Errorf("%s is not a simulated device (no %s); create one with `tandem sim new`", dir, device.SimMarker)
	}
	cfg, err := config.Load(abs, "")
	if err != nil {
		return "", nil, err
	}
	return boot(abs, cfg, st, o)
}

func boot(root string, cfg *config.Config, st *device.SimState, o RebootOptions) (string, []string, error) {
	fsys := rootfs.NewOS(root)
	var args []string
	if st.Reboot != nil {
		args = st.Reboot.Args
	}
	group, notes, err := loaderFor(cfg).boot(fsys, cfg, args)
	if err != nil {
		return "", notes, fmt.Errorf("the simulated boot loader found no bootable group: %w", err)
	}
	if !slices.Contains(cfg.GroupNames(), group) {
		return "", notes, fmt.Errorf("the simulated boot loader chose %q, which is no boot group", group)
	}
	// /run is a tmpfs: it does not survive a reboot.
	if err := os.RemoveAll(fsys.Path("/run")); err != nil {
		return "", notes, err
	}
	if err := fsys.MkdirAll("/run", 0o755); err != nil {
		return "", notes, err
	}
	cmdline := fmt.Sprintf("console=ttyS0 root=/dev/sim-system-%s %s=%s\n", group, device.CmdlineKey, group)
	if err := os.WriteFile(fsys.Path("/proc/cmdline"), []byte(cmdline), 0o644); err != nil {
		return "", notes, err
	}
	var stateFS rootfs.FS = fsys
	if o.CutAt != 0 {
		stateFS = rootfs.NewSim(root, rootfs.SimOptions{CutAt: o.CutAt, Mode: o.Mode})
	}
	stateNotes, err := bootState(root, stateFS, cfg, group)
	notes = append(notes, stateNotes...)
	if err != nil {
		return "", notes, err
	}
	st.Running, st.Hung, st.Reboot = group, o.Hang, nil
	st.Boots++
	if err := device.WriteSimState(root, st); err != nil {
		return "", notes, err
	}
	if !o.Hang {
		if err := markBooted(root); err != nil {
			return "", notes, err
		}
	}
	return group, notes, nil
}

// markBooted plays what the booted system's tandem health does when nothing
// is on trial: on flows whose boot loader counts every boot (RAUC's), the
// committed group is marked good again.
func markBooted(root string) error {
	d, err := device.Open(device.Options{Root: root})
	if err != nil {
		return err
	}
	if _, ok := d.Flow.(bootflow.Refresher); !ok {
		return nil
	}
	if _, err := d.Refresh(); err != nil {
		return fmt.Errorf("tandem health after the boot: %w", err)
	}
	return nil
}

// loader is one boot loader's model.
type loader interface {
	// install writes the factory boot state: the first group is the default.
	install(fsys *rootfs.OS, cfg *config.Config) error
	// boot decides which group starts, making the writes the real boot
	// loader makes; args are the arguments of the reboot request.
	boot(fsys *rootfs.OS, cfg *config.Config, args []string) (string, []string, error)
}

func loaderFor(cfg *config.Config) loader {
	switch cfg.BootFlow.Type {
	case config.FlowGrub:
		return grubLoader{}
	case config.FlowUBoot:
		return ubootLoader{}
	case config.FlowRPiTryboot:
		return rpiLoader{}
	case config.FlowSystemdBoot:
		return systemdBootLoader{}
	case config.FlowMenderGrub:
		return menderGrubLoader{}
	case config.FlowMenderUBoot:
		return menderUBootLoader{}
	case config.FlowRAUCGrub:
		return raucGrubLoader{}
	case config.FlowRAUCUBoot:
		return raucUBootLoader{}
	case config.FlowRugixGrub:
		return rugixGrubLoader{}
	}
	return customLoader{}
}

// errNoBoot is returned by a model that cannot start any group.
var errNoBoot = errors.New("no bootable group")
