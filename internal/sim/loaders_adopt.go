package sim

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootenv/grubenv"
	"github.com/tandem-ota/tandem/internal/bootenv/ubootenv"
	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Models of other update systems' boot integrations (docs/migrating.md),
// each written from that project's public description of its variables:
// Mender's GRUB scripts (grub-mender-grubenv) and U-Boot patch (bootcount,
// bootlimit, altbootcmd), RAUC's example GRUB and U-Boot scripts, Rugix
// Ctrl's GRUB script. The device models run as the boot loader would:
// U-Boot's saveenv writes every variable to the other redundant copy with the
// next flag; GRUB's save_env rewrites the named variables of an existing
// block in place.

// partitionGroup returns the group whose partition is n.
func partitionGroup(cfg *config.Config, n int) (string, bool) {
	for _, g := range cfg.GroupNames() {
		if cfg.BootFlow.Partitions[g] == n {
			return g, true
		}
	}
	return "", false
}

// ---- U-Boot's redundant environment, as U-Boot itself reads and writes it ----

// ubootEnv is the environment U-Boot loaded: the current copy (idx) or, when
// neither copy is valid, the default environment (idx -1).
type ubootEnv struct {
	vars map[string]string
	idx  int
	flag byte
}

func loadUBootEnv(fsys *rootfs.OS, bf config.BootFlow) (ubootEnv, []string) {
	var imgs [2][]byte
	for i, f := range []string{bf.EnvFile, bf.EnvFileRedund} {
		if b, err := os.ReadFile(fsys.Path(f)); err == nil && len(b) == bf.EnvSize {
			imgs[i] = b
		}
	}
	e := ubootEnv{vars: map[string]string{}, idx: -1}
	idx, env, flag, err := ubootenv.SelectRedundant(imgs[0], imgs[1])
	if err != nil {
		return e, []string{"fallback: u-boot: no valid environment copy, using the default environment: " + err.Error()}
	}
	e.idx, e.flag, e.vars = idx, flag, env.Map()
	return e, nil
}

// saveenv writes every variable to the copy that is not current, with the
// next flag, in place.
func (e *ubootEnv) saveenv(fsys *rootfs.OS, bf config.BootFlow) error {
	env := &ubootenv.Env{}
	for _, n := range slices.Sorted(maps.Keys(e.vars)) {
		if err := env.Set(n, e.vars[n]); err != nil {
			return err
		}
	}
	files := [2]string{bf.EnvFile, bf.EnvFileRedund}
	target := 0
	if e.idx >= 0 {
		target = 1 - e.idx
	}
	img, err := ubootenv.Encode(env, bf.EnvSize, true, ubootenv.NextFlag(e.flag))
	if err != nil {
		return err
	}
	if err := writeInPlace(fsys.Path(files[target]), img); err != nil {
		return err
	}
	e.idx, e.flag = target, ubootenv.NextFlag(e.flag)
	return nil
}

