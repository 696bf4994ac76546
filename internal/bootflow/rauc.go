package bootflow

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootenv/grubenv"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// RAUC flows (rauc-uboot, rauc-grub): the variables RAUC's boot loader
// interface documents, so that a device that ran RAUC keeps its boot script
// (rule table in docs/boot-flows.md). Each group has a RAUC bootname
// ([boot-flow.names], default the group name in upper case).
//
//	rauc-uboot, U-Boot environment:
//	  BOOT_ORDER          bootnames in the order the script tries them
//	  BOOT_<name>_LEFT    attempts left; the script takes one before it boots the group
//	rauc-grub, one grubenv file (RAUC's grubenv, default /boot/grub/grubenv):
//	  ORDER               bootnames in the order the script tries them
//	  <name>_OK           1: the group may boot
//	  <name>_TRY          1: the group was tried since it was last marked good; the script
//	                      sets it before it boots the group and skips a group that has it
//
// The script boots the first group in the order that is live (LEFT > 0;
// OK = 1 and TRY = 0). RAUC keeps every good slot live and re-marks the
// booted one good at every boot (rauc-mark-good.service); tandem reads and
// writes the same variables with its own rules, which the script cannot
// tell from RAUC's:
//
//   - committed: the default first in the order, live; every other group dead
//     (LEFT=0; OK=0) — a spare group is never booted while tandem writes it,
//     as RAUC marks a slot bad before it installs to it;
//   - trial: the tried group first and live, the default second and live
//     (RAUC's "mark active": the group becomes primary);
//   - the default: the first live group that is not a pending trial; a
//     trial is pending while its group leads the order, is live and has not
//     been tried (rauc-grub: TRY=0; rauc-uboot: attempts left) with another
//     live group behind it;
//   - the script spends an attempt of the committed group at every boot, so
//     tandem marks it good again after each boot (Refresh, called by
//     `tandem health` when nothing is on trial), as RAUC's mark-good does.
//
// rauc-uboot counts: the trial gets `attempts` boots; the committed group
// is marked good with RAUCGoodAttempts (RAUC's boot-attempts default).
// rauc-grub gives a trial one boot (RAUC's GRUB example tries each slot once).
const (
	RAUCVarOrder     = "BOOT_ORDER"
	RAUCGrubVarOrder = "ORDER"
	// RAUCGoodAttempts is what marking a group good writes to its
	// BOOT_<name>_LEFT (RAUC's boot-attempts default, the value RAUC's
	// example script resets to).
	RAUCGoodAttempts = 3
)

// Refresher is implemented by flows whose boot loader spends an attempt of
// the committed group at every boot (RAUC's integrations): unless the group
// is marked good again after a boot, the boot loader eventually falls back.
// Refresh marks group (the default) good, keeps a pending trial, marks every
// other group bad, and reports whether it wrote anything.
type Refresher interface {
	Refresh(group string) (bool, error)
}

// raucVars is one back end's view of RAUC's variables.
type raucVars interface {
	// orderVar is the name of the order variable.
	orderVar() string
	// live reports whether the script may boot the group; untried whether
	// it has not spent an attempt since it was marked (always true for
	// U-Boot, where live already means attempts are left).
	live(env map[string]string, name string) bool
	untried(env map[string]string, name string) bool
	// left is the attempts a live group has (1 for GRUB).
	left(env map[string]string, name string) int
	// mark returns the assignments that make name live with n attempts
	// (n > 0) or dead (n == 0).
	mark(name string, n int) [][2]string
}

type raucFlow struct {
	name     string
	store    ubootStore
	vars     raucVars
	groups   []string
	names    map[string]string // group → bootname
	attempts int
}

func newRAUC(bf config.BootFlow, groups []string, fsys rootfs.FS) *raucFlow {
	f := &raucFlow{name: bf.Type, groups: groups, names: bf.Names, attempts: bf.Attempts}
	if bf.Type == config.FlowRAUCGrub {
		f.store, f.vars = &grubenvStore{fsys: fsys, file: bf.GrubEnv}, raucGrubVars{}
	} else {
		f.store, f.vars = envStore(bf, fsys), raucUBootVars{}
	}
	return f
}

