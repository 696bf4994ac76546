package bootflow

import (
	"fmt"
	"path"
	"strconv"

	"github.com/tandem-ota/tandem/internal/bootenv/grubenv"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// GRUB flow: three grubenv blocks in <boot-dir>/tandem/ that the script in
// bootloader/grub/ reads (rule table in docs/boot-flows.md):
//
//	primary.grubenv, secondary.grubenv  tandem_default=<group>        written by tandem only
//	trial.grubenv                       tandem_trial=<group>          written by tandem
//	                                    tandem_trial_left=<0..9>      decremented in place by GRUB (save_env)
//
// GRUB cannot rename, so the default lives in two copies written one after
// the other (each new + fsync + rename): whatever a power cut does to the
// copy being written, the other one is whole. The trial block is one file
// because losing it only loses the trial (GRUB then boots the default).
const (
	GrubDir          = "tandem"
	GrubPrimary      = "primary.grubenv"
	GrubSecondary    = "secondary.grubenv"
	GrubTrial        = "trial.grubenv"
	GrubVarDefault   = "tandem_default"
	GrubVarTrial     = "tandem_trial"
	GrubVarTrialLeft = "tandem_trial_left"
)

type grubFlow struct {
	fsys     rootfs.FS
	dir      string
	groups   []string
	attempts int
}

func newGrub(bf config.BootFlow, groups []string, fsys rootfs.FS) *grubFlow {
	return &grubFlow{fsys: fsys, dir: path.Join(bf.BootDir, GrubDir), groups: groups, attempts: bf.Attempts}
}

func (g *grubFlow) Name() string { return config.FlowGrub }

func (g *grubFlow) file(name string) string { return path.Join(g.dir, name) }

func (g *grubFlow) read(name string) (*grubenv.Env, error) {
	b, err := g.fsys.ReadFile(g.file(name))
	if err != nil {
		return nil, err
	}
	return grubenv.Parse(b)
}

func (g *grubFlow) write(name string, vars ...string) error {
	b, err := grubenv.Block(vars...)
	if err != nil {
		return err
	}
	return rootfs.WriteAtomic(g.fsys, g.file(name), b, 0o644)
}

// readDefault reads one copy of the default; it must name a known group.
func (g *grubFlow) readDefault(name string) (string, error) {
	env, err := g.read(name)
	if err != nil {
		return "", stateErr(g.fsys.Path(g.file(name)), err)
	}
	def, _ := env.Get(GrubVarDefault)
	if err := checkGroup(g.groups, def); err != nil {
		return "", stateErr(g.fsys.Path(g.file(name)), err)
	}
	return def, nil
}

// Default follows the script: the primary copy if usable, else the secondary.
func (g *grubFlow) Default() (string, error) {
	def, perr := g.readDefault(GrubPrimary)
	if perr == nil {
		return def, nil
	}
	def, serr := g.readDefault(GrubSecondary)
	if serr == nil {
		return def, nil
	}
	return "", fmt.Errorf("no usable copy of the default: %w (and %w)", perr, serr)
}

func (g *grubFlow) TryNext(group string) error {
	if err := checkGroup(g.groups, group); err != nil {
		return err
	}
	return g.write(GrubTrial, GrubVarTrial, group, GrubVarTrialLeft, strconv.Itoa(g.attempts))
}

func (g *grubFlow) CancelTry() error {
	group, _, err := g.Trial()
	if err == nil && group == "" {
		return nil
	}
	return g.write(GrubTrial, GrubVarTrial, "", GrubVarTrialLeft, "0")
}

func (g *grubFlow) Commit(group string) error {
	if err := checkGroup(g.groups, group); err != nil {
		return err
	}
	for _, name := range []string{GrubPrimary, GrubSecondary} {
		if err := g.write(name, GrubVarDefault, group); err != nil {
			return err
		}
	}
	return g.CancelTry()
}

// Repair rewrites a copy of the default that does not name group, in the
// same order as Commit (primary first).
func (g *grubFlow) Repair(group string) (bool, error) {
	if err := checkGroup(g.groups, group); err != nil {
		return false, err
	}
	wrote := false
	for _, name := range []string{GrubPrimary, GrubSecondary} {
		if def, err := g.readDefault(name); err == nil && def == group {
			continue
		}
		if err := g.write(name, GrubVarDefault, group); err != nil {
			return wrote, err
		}
		wrote = true
	}
	return wrote, nil
}

// Trial reads the trial block as the script does: a missing or unusable
// block, an unknown group or a count outside 1..9 mean no trial.
func (g *grubFlow) Trial() (string, int, error) {
	b, err := g.fsys.ReadFile(g.file(GrubTrial))
	if rootfs.IsNotExist(err) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, stateErr(g.fsys.Path(g.file(GrubTrial)), err)
	}
	env, err := grubenv.Parse(b)
	if err != nil {
		return "", 0, nil
	}
	group, _ := env.Get(GrubVarTrial)
	leftStr, _ := env.Get(GrubVarTrialLeft)
	left, err := strconv.Atoi(leftStr)
	if checkGroup(g.groups, group) != nil || err != nil || left < 1 || left > config.MaxAttempts {
		return "", 0, nil
	}
	return group, left, nil
}

func (g *grubFlow) MarkBad(group string) error {
	trial, _, err := g.Trial()
	if err != nil || trial != group {
		return err
	}
	return g.CancelTry()
}
