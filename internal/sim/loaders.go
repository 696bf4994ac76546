package sim

import (
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/tandem-ota/tandem/bootloader"
	"github.com/tandem-ota/tandem/internal/bootenv/autoboot"
	"github.com/tandem-ota/tandem/internal/bootenv/grubenv"
	"github.com/tandem-ota/tandem/internal/bootenv/ubootenv"
	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// decrement is the script's table: a count of 1..9 goes one down; anything
// else is no trial.
func decrement(left string) (string, bool) {
	n, err := strconv.Atoi(left)
	if err != nil || n < 1 || n > config.MaxAttempts || strconv.Itoa(n) != left {
		return "", false
	}
	return strconv.Itoa(n - 1), true
}

// ---- GRUB: bootloader/grub/tandem.cfg ----

type grubLoader struct{}

func (grubLoader) dir(cfg *config.Config) string {
	return path.Join(cfg.BootFlow.BootDir, bootflow.GrubDir)
}

func (l grubLoader) install(fsys *rootfs.OS, cfg *config.Config) error {
	dir := l.dir(cfg)
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	blocks := map[string][]string{
		bootflow.GrubPrimary:   {bootflow.GrubVarDefault, cfg.GroupNames()[0]},
		bootflow.GrubSecondary: {bootflow.GrubVarDefault, cfg.GroupNames()[0]},
		bootflow.GrubTrial:     {bootflow.GrubVarTrial, "", bootflow.GrubVarTrialLeft, "0"},
	}
	for name, vars := range blocks {
		b, err := grubenv.Block(vars...)
		if err != nil {
			return err
		}
		if err := os.WriteFile(fsys.Path(path.Join(dir, name)), b, 0o644); err != nil {
			return err
		}
	}
	if err := fsys.MkdirAll(path.Join(cfg.BootFlow.BootDir, "grub"), 0o755); err != nil {
		return err
	}
	script := fmt.Sprintf("set tandem_dir=%q\nset tandem_groups=%q\n%s", "/"+bootflow.GrubDir, strings.Join(cfg.GroupNames(), " "), bootloader.GrubScript)
	return os.WriteFile(fsys.Path(path.Join(cfg.BootFlow.BootDir, "grub", "tandem.cfg")), []byte(script), 0o644)
}

func loadGrub(fsys *rootfs.OS, p string) (*grubenv.Env, error) {
	b, err := os.ReadFile(fsys.Path(p))
	if err != nil {
		return nil, err
	}
	return grubenv.Parse(b)
}

func (l grubLoader) boot(fsys *rootfs.OS, cfg *config.Config, _ []string) (string, []string, error) {
	groups, dir := cfg.GroupNames(), l.dir(cfg)
	var notes []string
	group := ""
	for _, name := range []string{bootflow.GrubPrimary, bootflow.GrubSecondary} {
		env, err := loadGrub(fsys, path.Join(dir, name))
		if err != nil {
			notes = append(notes, fmt.Sprintf("grub: %s unusable: %v", name, err))
			continue
		}
		if def, _ := env.Get(bootflow.GrubVarDefault); slices.Contains(groups, def) {
			group = def
			break
		}
		notes = append(notes, fmt.Sprintf("grub: %s names no group", name))
	}
	if group == "" {
		group = groups[0]
		notes = append(notes, "fallback: no usable default, booting the first group "+group)
	}
	trialPath := fsys.Path(path.Join(dir, bootflow.GrubTrial))
	env, err := loadGrub(fsys, path.Join(dir, bootflow.GrubTrial))
	if err != nil {
		return group, notes, nil
	}
	trial, _ := env.Get(bootflow.GrubVarTrial)
	left, _ := env.Get(bootflow.GrubVarTrialLeft)
	next, ok := decrement(left)
	if !slices.Contains(groups, trial) || !ok {
		return group, notes, nil
	}
	// save_env rewrites the block in place.
	if err := env.Set(bootflow.GrubVarTrialLeft, next); err != nil {
		return group, notes, err
	}
	b, err := env.Encode(grubenv.BlockSize)
	if err != nil {
		return group, append(notes, "grub: save_env failed, booting the default"), nil
	}
	if err := writeInPlace(trialPath, b); err != nil {
		return group, append(notes, "grub: save_env failed, booting the default"), nil
	}
	return trial, append(notes, fmt.Sprintf("grub: trying %s, %s attempts left after this one", trial, next)), nil
}

// writeInPlace overwrites an existing file without creating or renaming.
func writeInPlace(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ---- U-Boot: bootloader/u-boot/boot.cmd, tandem's env files ----

// ubootVars are the only variables boot.cmd imports from the env files and
// writes back (env import/export with this list).
var ubootVars = []string{bootflow.UBootVarDefault, bootflow.UBootVarTrial, bootflow.UBootVarTrialLeft}

type ubootLoader struct{}

func (ubootLoader) install(fsys *rootfs.OS, cfg *config.Config) error {
	bf := cfg.BootFlow
	env := &ubootenv.Env{}
	if err := env.Set(bootflow.UBootVarDefault, cfg.GroupNames()[0]); err != nil {
		return err
	}
	for i, f := range []string{bf.EnvFile, bf.EnvFileRedund} {
		img, err := ubootenv.Encode(env, bf.EnvSize, true, byte(1-i))
		if err != nil {
			return err
		}
		if err := fsys.MkdirAll(path.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(fsys.Path(f), img, 0o644); err != nil {
			return err
		}
	}
	if bf.Backend == config.UBootBackendFwSetenv {
		conf := fmt.Sprintf("# made by tandem sim new: the two copies of the redundant environment\n%s 0x0 %#x\n%s 0x0 %#x\n",
			fsys.Path(bf.EnvFile), bf.EnvSize, fsys.Path(bf.EnvFileRedund), bf.EnvSize)
		if err := fsys.MkdirAll(path.Dir(bf.FwEnvConfig), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(fsys.Path(bf.FwEnvConfig), []byte(conf), 0o644); err != nil {
			return err
		}
	}
	rel := func(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, bf.BootDir), "/") }
	script, err := bootloader.UBootCmd(bootloader.UBootSettings{
		Groups:        cfg.GroupNames(),
		EnvFile:       rel(bf.EnvFile),
		EnvFileRedund: rel(bf.EnvFileRedund),
		EnvSize:       bf.EnvSize,
		Boot:          `echo "tandem sim: boot group ${tandem_group}"`,
	})
	if err != nil {
		return err
	}
	return os.WriteFile(fsys.Path(path.Join(bf.BootDir, "boot.cmd")), script, 0o644)
}

// boot plays boot.cmd in files mode: a copy counts only if it is exactly
// env-size bytes with a good CRC; of the two, U-Boot's flag rule picks the
// current one; only tandem's variables are imported. A trial count goes down
// in a new copy (only tandem's variables, the next flag) written in place
// over the other file, as fatwrite does, and only if that file exists with
// the right size; otherwise the default boots.
func (ubootLoader) boot(fsys *rootfs.OS, cfg *config.Config, _ []string) (string, []string, error) {
	bf, groups := cfg.BootFlow, cfg.GroupNames()
	files := [2]string{fsys.Path(bf.EnvFile), fsys.Path(bf.EnvFileRedund)}
	var imgs [2][]byte
	var sized [2]bool
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && len(b) == bf.EnvSize {
			imgs[i], sized[i] = b, true
		}
	}
	var notes []string
	vars := map[string]string{}
	idx, env, flag, err := ubootenv.SelectRedundant(imgs[0], imgs[1])
	if err != nil {
		notes = append(notes, "u-boot: no valid copy of the env files: "+err.Error())
		idx = -1
	} else {
		for _, n := range ubootVars {
			if v, ok := env.Get(n); ok && v != "" {
				vars[n] = v
			}
		}
	}
	group := vars[bootflow.UBootVarDefault]
	if !slices.Contains(groups, group) {
		group = groups[0]
		notes = append(notes, "fallback: no usable default, booting the first group "+group)
	}
	trial := vars[bootflow.UBootVarTrial]
	next, ok := decrement(vars[bootflow.UBootVarTrialLeft])
	if !slices.Contains(groups, trial) || !ok || idx < 0 {
		return group, notes, nil
	}
	if !sized[1-idx] {
		return group, append(notes, "u-boot: "+files[1-idx]+" is missing or has the wrong size: counting the trial down failed, booting the default"), nil
	}
	vars[bootflow.UBootVarTrialLeft] = next
	out := &ubootenv.Env{}
	for _, n := range ubootVars {
		if v, ok := vars[n]; ok {
			if err := out.Set(n, v); err != nil {
				return group, notes, err
			}
		}
	}
	img, err := ubootenv.Encode(out, bf.EnvSize, true, ubootenv.NextFlag(flag))
	if err == nil {
		err = writeInPlace(files[1-idx], img)
	}
	if err != nil {
		return group, append(notes, "u-boot: fatwrite failed, booting the default"), nil
	}
	return trial, append(notes, fmt.Sprintf("u-boot: trying %s, %s attempts left after this one", trial, next)), nil
}

// ---- Raspberry Pi firmware: autoboot.txt and the tryboot flag ----

type rpiLoader struct{}

func (rpiLoader) install(fsys *rootfs.OS, cfg *config.Config) error {
	bf, groups := cfg.BootFlow, cfg.GroupNames()
	f := autoboot.New(bf.Partitions[groups[0]], bf.Partitions[groups[1]])
	return os.WriteFile(fsys.Path(path.Join(bf.BootDir, "autoboot.txt")), f.Bytes(), 0o644)
}

func (rpiLoader) boot(fsys *rootfs.OS, cfg *config.Config, args []string) (string, []string, error) {
	bf := cfg.BootFlow
	b, err := os.ReadFile(fsys.Path(path.Join(bf.BootDir, "autoboot.txt")))
	if err != nil {
		return "", nil, fmt.Errorf("%w: firmware: autoboot.txt unreadable (%v), it would boot partition 1", errNoBoot, err)
	}
	f, err := autoboot.Parse(b)
	if err != nil {
		return "", nil, fmt.Errorf("%w: firmware: autoboot.txt: %v", errNoBoot, err)
	}
	all, try, err := f.Partitions()
	if err != nil {
		return "", nil, fmt.Errorf("%w: firmware: autoboot.txt: %v", errNoBoot, err)
	}
	part, notes := all, []string(nil)
	if slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, "tryboot") }) && try != 0 {
		part = try
		notes = append(notes, fmt.Sprintf("firmware: tryboot flag set, booting partition %d once", try))
	}
	for g, p := range bf.Partitions {
		if p == part {
			return g, notes, nil
		}
	}
	return "", notes, fmt.Errorf("%w: firmware: partition %d holds no group", errNoBoot, part)
}

// ---- custom: the controller's own boot operation ----

// ControllerPath is where `tandem sim new` puts its example boot controller.
const ControllerPath = "/usr/lib/tandem/sim-boot-controller"

type customLoader struct{}

func (customLoader) install(fsys *rootfs.OS, cfg *config.Config) error {
	if err := fsys.MkdirAll(path.Dir(ControllerPath), 0o755); err != nil {
		return err
	}
	if err := fsys.MkdirAll("/boot/controller", 0o755); err != nil {
		return err
	}
	state := fmt.Sprintf("default=%s\ntrial=\nleft=0\n", cfg.GroupNames()[0])
	if err := os.WriteFile(fsys.Path("/boot/controller/state"), []byte(state), 0o644); err != nil {
		return err
	}
	return os.WriteFile(fsys.Path(ControllerPath), []byte(controllerScript), 0o755)
}

func (customLoader) boot(fsys *rootfs.OS, cfg *config.Config, _ []string) (string, []string, error) {
	r, err := bootflow.RunController(fsys, cfg.BootFlow.Controller, cfg.BootFlow.Attempts, false, "boot")
	if err != nil {
		return "", nil, err
	}
	return r.Group, nil, nil
}
