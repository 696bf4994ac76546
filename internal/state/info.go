package state

import (
	"errors"
	"fmt"
	"os"

	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Status values of a Report.
const (
	StatusUnmanaged = "unmanaged" // no data partition configured
	StatusMissing   = "missing"   // configured, not mounted (or not reachable)
	StatusBlank     = "blank"     // mounted, no state layout yet (first boot pending)
	StatusActive    = "active"    // mounted, layout in use
)

// Report is what `tandem state info` shows (its --json form).
type Report struct {
	Status        string        `json:"status"`
	DataPartition *DataReport   `json:"dataPartition,omitempty"`
	Overlay       string        `json:"overlay,omitempty"` // "" when unmanaged
	Paths         []PathReport  `json:"paths"`
	ResetPending  *ResetRequest `json:"resetPending,omitempty"`
	Committed     *GenRef       `json:"committed,omitempty"`
	Trial         *GenRef       `json:"trial,omitempty"`
	Backup        *Backup       `json:"backup,omitempty"`
	ConfigFiles   []string      `json:"configFiles"`
	// Boot is what tandem init did at this boot (nil: it did not run).
	Boot *BootReport `json:"boot,omitempty"`
}

// DataReport describes the data partition.
type DataReport struct {
	Device     string `json:"device"`
	Mount      string `json:"mount"`
	Filesystem string `json:"filesystem,omitempty"`
	Fsck       bool   `json:"fsck"`
}

// PathReport is one persistent path and what it holds now.
type PathReport struct {
	Path       string `json:"path"`
	Type       string `json:"type"`
	Shared     bool   `json:"shared"`
	Generation int    `json:"generation,omitempty"`
	Size       int64  `json:"size"`
}

// Inspect reports the state of the device on fsys: its configuration, and
// the layout on the data partition where it is mounted. running is the
// running group (its trial snapshot's sizes are shown); dataDir is
// system.toml's data-dir.
func Inspect(fsys rootfs.FS, dataDir, running string) (*Report, error) {
	return inspect(fsys, dataDir, running, true)
}

// inspect is Inspect; sizes: measure the persistent paths (a walk of each).
func inspect(fsys rootfs.FS, dataDir, running string, sizes bool) (*Report, error) {
	c, err := Load(fsys)
	if err != nil {
		return nil, err
	}
	r := &Report{Status: StatusUnmanaged, Overlay: c.Overlay, Paths: []PathReport{}, ConfigFiles: c.Files}
	if r.ConfigFiles == nil {
		r.ConfigFiles = []string{}
	}
	if r.Boot, err = ReadBootReport(fsys); err != nil {
		return nil, err
	}
	if c.Data == nil {
		r.Overlay = ""
		return r, nil
	}
	r.DataPartition = &DataReport{Device: c.Data.DeviceName(), Mount: c.Data.Mount, Filesystem: c.Data.Filesystem, Fsck: c.Data.Fsck}
	s := &Store{FS: fsys, Mount: c.Data.Mount}
	var l *Layout
	switch got, err := s.Load(); {
	case errors.Is(err, ErrNoLayout):
		r.Status = StatusBlank
		if _, serr := os.Stat(fsys.Path(c.Data.Mount)); serr != nil {
			r.Status = StatusMissing
		}
	case err != nil:
		return nil, err
	default:
		l = &got
		r.Status = StatusActive
		r.ResetPending, r.Trial, r.Backup = got.Reset, got.Trial, got.Backup
		r.Committed = &got.Committed
	}
	for _, p := range c.WithDataDir(dataDir) {
		pr := PathReport{Path: p.Path, Type: p.Kind, Shared: p.Shared}
		if l != nil {
			pr.Generation = l.Current(running)
			if p.Shared {
				pr.Generation = l.Shared
			}
			if sizes {
				pr.Size = s.Size(pr.Generation, p.Path)
			}
		}
		r.Paths = append(r.Paths, pr)
	}
	return r, nil
}

// RequestReset records a factory reset that the next boot performs (the
// state is set aside or wiped before anything mounts it). It needs a
// configured, mounted data partition with a layout.
func RequestReset(fsys rootfs.FS, keepBackup bool) error {
	c, err := Load(fsys)
	if err != nil {
		return err
	}
	if c.Data == nil {
		return ErrNotManaged
	}
	s := &Store{FS: fsys, Mount: c.Data.Mount}
	if _, err := s.RequestReset(keepBackup); err != nil {
		if errors.Is(err, ErrNoLayout) {
			return fmt.Errorf("%w at %s: is the data partition mounted?", err, c.Data.Mount)
		}
		return fmt.Errorf("request a reset: %w", err)
	}
	return nil
}
