// Package adopt finds the boot integration another update system left on a
// device (Mender's, RAUC's or Rugix Ctrl's) and writes the system.toml with
// which tandem drives it as it is, without re-flashing the boot loader
// (docs/migrating.md). It reads the other system's configuration and boot
// files under a root prefix, never writes them, and checks the result by
// reading the boot state through the flow it chose.
package adopt

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootenv/grubenv"
	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/bounded"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Systems that can be adopted, the values of Options.From.
const (
	Mender = "mender"
	RAUC   = "rauc"
	Rugix  = "rugix"
)

// Systems lists them in the order they are looked for.
var Systems = []string{Mender, RAUC, Rugix}

// maxFile bounds every file adopt reads.
const maxFile = 1 << 20

// ErrNotFound means no integration of the systems looked for is on the device.
var ErrNotFound = errors.New("no boot integration of another update system found")

// Options say where and what to look for.
type Options struct {
	Root       string // root prefix ("" = /)
	From       string // "" (find it) or one of Systems
	Compatible string // the compatible string; "" = the one the other system names
	// ConfigDir is where Rugix's config partition is mounted ("" = look in
	// /run/rugix/mounts/config, /boot/efi and /boot).
	ConfigDir string
	// Run: Write writes the configuration instead of printing it; Force
	// replaces an existing file.
	Write, Force bool
}

