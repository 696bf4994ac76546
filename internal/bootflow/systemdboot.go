package bootflow

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootenv/efivar"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// systemd-boot flow: EFI variables of the boot loader vendor GUID, as files
// of efivarfs (rule table in docs/boot-flows.md):
//
//	LoaderEntryOneShot  entry to start once (systemd-boot deletes it when it reads it)
//	LoaderEntryDefault  entry to start by default; when absent, `default` in loader/loader.conf
//
// efivarfs has no rename; every variable write is one atomic SetVariable call
// of the firmware, so each operation is a single write (or removal) and a
// power cut leaves the old or the new value. Files are immutable until the
// attribute is cleared. This is the one-shot mode: a trial is one boot (boot
// counting with per-group entries is sdcount.go).
const (
	EFIVarOneShot  = "LoaderEntryOneShot"
	EFIVarDefault  = "LoaderEntryDefault"
	EFIVarSelected = "LoaderEntrySelected"
)

type systemdBootFlow struct {
	fsys    rootfs.FS
	vars    string
	bootDir string
	groups  []string
	entries map[string]string
}

func newSystemdBoot(bf config.BootFlow, groups []string, fsys rootfs.FS) *systemdBootFlow {
	return &systemdBootFlow{fsys: fsys, vars: bf.EFIVarsDir, bootDir: bf.BootDir, groups: groups, entries: bf.Entries}
}

func (s *systemdBootFlow) Name() string { return config.FlowSystemdBoot }

func (s *systemdBootFlow) varPath(name string) string {
	return path.Join(s.vars, efivar.FileName(name, efivar.VendorLoader))
}

// readVar returns the string value of a variable, "" when it does not exist.
func (s *systemdBootFlow) readVar(name string) (string, error) {
	p := s.varPath(name)
	b, err := s.fsys.ReadFile(p)
	if rootfs.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", stateErr(s.fsys.Path(p), err)
	}
	_, val, err := efivar.Decode(b)
	if err != nil {
		return "", stateErr(s.fsys.Path(p), err)
	}
	str, err := efivar.DecodeString(val)
	if err != nil {
		return "", stateErr(s.fsys.Path(p), err)
	}
	return str, nil
}

// writeVar sets a variable the way efivarfs wants it: clear the immutable
// attribute, then one write of attributes and value.
func (s *systemdBootFlow) writeVar(name, value string) error {
	p := s.varPath(name)
	if err := s.fsys.ClearImmutable(p); err != nil && !rootfs.IsNotExist(err) {
		return fmt.Errorf("clear immutable attribute of %s: %w", s.fsys.Path(p), err)
	}
	f, err := s.fsys.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	if _, err := f.Write(efivar.Encode(efivar.DefaultAttrs, efivar.EncodeString(value))); err != nil {
		f.Close()
		return fmt.Errorf("set %s: %w", name, err)
	}
	return f.Close()
}

func (s *systemdBootFlow) deleteVar(name string) error {
	p := s.varPath(name)
	if _, err := s.fsys.Stat(p); rootfs.IsNotExist(err) {
		return nil
	}
	if err := s.fsys.ClearImmutable(p); err != nil && !rootfs.IsNotExist(err) {
		return fmt.Errorf("clear immutable attribute of %s: %w", s.fsys.Path(p), err)
	}
	if err := s.fsys.Remove(p); err != nil && !rootfs.IsNotExist(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

func (s *systemdBootFlow) groupOf(entry string) (string, bool) { return groupWith(s.entries, entry) }

// Default reads LoaderEntryDefault, else the `default` line of loader.conf
// (systemd-boot's order).
func (s *systemdBootFlow) Default() (string, error) {
	entry, err := s.readVar(EFIVarDefault)
	if err != nil {
		return "", err
	}
	src := s.fsys.Path(s.varPath(EFIVarDefault))
	if entry == "" {
		conf := path.Join(s.bootDir, "loader", "loader.conf")
		src = s.fsys.Path(conf)
		if entry, err = loaderConfDefault(s.fsys, conf); err != nil {
			return "", stateErr(src, err)
		}
	}
	g, ok := s.groupOf(entry)
	if !ok {
		return "", stateErr(src, fmt.Errorf("default entry %q is no configured group's entry", entry))
	}
	return g, nil
}

// loaderConfDefault returns the value of the `default` key of loader.conf.
func loaderConfDefault(fsys rootfs.FS, name string) (string, error) {
	b, err := fsys.ReadFile(name)
	if err != nil {
		return "", err
	}
	if len(b) > 64<<10 {
		return "", fmt.Errorf("larger than 64 KiB")
	}
	// Like systemd-boot: whitespace-separated "key value", the last one wins.
	entry := ""
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "default" {
			entry = f[1]
		}
	}
	if entry == "" {
		return "", fmt.Errorf("no default entry")
	}
	return entry, nil
}

func (s *systemdBootFlow) TryNext(group string) error {
	if err := checkGroup(s.groups, group); err != nil {
		return err
	}
	return s.writeVar(EFIVarOneShot, s.entries[group])
}

func (s *systemdBootFlow) CancelTry() error { return s.deleteVar(EFIVarOneShot) }

func (s *systemdBootFlow) Commit(group string) error {
	if err := checkGroup(s.groups, group); err != nil {
		return err
	}
	if err := s.writeVar(EFIVarDefault, s.entries[group]); err != nil {
		return err
	}
	return s.CancelTry()
}

// Trial reports the pending one-shot entry. Like systemd-boot, it ignores a
// variable it cannot decode.
func (s *systemdBootFlow) Trial() (string, int, error) {
	entry, err := s.readVar(EFIVarOneShot)
	if errors.Is(err, ErrBootState) {
		return "", 0, nil
	}
	if err != nil || entry == "" {
		return "", 0, err
	}
	g, ok := s.groupOf(entry)
	if !ok {
		return "", 0, nil
	}
	return g, 1, nil
}
