package sim

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootenv/bls"
	"github.com/tandem-ota/tandem/internal/bootenv/efivar"
	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// ---- systemd-boot: EFI variables, loader.conf and type #1 entries ----

// systemdBootLoader plays systemd-boot (the Boot Loader Specification and
// systemd-boot's own rules, docs/boot-flows.md): it reads the entries in
// loader/entries (an entry needs a linux or efi program that exists), sorts
// them in its menu order (entries without tries left last; then by id,
// newest first), chooses the first entry matching LoaderEntryOneShot (which
// it deletes), else LoaderEntryDefault, else loader.conf's default, else the
// first entry, counts a counted entry down by renaming its file, and boots
// the group named by tandem.group= on the entry's options line.
type systemdBootLoader struct{}

func (systemdBootLoader) install(fsys *rootfs.OS, cfg *config.Config) error {
	bf, groups := cfg.BootFlow, cfg.GroupNames()
	if err := fsys.MkdirAll(bf.EFIVarsDir, 0o755); err != nil {
		return err
	}
	entries := path.Join(bf.BootDir, "loader", "entries")
	if err := fsys.MkdirAll(entries, 0o755); err != nil {
		return err
	}
	def := bf.Entries[groups[0]]
	if bf.BootCounting {
		def = bootflow.SDBootPattern
	}
	conf := fmt.Sprintf("default %s\ntimeout 0\n", def)
	if err := os.WriteFile(fsys.Path(path.Join(bf.BootDir, "loader", "loader.conf")), []byte(conf), 0o644); err != nil {
		return err
	}
	if !bf.BootCounting {
		for _, g := range groups {
			e := fmt.Sprintf("title tandem group %s\nlinux /%s/vmlinuz\noptions root=PARTLABEL=system-%s tandem.group=%s\n", g, g, g, g)
			if err := os.WriteFile(fsys.Path(path.Join(entries, bf.Entries[g])), []byte(e), 0o644); err != nil {
				return err
			}
			if err := writeBootFile(fsys, path.Join(bf.BootDir, g, "vmlinuz"), "sim kernel of group "+g+"\n"); err != nil {
				return err
			}
		}
		return nil
	}
	// boot-counting: every group's boot files; only the first group has an
	// entry, good, of generation 1.
	for _, g := range groups {
		slots := cfg.Groups[g].Slots
		for _, alias := range []string{config.AliasKernel, config.AliasUKI, config.AliasInitrd, config.AliasCmdline} {
			content := "sim " + alias + " of group " + g + " (factory)\n"
			if alias == config.AliasCmdline {
				content = "quiet\n"
			}
			if name, ok := slots[alias]; ok {
				if err := writeBootFile(fsys, cfg.Slots[name].Path, content); err != nil {
					return err
				}
			}
		}
	}
	g := groups[0]
	esp := func(alias string) string {
		return strings.TrimPrefix(cfg.Slots[cfg.Groups[g].Slots[alias]].Path, bf.BootDir)
	}
	e := fmt.Sprintf("title tandem %s\nlinux %s\ninitrd %s\noptions %s quiet tandem.group=%s\n", g, esp(config.AliasKernel), esp(config.AliasInitrd), bf.Options[g], g)
	return os.WriteFile(fsys.Path(path.Join(entries, "tandem-1-"+g+".conf")), []byte(e), 0o644)
}

