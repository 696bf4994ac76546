package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tandem-ota/tandem/internal/bounded"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// BootReportPath is the device path of the file where tandem init records
// what it did with the state at this boot (on the /run tmpfs: it describes
// the running boot only).
const BootReportPath = "/run/tandem/init.json"

// Boot statuses of a BootReport.
const (
	BootOK       = "ok"       // the plan ran in full
	BootDegraded = "degraded" // the state part failed: booted with the overlay discarded (or none)
)

// BootReport is what tandem init did at this boot: `tandem state info`
// shows it, and a degraded boot is a reason for a health check to refuse
// to commit.
type BootReport struct {
	Status string `json:"status"`
	// Error is why the boot is degraded ("" when ok).
	Error string `json:"error,omitempty"`
	// Device is the data partition's device as found ("" when not found).
	Device string `json:"device,omitempty"`
	// Overlay is the overlay mode in effect.
	Overlay string `json:"overlay"`
	// Actions are the plan's actions that ran, one line each.
	Actions []string `json:"actions"`
}

// maxBootReport bounds the boot report.
const maxBootReport = 64 << 10

// ReadBootReport reads the boot report of the running boot; nil, nil when
// tandem init did not run (no report).
func ReadBootReport(fsys rootfs.FS) (*BootReport, error) {
	p := fsys.Path(BootReportPath)
	b, err := bounded.ReadFile(p, maxBootReport)
	if rootfs.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r BootReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &r, nil
}

// ErrDegradedBoot: tandem init booted without the state; a trial is not
// committed on such a boot.
var ErrDegradedBoot = errors.New("the state was not set up at this boot")

// CheckCommit says whether the running boot's state allows committing a
// trial: an error (ErrDegradedBoot) when tandem init booted degraded, unless
// the state configuration sets commit-when-degraded = true. No boot report
// (tandem init did not run) allows it; an unreadable configuration does not
// lift the refusal.
func CheckCommit(fsys rootfs.FS) error {
	r, err := ReadBootReport(fsys)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDegradedBoot, err)
	}
	if r == nil || r.Status == BootOK {
		return nil
	}
	if c, err := Load(fsys); err == nil && c.CommitWhenDegraded {
		return nil
	}
	return fmt.Errorf("%w (tandem init: %s: %s); fix it and reboot, or set commit-when-degraded = true in %s to commit anyway",
		ErrDegradedBoot, r.Status, r.Error, ConfigDir)
}

// WriteBootReport writes r as the boot report under the host directory
// root (the simulator's device directory; tandem init writes its own).
func WriteBootReport(root string, r BootReport) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	p := rootfs.Join(root, BootReportPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, append(b, '\n'), 0o644)
}