// Run detects the integration under root and prints the configuration to
// w, or writes it to configPath (a device path; "" = config.DefaultPath)
// and reports what it wrote and the notes.
func Run(o Options, root, configPath string, w io.Writer) error {
	o.Root = root
	r, err := Detect(o)
	if err != nil {
		return err
	}
	if !o.Write {
		_, err := w.Write(r.Config)
		return err
	}
	p := cmp.Or(configPath, config.DefaultPath)
	if err := Write(root, p, r, o.Force); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s: %s's integration, boot flow %s, default group %s\n", p, r.System, r.Flow, r.Default)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

// Result is what was found and the configuration that drives it.
type Result struct {
	System  string   // Mender, RAUC or Rugix
	Flow    string   // the boot flow type
	Found   []string // the evidence, one line each
	Notes   []string // what the user must know before switching
	Config  []byte   // system.toml text
	Default string   // the group the boot loader starts now
}

// finding is one system's integration, before it is turned into text.
type finding struct {
	system, compatible string
	found, notes       []string
	slots              []slot
	groups             [][2]string // group, aliases as TOML inline table
	flow               []string    // [boot-flow] lines
	flowType           string
}

type slot struct {
	name, device string
	partition    int
}

// Detect looks for the integrations, refuses none or several, and returns
// the configuration for the one it found.
func Detect(o Options) (*Result, error) {
	if o.From != "" && !slices.Contains(Systems, o.From) {
		return nil, fmt.Errorf("unknown system %q: want %s", o.From, strings.Join(Systems, ", "))
	}
	fsys := rootfs.NewOS(o.Root)
	var found []*finding
	var looked []string
	for _, sys := range Systems {
		if o.From != "" && sys != o.From {
			continue
		}
		f, where, err := detectors[sys](fsys, o)
		if err != nil {
			return nil, err
		}
		looked = append(looked, where)
		if f != nil {
			found = append(found, f)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w under %s (looked for %s)", ErrNotFound, rootName(o.Root), strings.Join(looked, "; "))
	case 1:
	default:
		var names []string
		for _, f := range found {
			names = append(names, f.system+" ("+f.found[0]+")")
		}
		return nil, fmt.Errorf("found the integrations of %s: choose one with --from", strings.Join(names, " and "))
	}
	f := found[0]
	if o.Compatible != "" {
		f.compatible = o.Compatible
	}
	if f.compatible == "" {
		return nil, fmt.Errorf("%s names no compatible string on this device: give the one your tandem bundles carry with --compatible", f.system)
	}
	if strings.ContainsAny(f.compatible, " \t") && o.Compatible == "" {
		return nil, fmt.Errorf("%s's compatible string %q has a space, which tandem's cannot hold: give the one your tandem bundles carry with --compatible", f.system, f.compatible)
	}
	return f.result(fsys)
}

func rootName(root string) string {
	if root == "" {
		return "/"
	}
	return root
}

var detectors = map[string]func(*rootfs.OS, Options) (*finding, string, error){
	Mender: detectMender,
	RAUC:   detectRAUC,
	Rugix:  detectRugix,
}

// result renders the configuration, checks it as tandem would load it and
// reads the boot state through the flow.
func (f *finding) result(fsys *rootfs.OS) (*Result, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Made by `tandem adopt` from the %s integration on this device (docs/migrating.md).\n", f.system)
	for _, l := range f.found {
		fmt.Fprintf(&b, "#   found: %s\n", l)
	}
	for _, l := range f.notes {
		fmt.Fprintf(&b, "#   note: %s\n", l)
	}
	fmt.Fprintf(&b, "compatible = %q\n\n", f.compatible)
	for _, s := range f.slots {
		if s.device != "" {
			fmt.Fprintf(&b, "[slots.%s]\ntype = \"block\"\ndevice = %q\n\n", s.name, s.device)
		} else {
			fmt.Fprintf(&b, "[slots.%s]\ntype = \"block\"\npartition = %d\n\n", s.name, s.partition)
		}
	}
	for _, g := range f.groups {
		fmt.Fprintf(&b, "[groups.%s]\nslots = %s\n\n", g[0], g[1])
	}
	fmt.Fprintf(&b, "[boot-flow]\ntype = %q\n", f.flowType)
	for _, l := range f.flow {
		b.WriteString(l + "\n")
	}
	text := []byte(b.String())
	cfg, err := config.Parse("the generated system.toml", text)
	if err != nil {
		return nil, fmt.Errorf("the %s integration does not fit a tandem configuration: %w", f.system, err)
	}
	flow, err := bootflow.New(cfg, fsys)
	if err != nil {
		return nil, err
	}
	def, err := flow.Default()
	if err != nil {
		return nil, fmt.Errorf("found the %s integration, but its boot state does not read: %w", f.system, err)
	}
	if tr, ok := flow.(bootflow.TrialReader); ok && f.system != RAUC {
		if g, _, err := tr.Trial(); err != nil {
			return nil, err
		} else if g != "" {
			return nil, fmt.Errorf("a trial of group %s is pending on the %s integration: finish that update with %s first (commit or roll back), then adopt", g, f.system, f.system)
		}
	}
	return &Result{System: f.system, Flow: f.flowType, Found: f.found, Notes: f.notes, Config: text, Default: def}, nil
}

// Write writes the configuration to path (a device path under root),
// atomically, refusing to replace an existing file unless force is set.
func Write(root, p string, r *Result, force bool) error {
	fsys := rootfs.NewOS(root)
	if _, err := fsys.Stat(p); err == nil && !force {
		return fmt.Errorf("%s exists: tandem adopt does not overwrite a configuration (give --force to replace it)", fsys.Path(p))
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := fsys.MkdirAll(path.Dir(p), 0o755); err != nil {
		return err
	}
	return rootfs.WriteAtomic(fsys, p, r.Config, 0o644)
}

// readSmall reads a device file of at most maxFile bytes; a missing file is
// nil, nil.
func readSmall(fsys *rootfs.OS, p string) ([]byte, error) {
	b, err := bounded.ReadFile(fsys.Path(p), maxFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", fsys.Path(p), err)
	}
	return b, nil
}

func exists(fsys *rootfs.OS, p string) bool {
	_, err := os.Stat(fsys.Path(p))
	return err == nil
}

// partNumber is the partition number at the end of a device path
// (/dev/mmcblk0p2 → 2, /dev/sda3 → 3).
// groupName is a tandem group name made from a RAUC bootname.
var groupName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

var partNumber = regexp.MustCompile(`[0-9]+$`)

func partitionOf(dev string) (int, bool) {
	n, err := strconv.Atoi(partNumber.FindString(dev))
	return n, err == nil && n > 0
}

// ---- Mender ----

// menderEnvDirs are where Mender's tools look for the grubenv pair.
var menderEnvDirs = []string{"/boot/efi/grub-mender-grubenv", "/boot/grub/grub-mender-grubenv", "/boot/grub-mender-grubenv", "/boot/efi/EFI/BOOT", "/boot/grub"}

func detectMender(fsys *rootfs.OS, _ Options) (*finding, string, error) {
	const where = "Mender: /etc/mender/mender.conf, the grubenv pair in " + "/boot/{efi,grub}/grub-mender-grubenv, /etc/fw_env.config"
	conf, err := readSmall(fsys, "/etc/mender/mender.conf")
	if err != nil {
		return nil, where, err
	}
	f := &finding{system: Mender}
	dirs := menderEnvDirs
	if b, err := readSmall(fsys, "/etc/mender_grubenv.config"); err != nil {
		return nil, where, err
	} else if b != nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "ENV_DIR" {
				dirs = []string{strings.TrimSpace(v)}
			}
		}
	}
	envDir := ""
	for _, d := range dirs {
		if exists(fsys, path.Join(d, "mender_grubenv1", "env")) {
			envDir = d
			break
		}
	}
	switch {
	case envDir != "":
		f.flowType = config.FlowMenderGrub
		f.flow = append(f.flow, fmt.Sprintf("env-dir = %q", envDir))
		f.found = append(f.found, "Mender's grubenv pair in "+envDir)
	case conf != nil && exists(fsys, config.DefaultFwEnvConfig):
		f.flowType = config.FlowMenderUBoot
		f.flow = append(f.flow, `backend = "fw-setenv"`, fmt.Sprintf("fw-env-config = %q", config.DefaultFwEnvConfig))
		f.found = append(f.found, "Mender's U-Boot environment through "+config.DefaultFwEnvConfig)
	default:
		if conf != nil {
			return nil, where, fmt.Errorf("found /etc/mender/mender.conf but neither Mender's grubenv pair nor /etc/fw_env.config: tandem cannot tell how this device boots")
		}
		return nil, where, nil
	}
	var mc struct{ RootfsPartA, RootfsPartB string }
	if conf != nil {
		f.found = append(f.found, "/etc/mender/mender.conf")
		if err := json.Unmarshal(conf, &mc); err != nil {
			return nil, where, fmt.Errorf("%s: %w", fsys.Path("/etc/mender/mender.conf"), err)
		}
	}
	parts := [2]int{2, 3} // Mender's default numbering
	for i, dev := range []string{mc.RootfsPartA, mc.RootfsPartB} {
		name := "system-" + string(rune('a'+i))
		if dev == "" {
			f.slots = append(f.slots, slot{name: name, partition: parts[i]})
			continue
		}
		n, ok := partitionOf(dev)
		if !ok {
			return nil, where, fmt.Errorf("mender.conf: RootfsPart%c = %q ends in no partition number (Mender's boot_part needs one)", 'A'+i, dev)
		}
		parts[i] = n
		f.slots = append(f.slots, slot{name: name, device: dev})
	}
	f.flow = append(f.flow, fmt.Sprintf("partitions = { a = %d, b = %d }", parts[0], parts[1]))
	f.groups = [][2]string{{"a", `{ system = "system-a" }`}, {"b", `{ system = "system-b" }`}}
	if b, err := readSmall(fsys, "/var/lib/mender/device_type"); err != nil {
		return nil, where, err
	} else if v, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "device_type="); ok {
		f.compatible = v
		f.found = append(f.found, "/var/lib/mender/device_type: "+v)
	}
	f.notes = append(f.notes, "stop the Mender client before tandem installs (systemctl disable --now mender-updated, or mender-client on Mender 3)")
	return f, where, nil
}