func writeBootFile(fsys *rootfs.OS, p, content string) error {
	if err := fsys.MkdirAll(path.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(fsys.Path(p), []byte(content), 0o644)
}

func (systemdBootLoader) boot(fsys *rootfs.OS, cfg *config.Config, _ []string) (string, []string, error) {
	bf := cfg.BootFlow
	varFile := func(name string) string {
		return fsys.Path(path.Join(bf.EFIVarsDir, efivar.FileName(name, efivar.VendorLoader)))
	}
	var notes []string
	// A variable that cannot be read counts as unset.
	readVar := func(name string) string {
		b, err := os.ReadFile(varFile(name))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				notes = append(notes, fmt.Sprintf("systemd-boot: %s unusable: %v", name, err))
			}
			return ""
		}
		_, v, err := efivar.Decode(b)
		if err == nil {
			var s string
			if s, err = efivar.DecodeString(v); err == nil {
				return strings.ToLower(s)
			}
		}
		notes = append(notes, fmt.Sprintf("systemd-boot: %s unusable: %v", name, err))
		return ""
	}
	oneShot := readVar(bootflow.EFIVarOneShot)
	_ = os.Remove(varFile(bootflow.EFIVarOneShot)) // deleted as soon as it is read
	defVar := readVar(bootflow.EFIVarDefault)
	confDef := ""
	if b, err := os.ReadFile(fsys.Path(path.Join(bf.BootDir, "loader", "loader.conf"))); err == nil {
		confDef, _ = bls.LoaderDefault(b)
	}
	dir := path.Join(bf.BootDir, "loader", "entries")
	des, err := os.ReadDir(fsys.Path(dir))
	if err != nil {
		return "", notes, fmt.Errorf("%w: systemd-boot: %v", errNoBoot, err)
	}
	var ents []bls.Entry
	for _, de := range des {
		n, ok := bls.ParseName(de.Name())
		if !ok || de.IsDir() || strings.HasPrefix(n.File, ".") || strings.HasPrefix(n.File, "auto-") {
			continue
		}
		b, err := os.ReadFile(fsys.Path(path.Join(dir, n.File)))
		if err != nil {
			continue
		}
		e, err := bls.ParseEntry(n, b)
		if err != nil || e.Program() == "" {
			continue
		}
		if _, err := os.Stat(fsys.Path(path.Join(bf.BootDir, e.Program()))); err != nil {
			notes = append(notes, fmt.Sprintf("systemd-boot: entry %s skipped: %s is missing", n.File, e.Program()))
			continue
		}
		ents = append(ents, e)
	}
	slices.SortStableFunc(ents, bls.Compare)
	var chosen *bls.Entry
	for _, p := range []string{oneShot, defVar, confDef} {
		if i := slices.IndexFunc(ents, func(e bls.Entry) bool { return p != "" && bls.Match(p, e.ID()) }); i >= 0 {
			chosen = &ents[i]
			break
		}
	}
	if chosen == nil && len(ents) > 0 {
		chosen = &ents[0]
		if defVar != "" || confDef != "" {
			notes = append(notes, "fallback: no entry matches the default pattern, systemd-boot starts the first entry "+chosen.File)
		}
	}
	if chosen == nil {
		return "", notes, fmt.Errorf("%w: systemd-boot: no entry in %s", errNoBoot, dir)
	}
	if chosen.Counted() {
		if chosen.Left == 0 {
			notes = append(notes, "fallback: systemd-boot starts "+chosen.File+", which has no tries left")
		}
		// Counted down before it boots: a rename of the entry file.
		if err := os.Rename(fsys.Path(path.Join(dir, chosen.File)), fsys.Path(path.Join(dir, chosen.Next()))); err != nil {
			return "", notes, err
		}
		notes = append(notes, fmt.Sprintf("systemd-boot: entry %s counted down to %s", chosen.File, chosen.Next()))
	}
	group := ""
	for _, opt := range strings.Fields(chosen.Options) {
		if v, ok := strings.CutPrefix(opt, "tandem.group="); ok {
			group = v
		}
	}
	if group == "" {
		return "", notes, fmt.Errorf("%w: systemd-boot: entry %s has no tandem.group= option", errNoBoot, chosen.File)
	}
	sel := efivar.Encode(efivar.DefaultAttrs, efivar.EncodeString(chosen.ID()))
	return group, notes, os.WriteFile(varFile(bootflow.EFIVarSelected), sel, 0o644)
}
