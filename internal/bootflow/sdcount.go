package bootflow

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootenv/bls"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// systemd-boot with boot counting (boot-counting = true; rule table in
// docs/boot-flows.md). Each group owns a type #1 entry in
// <boot-dir>/loader/entries that tandem writes from the group's boot-file
// slots (kernel or uki, initrd, cmdline):
//
//	tandem-<gen>-<group>.conf            good: a committed group
//	tandem-<gen>-<group>+<left>[-<done>].conf   on trial; systemd-boot counts it down
//	tandem-<gen>-<group>+0-<done>.conf   bad: no tries left, sorted last
//
// systemd-boot starts the first entry in its menu order that matches the
// default pattern (LoaderEntryDefault, else loader.conf's default, which
// must be SDBootPattern): entries without tries left sort last, the others
// by id, newest first, so the highest generation wins. try-next writes the
// group's entry with a new generation and `attempts` tries; commit writes
// its good name (what systemd-bless-boot's rename makes) and removes the
// counted one; rollback is systemd-boot's own count reaching 0. Every write
// is on the FAT ESP: a new name is written whole (new + fsync + rename +
// fsync + fsync dir) before an old one is removed, never renamed in place,
// because a vfat rename to a new name leaves that name empty until the
// inode is written back.
const (
	SDBootPrefix  = "tandem-"
	SDBootPattern = "tandem-*"
	// sdMaxEntries bounds the entry files tandem reads.
	sdMaxEntries = 512
	// sdMaxCmdline bounds a group's cmdline file.
	sdMaxCmdline = 4096
)

type sdCountFlow struct {
	sd       *systemdBootFlow
	fsys     rootfs.FS
	dir      string // <boot-dir>/loader/entries
	attempts int
	groups   []string
	files    map[string]map[string]string // group → boot-file alias → device path
	options  map[string]string
}

func newSDCount(cfg *config.Config, fsys rootfs.FS) *sdCountFlow {
	bf := cfg.BootFlow
	f := &sdCountFlow{sd: newSystemdBoot(bf, cfg.GroupNames(), fsys), fsys: fsys, dir: path.Join(bf.BootDir, "loader", "entries"),
		attempts: bf.Attempts, groups: cfg.GroupNames(), files: map[string]map[string]string{}, options: bf.Options}
	for _, g := range f.groups {
		f.files[g] = map[string]string{}
		for _, alias := range []string{config.AliasKernel, config.AliasUKI, config.AliasInitrd, config.AliasCmdline} {
			if name, ok := cfg.Groups[g].Slots[alias]; ok {
				f.files[g][alias] = cfg.Slots[name].Path
			}
		}
	}
	return f
}

func (f *sdCountFlow) Name() string { return config.FlowSystemdBoot }

// sdEntry is an entry file as tandem reads it.
type sdEntry struct {
	bls.Entry
	group string // the group whose entry it is, "" for others
	gen   int    // tandem's generation, 0 for entries tandem did not name
	raw   []byte
	// usable: systemd-boot shows it (its program is named and exists).
	usable bool
}

func (e *sdEntry) own() bool { return e.gen > 0 }

func sdStem(gen int, group string) string { return SDBootPrefix + strconv.Itoa(gen) + "-" + group }

// ownName parses tandem's stem "tandem-<gen>-<group>".
func (f *sdCountFlow) ownName(stem string) (int, string, bool) {
	rest, ok := strings.CutPrefix(stem, SDBootPrefix)
	if !ok {
		return 0, "", false
	}
	num, g, ok := strings.Cut(rest, "-")
	gen, err := strconv.Atoi(num)
	if !ok || err != nil || gen < 1 || strconv.Itoa(gen) != num || !slices.Contains(f.groups, g) {
		return 0, "", false
	}
	return gen, g, true
}