// ---- RAUC ----

type raucSlot struct {
	class, index, device, bootname, parent string
}

// parseINI reads RAUC's key files: [section] and key=value lines.
func parseINI(b []byte) (map[string]map[string]string, []string, error) {
	secs := map[string]map[string]string{}
	var order []string
	cur := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			cur = line[1 : len(line)-1]
			if secs[cur] == nil {
				secs[cur] = map[string]string{}
				order = append(order, cur)
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || cur == "" {
				return nil, nil, fmt.Errorf("line %d: want [section] or key=value", i+1)
			}
			secs[cur][strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return secs, order, nil
}

func detectRAUC(fsys *rootfs.OS, _ Options) (*finding, string, error) {
	const where = "RAUC: /etc/rauc/system.conf"
	const file = "/etc/rauc/system.conf"
	b, err := readSmall(fsys, file)
	if err != nil || b == nil {
		return nil, where, err
	}
	bad := func(format string, args ...any) (*finding, string, error) {
		return nil, where, fmt.Errorf("%s: %s", fsys.Path(file), fmt.Sprintf(format, args...))
	}
	secs, order, err := parseINI(b)
	if err != nil {
		return bad("%v", err)
	}
	sys := secs["system"]
	f := &finding{system: RAUC, compatible: sys["compatible"], found: []string{file + ": bootloader=" + sys["bootloader"]}}
	switch sys["bootloader"] {
	case "uboot":
		f.flowType = config.FlowRAUCUBoot
		f.flow = append(f.flow, `backend = "fw-setenv"`, fmt.Sprintf("fw-env-config = %q", config.DefaultFwEnvConfig))
		attempts := 3
		if v, ok := sys["boot-attempts-primary"]; ok {
			if attempts, err = strconv.Atoi(v); err != nil || attempts < 1 || attempts > config.MaxAttempts {
				return bad("boot-attempts-primary=%q: tandem takes 1 to %d", v, config.MaxAttempts)
			}
		}
		f.flow = append(f.flow, fmt.Sprintf("attempts = %d", attempts))
	case "grub":
		f.flowType = config.FlowRAUCGrub
		env := sys["grubenv"]
		if env == "" {
			env = "/boot/grub/grubenv" // RAUC's default
		}
		f.flow = append(f.flow, fmt.Sprintf("grubenv = %q", env))
	default:
		return bad("bootloader=%q: tandem drives RAUC's uboot and grub integrations only", sys["bootloader"])
	}
	var slots []raucSlot
	for _, s := range order {
		rest, ok := strings.CutPrefix(s, "slot.")
		if !ok {
			continue
		}
		class, index, ok := strings.Cut(rest, ".")
		if !ok {
			return bad("[%s]: want [slot.<class>.<index>]", s)
		}
		sl := raucSlot{class: class, index: index, device: secs[s]["device"], bootname: secs[s]["bootname"], parent: secs[s]["parent"]}
		if !strings.HasPrefix(sl.device, "/") {
			return bad("[%s]: device=%q is not an absolute path", s, sl.device)
		}
		slots = append(slots, sl)
	}
	var names []string
	for _, sl := range slots {
		if sl.bootname == "" {
			continue
		}
		g := strings.ToLower(sl.bootname)
		if !groupName.MatchString(g) {
			g = "g" + sl.index
		}
		aliases := []string{fmt.Sprintf("system = %q", sl.class+"-"+sl.index)}
		for _, c := range slots {
			if c.parent == sl.class+"."+sl.index {
				aliases = append(aliases, fmt.Sprintf("%s = %q", c.class, c.class+"-"+c.index))
			}
		}
		f.groups = append(f.groups, [2]string{g, "{ " + strings.Join(aliases, ", ") + " }"})
		names = append(names, fmt.Sprintf("%s = %q", g, sl.bootname))
	}
	if len(f.groups) < 2 {
		return bad("names %d bootable slots (a bootname); an A/B system has two", len(f.groups))
	}
	for _, sl := range slots {
		if sl.bootname != "" || sl.parent != "" {
			f.slots = append(f.slots, slot{name: sl.class + "-" + sl.index, device: sl.device})
		}
	}
	f.flow = append(f.flow, "names = { "+strings.Join(names, ", ")+" }")
	f.notes = append(f.notes,
		"RAUC keeps every good slot bootable and counts every boot: tandem reads the running slot as on trial until its first commit "+
			"(tandem health does it at the next boot, or run tandem system commit), then keeps only the committed slot bootable",
		"replace rauc-mark-good.service with tandem-health.service: the committed slot is marked good after each boot")
	return f, where, nil
}

// ---- Rugix Ctrl ----

var rugixConfigDirs = []string{"/run/rugix/mounts/config", "/boot/efi", "/boot"}

func detectRugix(fsys *rootfs.OS, o Options) (*finding, string, error) {
	dirs := rugixConfigDirs
	if o.ConfigDir != "" {
		dirs = []string{o.ConfigDir}
	}
	where := "Rugix Ctrl: rugpi/primary.grubenv or autoboot.txt in " + strings.Join(dirs, ", ")
	for _, d := range dirs {
		f := &finding{system: Rugix}
		switch {
		case exists(fsys, path.Join(d, bootflow.RugixDir, bootflow.RugixPrimary)):
			if b, err := readSmall(fsys, path.Join(d, bootflow.RugixDir, bootflow.RugixPrimary)); err != nil {
				return nil, where, err
			} else if _, err := grubenv.Parse(b); err != nil {
				return nil, where, fmt.Errorf("%s: %w", fsys.Path(path.Join(d, bootflow.RugixDir, bootflow.RugixPrimary)), err)
			}
			f.flowType = config.FlowRugixGrub
			f.found = append(f.found, "Rugix's GRUB environment in "+path.Join(d, bootflow.RugixDir))
			// Rugix's GRUB layout (GPT): config, boot-a, boot-b, system-a, system-b.
			f.slots = []slot{{name: "boot-a", partition: 2}, {name: "boot-b", partition: 3}, {name: "system-a", partition: 4}, {name: "system-b", partition: 5}}
		case exists(fsys, path.Join(d, "autoboot.txt")):
			f.flowType = config.FlowRPiTryboot
			f.found = append(f.found, "Rugix's tryboot autoboot.txt in "+d)
			// Rugix's tryboot layout (MBR): config, boot-a, boot-b, (extended), system-a, system-b.
			f.slots = []slot{{name: "boot-a", partition: 2}, {name: "boot-b", partition: 3}, {name: "system-a", partition: 5}, {name: "system-b", partition: 6}}
			f.notes = append(f.notes, "a GPT image of Rugix's tryboot layout has system-a and system-b on partitions 4 and 5: edit the slots if so")
		default:
			continue
		}
		f.flow = append(f.flow, fmt.Sprintf("boot-dir = %q", d), "partitions = { a = 2, b = 3 }")
		f.groups = [][2]string{{"a", `{ boot = "boot-a", system = "system-a" }`}, {"b", `{ boot = "boot-b", system = "system-b" }`}}
		if d == "/run/rugix/mounts/config" {
			f.notes = append(f.notes, "Rugix's init mounted the config partition at /run/rugix/mounts/config: mount it there (or change boot-dir) when tandem replaces rugix-ctrl")
		}
		return f, where, nil
	}
	return nil, where, nil
}