func (r *raucFlow) Name() string { return r.name }

// raucState is RAUC's environment read with tandem's rules.
type raucState struct {
	env   map[string]string
	order []string // groups, in boot order
	def   string
	trial string
	left  int
}

func (r *raucFlow) state() (raucState, error) {
	env, err := r.store.load()
	if err != nil {
		return raucState{}, err
	}
	st := raucState{env: env}
	seen := map[string]bool{}
	raw, ok := env[r.vars.orderVar()]
	if !ok {
		// The scripts default the order to every slot: A B.
		st.order = slices.Clone(r.groups)
	}
	for _, n := range strings.Fields(raw) {
		g, ok := groupWith(r.names, n)
		if !ok {
			return st, fmt.Errorf("%s environment: %w: %s names %q, which is no group's bootname", r.name, ErrBootState, r.vars.orderVar(), n)
		}
		if !seen[g] {
			st.order, seen[g] = append(st.order, g), true
		}
	}
	var live []string
	for _, g := range st.order {
		if r.vars.live(env, r.names[g]) {
			live = append(live, g)
		}
	}
	switch {
	case len(live) == 0:
		return st, fmt.Errorf("%s environment: %w: no group in %s=%q may boot", r.name, ErrBootState, r.vars.orderVar(), raw)
	case len(live) >= 2 && r.vars.untried(env, r.names[live[0]]):
		st.trial, st.left, st.def = live[0], r.vars.left(env, r.names[live[0]]), live[1]
	case len(live) >= 2:
		// The first was tried and not marked: the script passes it by.
		st.def = live[1]
	default:
		st.def = live[0]
	}
	return st, nil
}

func (r *raucFlow) Default() (string, error) {
	st, err := r.state()
	return st.def, err
}

func (r *raucFlow) Trial() (string, int, error) {
	st, err := r.state()
	if err != nil {
		return "", 0, err
	}
	return st.trial, st.left, nil
}

// orderWith returns the bootnames with first, then second, then the rest
// in their order.
func (r *raucFlow) orderWith(st raucState, first ...string) string {
	order := slices.Clone(first)
	for _, g := range append(st.order, slices.Sorted(maps.Keys(r.names))...) {
		if !slices.Contains(order, g) {
			order = append(order, g)
		}
	}
	names := make([]string, len(order))
	for i, g := range order {
		names[i] = r.names[g]
	}
	return strings.Join(names, " ")
}

// write sets the order and marks each group: live with the attempts in
// marks, dead when it is not in marks.
func (r *raucFlow) write(st raucState, marks map[string]int, first ...string) error {
	vars := [][2]string{{r.vars.orderVar(), r.orderWith(st, first...)}}
	for _, g := range r.groups {
		vars = append(vars, r.vars.mark(r.names[g], marks[g])...)
	}
	return r.store.save(vars)
}

// TryNext makes group primary with `attempts` tries and keeps the default
// live behind it; every other group is dead.
func (r *raucFlow) TryNext(group string) error {
	if err := checkGroup(r.groups, group); err != nil {
		return err
	}
	st, err := r.state()
	if err != nil {
		return err
	}
	if group == st.def {
		return fmt.Errorf("group %s is the default; there is nothing to try", group)
	}
	return r.write(st, map[string]int{group: r.attempts, st.def: RAUCGoodAttempts}, group, st.def)
}

// CancelTry marks every group but the default dead.
func (r *raucFlow) CancelTry() error {
	st, err := r.state()
	if err != nil {
		return err
	}
	if !r.othersLive(st, st.def) {
		return nil
	}
	return r.write(st, map[string]int{st.def: max(r.vars.left(st.env, r.names[st.def]), 1)}, st.def)
}

func (r *raucFlow) othersLive(st raucState, keep ...string) bool {
	for _, g := range r.groups {
		if !slices.Contains(keep, g) && r.vars.live(st.env, r.names[g]) {
			return true
		}
	}
	return false
}

// Commit makes group primary and good, every other group dead.
func (r *raucFlow) Commit(group string) error {
	if err := checkGroup(r.groups, group); err != nil {
		return err
	}
	st, err := r.state()
	if err != nil {
		return err
	}
	return r.write(st, map[string]int{group: RAUCGoodAttempts}, group)
}