// scan reads the entry files in systemd-boot's menu order; the ones it
// would not show (no program, or a missing one) are marked not usable.
func (f *sdCountFlow) scan() ([]*sdEntry, error) {
	des, err := os.ReadDir(f.fsys.Path(f.dir))
	if err != nil {
		return nil, stateErr(f.fsys.Path(f.dir), err)
	}
	if len(des) > sdMaxEntries {
		return nil, stateErr(f.fsys.Path(f.dir), fmt.Errorf("more than %d files", sdMaxEntries))
	}
	var ents []*sdEntry
	for _, de := range des {
		n, ok := bls.ParseName(de.Name())
		if !ok || de.IsDir() || strings.HasPrefix(n.File, ".") || strings.HasPrefix(n.File, "auto-") {
			continue
		}
		p := path.Join(f.dir, n.File)
		if fi, err := f.fsys.Stat(p); err != nil || fi.Size() > bls.MaxFile {
			return nil, stateErr(f.fsys.Path(p), fmt.Errorf("unreadable or larger than %d bytes", bls.MaxFile))
		}
		raw, err := f.fsys.ReadFile(p)
		if err != nil {
			return nil, stateErr(f.fsys.Path(p), err)
		}
		e, err := bls.ParseEntry(n, raw)
		if err != nil {
			return nil, stateErr(f.fsys.Path(p), err)
		}
		// systemd-boot skips an entry whose program is missing (an empty
		// file, as a cut vfat rename leaves, has none).
		se := &sdEntry{Entry: e, raw: raw, usable: e.Program() != ""}
		if _, err := f.fsys.Stat(path.Join(f.sd.bootDir, strings.ReplaceAll(e.Program(), `\`, "/"))); err != nil {
			se.usable = false
		}
		if gen, g, ok := f.ownName(n.Stem); ok {
			se.gen, se.group = gen, g
		} else if g, ok := groupWith(f.sd.entries, n.File); ok && !n.Counted() {
			se.group = g // an entry of the one-shot mode (docs/boot-flows.md, migrating)
		}
		ents = append(ents, se)
	}
	slices.SortStableFunc(ents, func(a, b *sdEntry) int { return bls.Compare(a.Entry, b.Entry) })
	return ents, nil
}

// patterns returns the default patterns systemd-boot tries in order: the
// one-shot variable (with oneShot), LoaderEntryDefault, loader.conf's default.
func (f *sdCountFlow) patterns(oneShot bool) ([]string, error) {
	var pats []string
	names := []string{EFIVarDefault}
	if oneShot {
		names = []string{EFIVarOneShot, EFIVarDefault}
	}
	for _, name := range names {
		v, err := f.sd.readVar(name)
		if err != nil && !errors.Is(err, ErrBootState) {
			return nil, err
		}
		pats = append(pats, strings.ToLower(v)) // systemd-boot ignores a variable it cannot read
	}
	conf := path.Join(f.sd.bootDir, "loader", "loader.conf")
	b, err := f.fsys.ReadFile(conf)
	if err != nil && !rootfs.IsNotExist(err) {
		return nil, stateErr(f.fsys.Path(conf), err)
	}
	def, err := bls.LoaderDefault(b)
	if err != nil {
		return nil, stateErr(f.fsys.Path(conf), err)
	}
	if def == "@saved" || slices.Contains(pats, "@saved") {
		return nil, stateErr(f.fsys.Path(conf), fmt.Errorf("default @saved is not supported with boot-counting; use default %s", SDBootPattern))
	}
	return append(pats, def), nil
}

// choose is systemd-boot's choice among ents: the first entry matching the
// first pattern that matches any, else the first entry. It returns the
// index of the pattern that chose (-1: none did).
func choose(ents []*sdEntry, pats []string) (*sdEntry, int) {
	ents = slices.DeleteFunc(slices.Clone(ents), func(e *sdEntry) bool { return !e.usable })
	for i, p := range pats {
		if p == "" {
			continue
		}
		for _, e := range ents {
			if bls.Match(p, e.ID()) {
				return e, i
			}
		}
	}
	if len(ents) == 0 {
		return nil, -1
	}
	return ents[0], -1
}

// def is the entry systemd-boot starts when no trial applies: its choice
// among the entries that are not counting down.
func (f *sdCountFlow) def(ents []*sdEntry) (*sdEntry, error) {
	pats, err := f.patterns(false)
	if err != nil {
		return nil, err
	}
	e, _ := choose(slices.DeleteFunc(slices.Clone(ents), func(e *sdEntry) bool { return e.Left > 0 }), pats)
	switch {
	case e == nil:
		return nil, stateErr(f.fsys.Path(f.dir), errors.New("no entry that systemd-boot would start by default"))
	case e.Left == 0:
		return nil, stateErr(f.fsys.Path(path.Join(f.dir, e.File)), errors.New("the default entry has no tries left"))
	case e.group == "":
		return nil, stateErr(f.fsys.Path(path.Join(f.dir, e.File)),
			fmt.Errorf("the default entry is no group's entry; set default %s in loader/loader.conf", SDBootPattern))
	}
	return e, nil
}

// Default is the group of the entry systemd-boot starts when no trial applies.
func (f *sdCountFlow) Default() (string, error) {
	ents, err := f.scan()
	if err != nil {
		return "", err
	}
	e, err := f.def(ents)
	if err != nil {
		return "", err
	}
	return e.group, nil
}

// Trial reports the group systemd-boot starts next when that is a counted
// entry with tries left (or a one-shot entry of another group).
func (f *sdCountFlow) Trial() (string, int, error) {
	ents, err := f.scan()
	if err != nil {
		return "", 0, err
	}
	pats, err := f.patterns(true)
	if err != nil {
		return "", 0, err
	}
	e, by := choose(ents, pats)
	if e == nil || e.group == "" {
		return "", 0, nil
	}
	if e.Left > 0 {
		return e.group, e.Left, nil
	}
	if by == 0 { // LoaderEntryOneShot
		if d, err := f.def(ents); err == nil && d.group != e.group {
			return e.group, 1, nil
		}
	}
	return "", 0, nil
}

// entryText is the entry tandem writes for group g from its boot files.
func (f *sdCountFlow) entryText(g string) ([]byte, error) {
	files := f.files[g]
	esp := func(alias string) (string, error) {
		p := files[alias]
		if _, err := f.fsys.Stat(p); err != nil {
			return "", fmt.Errorf("the %s of group %s: %w", alias, g, err)
		}
		return "/" + strings.TrimPrefix(strings.TrimPrefix(p, f.sd.bootDir), "/"), nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "title tandem %s\n", g)
	prog, key := config.AliasKernel, "linux"
	if _, ok := files[config.AliasUKI]; ok {
		prog, key = config.AliasUKI, "efi"
	}
	p, err := esp(prog)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&b, "%s %s\n", key, p)
	if _, ok := files[config.AliasInitrd]; ok {
		p, err := esp(config.AliasInitrd)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "initrd %s\n", p)
	}
	opts := []string{f.options[g]}
	if p, ok := files[config.AliasCmdline]; ok {
		c, err := f.cmdline(g, p)
		if err != nil {
			return nil, err
		}
		opts = append(opts, c)
	}
	opts = append(opts, "tandem.group="+g)
	fmt.Fprintf(&b, "options %s\n", strings.Join(strings.Fields(strings.Join(opts, " ")), " "))
	return []byte(b.String()), nil
}

// cmdline reads group g's command line file: text of at most sdMaxCmdline
// bytes; line ends become blanks.
func (f *sdCountFlow) cmdline(g, p string) (string, error) {
	if fi, err := f.fsys.Stat(p); err != nil || fi.Size() > sdMaxCmdline {
		return "", fmt.Errorf("the cmdline of group %s: %s: missing or larger than %d bytes", g, f.fsys.Path(p), sdMaxCmdline)
	}
	b, err := f.fsys.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("the cmdline of group %s: %w", g, err)
	}
	s := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, string(b))
	if why := badCmdline(s); why != "" {
		return "", fmt.Errorf("the cmdline of group %s: %s", g, why)
	}
	return s, nil
}

func badCmdline(s string) string {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return fmt.Sprintf("%q holds a control character or is not UTF-8", s)
		}
	}
	return ""
}

func (f *sdCountFlow) path(file string) string { return path.Join(f.dir, file) }

// remove removes entry files (and the leftovers of interrupted writes) and
// makes the removals durable.
func (f *sdCountFlow) remove(files []string) error {
	for _, file := range files {
		if err := f.fsys.Remove(f.path(file)); err != nil && !rootfs.IsNotExist(err) {
			return fmt.Errorf("remove %s: %w", f.fsys.Path(f.path(file)), err)
		}
	}
	if len(files) == 0 {
		return nil
	}
	if err := f.fsys.SyncDir(f.dir); err != nil {
		return fmt.Errorf("sync %s: %w", f.fsys.Path(f.dir), err)
	}
	return nil
}

// leftovers lists tandem's temporary entry files that a cut write left.
func (f *sdCountFlow) leftovers() []string {
	des, _ := os.ReadDir(f.fsys.Path(f.dir))
	var files []string
	for _, de := range des {
		if n := de.Name(); strings.HasPrefix(n, SDBootPrefix) && strings.HasSuffix(n, bls.Ext+".new") {
			files = append(files, n)
		}
	}
	return files
}

// names returns the file names of the entries for which keep is true.
func names(ents []*sdEntry, keep func(*sdEntry) bool) []string {
	var files []string
	for _, e := range ents {
		if keep(e) {
			files = append(files, e.File)
		}
	}
	return files
}

func maxGen(ents []*sdEntry, keep func(*sdEntry) bool) int {
	n := 0
	for _, e := range ents {
		if keep(e) {
			n = max(n, e.gen)
		}
	}
	return n
}

// TryNext writes group's entry with a new generation, sorted above every
// other, and `attempts` tries; first it removes the group's older entries
// and any other trial.
func (f *sdCountFlow) TryNext(group string) error {
	if err := checkGroup(f.groups, group); err != nil {
		return err
	}
	text, err := f.entryText(group)
	if err != nil {
		return err
	}
	ents, err := f.scan()
	if err != nil {
		return err
	}
	if d, err := f.def(ents); err == nil && d.group == group {
		return fmt.Errorf("group %s is the default; it cannot be tried", group)
	}
	old := names(ents, func(e *sdEntry) bool { return e.group == group || e.own() && e.Left > 0 })
	if err := f.remove(append(old, f.leftovers()...)); err != nil {
		return err
	}
	name := bls.CountedName(sdStem(maxGen(ents, func(*sdEntry) bool { return true })+1, group), f.attempts, -1)
	return rootfs.WriteAtomic(f.fsys, f.path(name), text, 0o644)
}

// CancelTry removes every entry that counts down (and a one-shot variable).
func (f *sdCountFlow) CancelTry() error {
	ents, err := f.scan()
	if err != nil {
		return err
	}
	if err := f.remove(names(ents, func(e *sdEntry) bool { return e.own() && e.Left > 0 })); err != nil {
		return err
	}
	return f.sd.deleteVar(EFIVarOneShot)
}

// Commit writes group's good entry (the name systemd-bless-boot gives it),
// with a generation above every other group's, then removes its other
// entries; a LoaderEntryDefault that still chooses another entry (the
// one-shot mode's) is set to SDBootPattern.
func (f *sdCountFlow) Commit(group string) error {
	if err := checkGroup(f.groups, group); err != nil {
		return err
	}
	ents, err := f.scan()
	if err != nil {
		return err
	}
	var src *sdEntry // the group's newest own entry: the one that booted
	for _, e := range ents {
		if e.group == group && e.own() && e.usable && (src == nil || e.gen > src.gen) {
			src = e
		}
	}
	others := maxGen(ents, func(e *sdEntry) bool { return e.group != group && e.Left != 0 })
	var good string
	switch {
	case src != nil && src.gen > others:
		good = sdStem(src.gen, group) + bls.Ext
	default:
		good = sdStem(maxGen(ents, func(*sdEntry) bool { return true })+1, group) + bls.Ext
	}
	if !slices.ContainsFunc(ents, func(e *sdEntry) bool { return e.File == good && e.usable }) {
		text := []byte(nil)
		if src != nil {
			text = src.raw
		} else if text, err = f.entryText(group); err != nil {
			return err
		}
		if err := rootfs.WriteAtomic(f.fsys, f.path(good), text, 0o644); err != nil {
			return err
		}
	}
	if err := f.remove(names(ents, func(e *sdEntry) bool {
		return e.group == group && e.File != good || e.own() && e.Left > 0 && e.group != group
	})); err != nil {
		return err
	}
	if d, err := f.Default(); err != nil || d != group {
		if err := f.sd.writeVar(EFIVarDefault, SDBootPattern); err != nil {
			return err
		}
		if d, err := f.Default(); err != nil || d != group {
			return fmt.Errorf("commit %s: systemd-boot would still start %q by default (%v)", group, d, err)
		}
	}
	return f.sd.deleteVar(EFIVarOneShot)
}

// Repair removes the counted entries of the default group that a cut
// commit left beside its good entry.
func (f *sdCountFlow) Repair(group string) (bool, error) {
	ents, err := f.scan()
	if err != nil {
		return false, err
	}
	d, err := f.def(ents)
	if err != nil || d.group != group {
		return false, err
	}
	stale := names(ents, func(e *sdEntry) bool { return e.group == group && e.own() && e.Counted() })
	return len(stale) > 0, f.remove(stale)
}

// MarkBad gives group's trial entry no tries left (systemd-bless-boot bad):
// the bad name is written, then the counted one removed.
func (f *sdCountFlow) MarkBad(group string) error {
	if err := checkGroup(f.groups, group); err != nil {
		return err
	}
	ents, err := f.scan()
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.group != group || !e.own() || e.Left <= 0 {
			continue
		}
		if err := rootfs.WriteAtomic(f.fsys, f.path(e.Bad()), e.raw, 0o644); err != nil {
			return err
		}
		if err := f.remove([]string{e.File}); err != nil {
			return err
		}
	}
	if g, _, err := f.Trial(); err == nil && g == group {
		return f.sd.deleteVar(EFIVarOneShot)
	}
	return nil
}

// Retire removes every entry of group before its boot files are written,
// so that nothing starts a group that is being written.
func (f *sdCountFlow) Retire(group string) error {
	ents, err := f.scan()
	if err != nil {
		return err
	}
	if d, err := f.def(ents); err == nil && d.group == group {
		return fmt.Errorf("group %s is the default; its entry stays", group)
	}
	return f.remove(append(names(ents, func(e *sdEntry) bool { return e.group == group }), f.leftovers()...))
}