// installUBootEnv writes the factory environment into both copies (and,
// for the fw-setenv back end, an fw_env.config naming them).
func installUBootEnv(fsys *rootfs.OS, bf config.BootFlow, vars [][2]string) error {
	env := &ubootenv.Env{}
	for _, kv := range vars {
		if err := env.Set(kv[0], kv[1]); err != nil {
			return err
		}
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
	if bf.Backend != config.UBootBackendFwSetenv {
		return nil
	}
	conf := fmt.Sprintf("# made by tandem sim new: the two copies of the redundant environment\n%s 0x0 %#x\n%s 0x0 %#x\n",
		fsys.Path(bf.EnvFile), bf.EnvSize, fsys.Path(bf.EnvFileRedund), bf.EnvSize)
	if err := fsys.MkdirAll(path.Dir(bf.FwEnvConfig), 0o755); err != nil {
		return err
	}
	return os.WriteFile(fsys.Path(bf.FwEnvConfig), []byte(conf), 0o644)
}

// ---- GRUB: grubenv blocks read with load_env, written with save_env ----

// saveEnv is GRUB's save_env --file p: the named variables are written into
// the existing block in place; a missing or unparsable block is not written.
func saveEnv(fsys *rootfs.OS, p string, vars map[string]string) error {
	env, err := loadGrub(fsys, p)
	if err != nil {
		return err
	}
	for _, n := range slices.Sorted(maps.Keys(vars)) {
		if err := env.Set(n, vars[n]); err != nil {
			return err
		}
	}
	b, err := env.Encode(grubenv.BlockSize)
	if err != nil {
		return err
	}
	return writeInPlace(fsys.Path(p), b)
}

func writeBlock(fsys *rootfs.OS, p string, pairs ...string) error {
	b, err := grubenv.Block(pairs...)
	if err != nil {
		return err
	}
	if err := fsys.MkdirAll(path.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(fsys.Path(p), b, 0o644)
}

// ---- Mender ----

func menderVars(part int) []string {
	return []string{bootflow.MenderVarBootcount, "0", bootflow.MenderVarPart, strconv.Itoa(part),
		bootflow.MenderVarPartHex, strconv.FormatInt(int64(part), 16), bootflow.MenderVarUpgrade, "0"}
}

type menderGrubLoader struct{}

func (menderGrubLoader) file(cfg *config.Config, c int, name string) string {
	return path.Join(cfg.BootFlow.EnvDir, fmt.Sprintf("mender_grubenv%d", c), name)
}

func (l menderGrubLoader) install(fsys *rootfs.OS, cfg *config.Config) error {
	part := cfg.BootFlow.Partitions[cfg.GroupNames()[0]]
	for c := 1; c <= 2; c++ {
		if err := writeBlock(fsys, l.file(cfg, c, "env"), menderVars(part)...); err != nil {
			return err
		}
		if err := writeBlock(fsys, l.file(cfg, c, "lock"), bootflow.MenderVarEditing, "0"); err != nil {
			return err
		}
		if err := os.WriteFile(fsys.Path(l.file(cfg, c, "lock.sha256sum")), bootflow.MenderLockSum(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// menderGrubVars are the variables Mender's GRUB script loads and saves.
var menderGrubVars = []string{bootflow.MenderVarBootcount, bootflow.MenderVarPart, bootflow.MenderVarUpgrade}

func (l menderGrubLoader) editing(fsys *rootfs.OS, cfg *config.Config, c int) string {
	env, err := loadGrub(fsys, l.file(cfg, c, "lock"))
	if err != nil {
		return "invalid"
	}
	v, ok := env.Get(bootflow.MenderVarEditing)
	if !ok {
		return "invalid"
	}
	return v
}

func (l menderGrubLoader) pick(fsys *rootfs.OS, cfg *config.Config, c int) map[string]string {
	vars := map[string]string{}
	env, err := loadGrub(fsys, l.file(cfg, c, "env"))
	if err != nil {
		return vars
	}
	for _, n := range menderGrubVars {
		if v, ok := env.Get(n); ok {
			vars[n] = v
		}
	}
	return vars
}

// boot plays mender_check_and_restore_env, mender_load_env and the
// rollback logic of Mender's GRUB scripts.
func (l menderGrubLoader) boot(fsys *rootfs.OS, cfg *config.Config, _ []string) (string, []string, error) {
	var notes []string
	// Restore a copy whose lock is not 0 from the other one (copy 2 first).
	for _, c := range []int{2, 1} {
		if l.editing(fsys, cfg, c) == "0" {
			continue
		}
		notes = append(notes, fmt.Sprintf("mender-grub: copy %d was being edited, restored from copy %d", c, 3-c))
		if err := saveEnv(fsys, l.file(cfg, c, "env"), l.pick(fsys, cfg, 3-c)); err != nil {
			notes = append(notes, fmt.Sprintf("mender-grub: restoring copy %d failed: %v", c, err))
		}
		if err := saveEnv(fsys, l.file(cfg, c, "lock"), map[string]string{bootflow.MenderVarEditing: "0"}); err != nil {
			notes = append(notes, fmt.Sprintf("mender-grub: lock %d unusable: %v", c, err))
		}
		break
	}
	vars := l.pick(fsys, cfg, 1)
	groups := cfg.GroupNames()
	partA, partB := cfg.BootFlow.Partitions[groups[0]], cfg.BootFlow.Partitions[groups[1]]
	part := vars[bootflow.MenderVarPart]
	valid := (part == strconv.Itoa(partA) || part == strconv.Itoa(partB)) &&
		(vars[bootflow.MenderVarBootcount] == "0" || vars[bootflow.MenderVarBootcount] == "1") &&
		(vars[bootflow.MenderVarUpgrade] == "0" || vars[bootflow.MenderVarUpgrade] == "1")
	if !valid {
		if part != strconv.Itoa(partB) {
			part = strconv.Itoa(partA)
		}
		notes = append(notes, "fallback: mender-grub: the environment is corrupt, booting partition "+part)
	}
	if vars[bootflow.MenderVarUpgrade] == "1" {
		if vars[bootflow.MenderVarBootcount] != "0" {
			if part == strconv.Itoa(partA) {
				part = strconv.Itoa(partB)
			} else {
				part = strconv.Itoa(partA)
			}
			vars[bootflow.MenderVarUpgrade], vars[bootflow.MenderVarBootcount] = "0", "0"
			notes = append(notes, "mender-grub: rolling back to partition "+part)
		} else {
			vars[bootflow.MenderVarBootcount] = "1"
			notes = append(notes, "mender-grub: booting the new update on partition "+part)
		}
		vars[bootflow.MenderVarPart] = part
		// mender_save_env: lock 2, env 2, lock 2, lock 1, env 1, lock 1.
		for _, c := range []int{2, 1} {
			for _, w := range []struct {
				file string
				vars map[string]string
			}{{"lock", map[string]string{bootflow.MenderVarEditing: "1"}}, {"env", vars}, {"lock", map[string]string{bootflow.MenderVarEditing: "0"}}} {
				if err := saveEnv(fsys, l.file(cfg, c, w.file), w.vars); err != nil {
					notes = append(notes, fmt.Sprintf("mender-grub: save_env %s %d failed: %v", w.file, c, err))
				}
			}
		}
	}
	n, _ := strconv.Atoi(part)
	g, ok := partitionGroup(cfg, n)
	if !ok {
		return "", notes, fmt.Errorf("%w: mender-grub: partition %s holds no group", errNoBoot, part)
	}
	return g, notes, nil
}

type menderUBootLoader struct{}

func (menderUBootLoader) install(fsys *rootfs.OS, cfg *config.Config) error {
	part := cfg.BootFlow.Partitions[cfg.GroupNames()[0]]
	v := menderVars(part)
	vars := [][2]string{{"bootlimit", "1"}, {"altbootcmd", "run mender_altbootcmd; run bootcmd"}}
	for i := 0; i < len(v); i += 2 {
		vars = append(vars, [2]string{v[i], v[i+1]})
	}
	return installUBootEnv(fsys, cfg.BootFlow, vars)
}

// boot plays U-Boot with Mender's integration: the boot count (counted and
// saved only while upgrade_available=1) against bootlimit, altbootcmd's
// swap of mender_boot_part, then the boot of mender_boot_part.
func (menderUBootLoader) boot(fsys *rootfs.OS, cfg *config.Config, _ []string) (string, []string, error) {
	bf := cfg.BootFlow
	env, notes := loadUBootEnv(fsys, bf)
	if env.idx < 0 {
		// The compiled-in default environment: partition A, no upgrade.
		env.vars[bootflow.MenderVarPart] = strconv.Itoa(bf.Partitions[cfg.GroupNames()[0]])
		env.vars["bootlimit"] = "1"
	}
	v := env.vars
	if v[bootflow.MenderVarUpgrade] == "1" {
		count, _ := strconv.Atoi(v[bootflow.MenderVarBootcount])
		count++
		v[bootflow.MenderVarBootcount] = strconv.Itoa(count)
		if err := env.saveenv(fsys, bf); err != nil {
			notes = append(notes, "u-boot: saving the boot count failed: "+err.Error())
		}
		limit, err := strconv.Atoi(v["bootlimit"])
		if err == nil && limit > 0 && count > limit {
			// mender_altbootcmd: the other partition, no upgrade.
			cur, _ := strconv.Atoi(v[bootflow.MenderVarPart])
			groups := cfg.GroupNames()
			next := bf.Partitions[groups[0]]
			if cur == next {
				next = bf.Partitions[groups[1]]
			}
			v[bootflow.MenderVarPart], v[bootflow.MenderVarPartHex] = strconv.Itoa(next), strconv.FormatInt(int64(next), 16)
			v[bootflow.MenderVarUpgrade] = "0"
			if err := env.saveenv(fsys, bf); err != nil {
				notes = append(notes, "u-boot: altbootcmd's saveenv failed: "+err.Error())
			}
			notes = append(notes, fmt.Sprintf("u-boot: bootcount %d > bootlimit %d, altbootcmd rolls back to partition %d", count, limit, next))
		}
	}
	n, err := strconv.Atoi(v[bootflow.MenderVarPart])
	g, ok := partitionGroup(cfg, n)
	if err != nil || !ok {
		return "", notes, fmt.Errorf("%w: mender-uboot: mender_boot_part=%q holds no group", errNoBoot, v[bootflow.MenderVarPart])
	}
	return g, notes, nil
}

// ---- RAUC ----

type raucUBootLoader struct{}

func (raucUBootLoader) install(fsys *rootfs.OS, cfg *config.Config) error {
	bf, groups := cfg.BootFlow, cfg.GroupNames()
	vars := [][2]string{{bootflow.RAUCVarOrder, raucOrder(cfg)}}
	for i, g := range groups {
		left := "0"
		if i == 0 {
			left = strconv.Itoa(bootflow.RAUCGoodAttempts)
		}
		vars = append(vars, [2]string{"BOOT_" + bf.Names[g] + "_LEFT", left})
	}
	return installUBootEnv(fsys, bf, vars)
}

func raucOrder(cfg *config.Config) string {
	var names []string
	for _, g := range cfg.GroupNames() {
		names = append(names, cfg.BootFlow.Names[g])
	}
	return strings.Join(names, " ")
}

func raucGroup(cfg *config.Config, name string) (string, bool) {
	for g, n := range cfg.BootFlow.Names {
		if n == name {
			return g, true
		}
	}
	return "", false
}

// boot plays RAUC's example U-Boot script: defaults for missing variables,
// the first slot of BOOT_ORDER with attempts left loses one and boots
// (saveenv); none: every count back to 3, saveenv, reset.
func (raucUBootLoader) boot(fsys *rootfs.OS, cfg *config.Config, _ []string) (string, []string, error) {
	bf := cfg.BootFlow
	env, notes := loadUBootEnv(fsys, bf)
	v := env.vars
	for reset := 0; reset < 2; reset++ {
		if v[bootflow.RAUCVarOrder] == "" {
			v[bootflow.RAUCVarOrder] = raucOrder(cfg)
		}
		for _, g := range cfg.GroupNames() {
			if k := "BOOT_" + bf.Names[g] + "_LEFT"; v[k] == "" {
				v[k] = "3"
			}
		}
		for _, name := range strings.Fields(v[bootflow.RAUCVarOrder]) {
			g, ok := raucGroup(cfg, name)
			k := "BOOT_" + name + "_LEFT"
			left, err := strconv.Atoi(v[k])
			if !ok || err != nil || left <= 0 {
				continue
			}
			v[k] = strconv.Itoa(left - 1)
			if err := env.saveenv(fsys, bf); err != nil {
				notes = append(notes, "u-boot: saveenv failed: "+err.Error())
			}
			return g, append(notes, fmt.Sprintf("rauc-uboot: booting slot %s, %d attempts left", name, left-1)), nil
		}
		notes = append(notes, "fallback: rauc-uboot: no slot with attempts left, resetting every count to 3")
		for _, g := range cfg.GroupNames() {
			v["BOOT_"+bf.Names[g]+"_LEFT"] = "3"
		}
		if err := env.saveenv(fsys, bf); err != nil {
			notes = append(notes, "u-boot: saveenv failed: "+err.Error())
		}
	}
	return "", notes, fmt.Errorf("%w: rauc-uboot: BOOT_ORDER=%q names no slot", errNoBoot, v[bootflow.RAUCVarOrder])
}

type raucGrubLoader struct{}

func (raucGrubLoader) install(fsys *rootfs.OS, cfg *config.Config) error {
	pairs := []string{bootflow.RAUCGrubVarOrder, raucOrder(cfg)}
	for i, g := range cfg.GroupNames() {
		ok := "0"
		if i == 0 {
			ok = "1"
		}
		pairs = append(pairs, cfg.BootFlow.Names[g]+"_OK", ok, cfg.BootFlow.Names[g]+"_TRY", "0")
	}
	return writeBlock(fsys, cfg.BootFlow.GrubEnv, pairs...)
}

// boot plays RAUC's example grub.conf: every slot of ORDER it looks at gets
// TRY=1; the first with OK=1 and TRY=0 boots; when none does, the TRY flags
// of good slots are cleared and GRUB starts its first menu entry (RAUC's
// rescue entry: a fallback). The TRY flags are saved in place.
func (raucGrubLoader) boot(fsys *rootfs.OS, cfg *config.Config, _ []string) (string, []string, error) {
	bf := cfg.BootFlow
	vars := map[string]string{bootflow.RAUCGrubVarOrder: raucOrder(cfg)}
	for _, g := range cfg.GroupNames() {
		vars[bf.Names[g]+"_OK"], vars[bf.Names[g]+"_TRY"] = "0", "0"
	}
	var notes []string
	if env, err := loadGrub(fsys, bf.GrubEnv); err != nil {
		notes = append(notes, "rauc-grub: load_env failed: "+err.Error())
	} else {
		maps.Copy(vars, env.Map())
	}
	chosen := ""
	for _, name := range strings.Fields(vars[bootflow.RAUCGrubVarOrder]) {
		g, ok := raucGroup(cfg, name)
		if !ok {
			continue
		}
		okv, try := vars[name+"_OK"], vars[name+"_TRY"]
		vars[name+"_TRY"] = "1"
		if okv == "1" && try == "0" {
			chosen = g
			break
		}
	}
	if chosen == "" {
		for _, g := range cfg.GroupNames() {
			if n := bf.Names[g]; vars[n+"_OK"] == "1" && vars[n+"_TRY"] == "1" {
				vars[n+"_TRY"] = "0"
			}
		}
	}
	save := map[string]string{}
	for _, g := range cfg.GroupNames() {
		save[bf.Names[g]+"_TRY"] = vars[bf.Names[g]+"_TRY"]
	}
	if err := saveEnv(fsys, bf.GrubEnv, save); err != nil {
		notes = append(notes, "rauc-grub: save_env failed: "+err.Error())
	}
	if chosen == "" {
		return "", append(notes, "fallback: rauc-grub: no slot to boot, GRUB starts its rescue entry"),
			fmt.Errorf("%w: rauc-grub: no slot with OK=1 and TRY=0 in ORDER=%q", errNoBoot, vars[bootflow.RAUCGrubVarOrder])
	}
	return chosen, append(notes, "rauc-grub: booting "+bf.Names[chosen]), nil
}

// ---- Rugix Ctrl's GRUB script ----

type rugixGrubLoader struct{}

func (rugixGrubLoader) file(cfg *config.Config, name string) string {
	return path.Join(cfg.BootFlow.BootDir, bootflow.RugixDir, name)
}

func (l rugixGrubLoader) install(fsys *rootfs.OS, cfg *config.Config) error {
	part := strconv.Itoa(cfg.BootFlow.Partitions[cfg.GroupNames()[0]])
	for _, name := range []string{bootflow.RugixPrimary, bootflow.RugixSecondary} {
		if err := writeBlock(fsys, l.file(cfg, name), bootflow.RugixVarBootpart, part); err != nil {
			return err
		}
		b, err := os.ReadFile(fsys.Path(l.file(cfg, name)))
		if err != nil {
			return err
		}
		sum := sha1.Sum(b)
		line := hex.EncodeToString(sum[:]) + "  /" + bootflow.RugixDir + "/" + name + "\n"
		if err := os.WriteFile(fsys.Path(l.file(cfg, name+".sha1")), []byte(line), 0o644); err != nil {
			return err
		}
	}
	return writeBlock(fsys, l.file(cfg, bootflow.RugixSpare), bootflow.RugixVarBootSpare, "false")
}

// hashsumCheck is GRUB's hashsum --hash sha1 --check FILE: every line
// "<hex>  <path>" must name a file on the partition with that digest.
func (l rugixGrubLoader) hashsumCheck(fsys *rootfs.OS, cfg *config.Config, list string) bool {
	b, err := os.ReadFile(fsys.Path(list))
	if err != nil {
		return false
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	for _, line := range lines {
		want, name, ok := strings.Cut(line, "  ")
		if !ok {
			return false
		}
		data, err := os.ReadFile(fsys.Path(path.Join(cfg.BootFlow.BootDir, name)))
		if err != nil {
			return false
		}
		sum := sha1.Sum(data)
		if !bytes.Equal([]byte(hex.EncodeToString(sum[:])), []byte(want)) {
			return false
		}
	}
	return len(lines) > 0
}

// boot plays Rugix's GRUB script: rugpi_bootpart=2, then the secondary and
// the primary copy, each loaded only when its checksum passes; with
// rugpi_boot_spare=true the other partition boots once (false is saved
// first).
func (l rugixGrubLoader) boot(fsys *rootfs.OS, cfg *config.Config, _ []string) (string, []string, error) {
	part, spare := "2", "false"
	var notes []string
	for _, name := range []string{bootflow.RugixSecondary, bootflow.RugixPrimary} {
		p := l.file(cfg, name)
		if !l.hashsumCheck(fsys, cfg, p+".sha1") {
			notes = append(notes, "rugix-grub: "+name+" is corrupt")
			continue
		}
		if env, err := loadGrub(fsys, p); err == nil {
			if v, ok := env.Get(bootflow.RugixVarBootpart); ok {
				part = v
			}
		}
	}
	if env, err := loadGrub(fsys, l.file(cfg, bootflow.RugixSpare)); err == nil {
		if v, ok := env.Get(bootflow.RugixVarBootSpare); ok {
			spare = v
		}
	}
	if spare == "true" {
		n, _ := strconv.Atoi(part)
		part = strconv.Itoa(5 - n)
		if err := saveEnv(fsys, l.file(cfg, bootflow.RugixSpare), map[string]string{bootflow.RugixVarBootSpare: "false"}); err != nil {
			notes = append(notes, "rugix-grub: save_env failed: "+err.Error())
		}
		notes = append(notes, "rugix-grub: booting the spare partition "+part)
	}
	n, err := strconv.Atoi(part)
	g, ok := partitionGroup(cfg, n)
	if err != nil || !ok {
		return "", notes, fmt.Errorf("%w: rugix-grub: partition %s holds no group", errNoBoot, part)
	}
	return g, notes, nil
}