// MarkBad ends group's pending trial.
func (r *raucFlow) MarkBad(group string) error {
	st, err := r.state()
	if err != nil || st.trial != group {
		return err
	}
	return r.CancelTry()
}

// Refresh marks group good again (RAUC's mark-good) when the boot loader
// spent one of its attempts, and marks dead every other group that is not a
// pending trial (a trial that was tried and not committed, for one).
func (r *raucFlow) Refresh(group string) (bool, error) {
	if err := checkGroup(r.groups, group); err != nil {
		return false, err
	}
	st, err := r.state()
	if err != nil {
		return false, err
	}
	name := r.names[group]
	good := r.vars.live(st.env, name) && r.vars.untried(st.env, name) && r.vars.left(st.env, name) >= RAUCGoodAttempts
	keep := []string{group}
	marks := map[string]int{group: RAUCGoodAttempts}
	first := []string{group}
	if st.trial != "" && st.trial != group {
		keep = append(keep, st.trial)
		marks[st.trial] = st.left
		first = []string{st.trial, group}
	}
	if good && !r.othersLive(st, keep...) {
		return false, nil
	}
	return true, r.write(st, marks, first...)
}

// raucUBootVars: BOOT_ORDER and BOOT_<name>_LEFT.
type raucUBootVars struct{}

func (raucUBootVars) orderVar() string { return RAUCVarOrder }

func raucLeftVar(name string) string { return "BOOT_" + name + "_LEFT" }

func (v raucUBootVars) left(env map[string]string, name string) int {
	s, ok := env[raucLeftVar(name)]
	if !ok {
		return RAUCGoodAttempts // the script's default for a missing count
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0 // U-Boot's test -gt reads it as 0
	}
	return int(n)
}

func (v raucUBootVars) live(env map[string]string, name string) bool { return v.left(env, name) > 0 }

func (raucUBootVars) untried(map[string]string, string) bool { return true }

func (raucUBootVars) mark(name string, n int) [][2]string {
	return [][2]string{{raucLeftVar(name), strconv.Itoa(n)}}
}

// raucGrubVars: ORDER, <name>_OK and <name>_TRY.
type raucGrubVars struct{}

func (raucGrubVars) orderVar() string { return RAUCGrubVarOrder }

func (raucGrubVars) live(env map[string]string, name string) bool { return env[name+"_OK"] == "1" }

func (raucGrubVars) untried(env map[string]string, name string) bool {
	return env[name+"_TRY"] == "0" || env[name+"_TRY"] == ""
}

func (v raucGrubVars) left(env map[string]string, name string) int {
	if v.live(env, name) && v.untried(env, name) {
		return RAUCGoodAttempts // one boot in GRUB; "good" for Refresh
	}
	return 0
}

func (raucGrubVars) mark(name string, n int) [][2]string {
	ok := "0"
	if n > 0 {
		ok = "1"
	}
	return [][2]string{{name + "_OK", ok}, {name + "_TRY", "0"}}
}

// grubenvStore is one grubenv file, replaced atomically (new, fsync,
// rename) with every variable it holds.
type grubenvStore struct {
	fsys rootfs.FS
	file string
}

func (s *grubenvStore) read() (*grubenv.Env, error) {
	b, err := s.fsys.ReadFile(s.file)
	if err != nil {
		return nil, stateErr(s.fsys.Path(s.file), err)
	}
	env, err := grubenv.Parse(b)
	if err != nil {
		return nil, stateErr(s.fsys.Path(s.file), err)
	}
	return env, nil
}

func (s *grubenvStore) load() (map[string]string, error) {
	env, err := s.read()
	if err != nil {
		return nil, err
	}
	return env.Map(), nil
}

func (s *grubenvStore) save(vars [][2]string) error {
	env, err := s.read()
	if err != nil {
		return err
	}
	for _, kv := range vars {
		if err := env.Set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	b, err := env.Encode(grubenv.BlockSize)
	if err != nil {
		return err
	}
	return rootfs.WriteAtomic(s.fsys, s.file, b, 0o644)
}
