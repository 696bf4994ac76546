// Package device is tandem's model of the device it runs on: the
// configuration, the file layer under the root prefix, the boot flow, which
// group is active, default or spare, and the small state database in the data
// directory. Commands and fleet adapters act on a Device; nothing here knows
// about either.
package device

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"slices"
	"time"

	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/hooks"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/state"
)

// Sentinel errors callers branch on (the CLI maps them to exit codes).
var (
	// ErrRefused: the operation would break a safety rule (write the active
	// group, try while a trial is pending, ...).
	ErrRefused = errors.New("refused")
	// ErrNoActiveGroup: neither the kernel command line nor the root mount
	// tells which group runs.
	ErrNoActiveGroup = errors.New("cannot tell which boot group is running")
	// ErrIncomplete: an install began writing the group and did not finish
	// (IncompleteError); it is also an ErrRefused.
	ErrIncomplete = errors.New("group is incomplete")
)

// IncompleteError refuses to try or commit a group whose writing was
// interrupted (GroupState.Incomplete). It is ErrRefused and ErrIncomplete.
type IncompleteError struct {
	Group   string
	Writing Writing
}

func (e *IncompleteError) Error() string {
	return fmt.Sprintf("%v: group %s is incomplete: an install of version %s began writing it at %s and did not finish",
		ErrRefused, e.Group, e.Writing.Version, e.Writing.StartedAt.Format(time.RFC3339))
}

// Is makes an IncompleteError both ErrRefused and ErrIncomplete.
func (e *IncompleteError) Is(target error) bool {
	return target == ErrRefused || target == ErrIncomplete
}

// ConfigError wraps every failure to load the configuration (missing file
// included), so that callers can tell it from other failures.
type ConfigError struct{ Err error }

func (c ConfigError) Error() string { return c.Err.Error() }
func (c ConfigError) Unwrap() error { return c.Err }

// SimMarker is the device path of the file that marks a simulated device
// (created by `tandem sim new`). Only on such a device does tandem record
// reboots instead of rebooting and honour the power-cut switch.
const SimMarker = "/.tandem-sim.json"

// SimState is the content of SimMarker.
type SimState struct {
	BootFlow string `json:"bootFlow"`
	// Running is the group the simulated device runs ("" before first boot).
	Running string `json:"running"`
	// Hung: the running system failed before it could commit (sim reboot --hang).
	Hung bool `json:"hung,omitempty"`
	// Reboot is the last reboot request, nil when none is pending.
	Reboot *RebootRequest `json:"reboot,omitempty"`
	Boots  int            `json:"boots"`
}

// RebootRequest is a recorded reboot of a simulated device.
type RebootRequest struct {
	Args []string `json:"args"`
}

// Options open a device.
type Options struct {
	Root       string // root prefix; "" is the real system
	ConfigPath string // device path of the configuration; "" is config.DefaultPath
	// CutAt and CutMode are the power-cut switch (simulated devices only).
	CutAt   int
	CutMode rootfs.CutMode
	// PauseAt is the real-boot tests' pause point ("OP:N", rootfs.WithPause,
	// printed to PauseOut); real devices only.
	PauseAt  string
	PauseOut io.Writer
}

// Device is an opened device.
type Device struct {
	Root   string
	Config *config.Config
	FS     rootfs.FS
	Flow   bootflow.Flow
	// Sim is the simulator state, nil on a real device.
	Sim *SimState
	// ForceIncomplete lets TrySpare, TryNext and Commit act on a group
	// marked incomplete (the operator's --force-incomplete); by default they
	// refuse it with an IncompleteError.
	ForceIncomplete bool
	// StateFree reads the free space of the data partition for the trial's
	// space check (nil: statfs); tests make the partition full with it.
	StateFree state.FreeFunc
}

// Open loads the configuration and builds the file layer and boot flow.
func Open(opts Options) (*Device, error) {
	cfg, err := config.Load(opts.Root, opts.ConfigPath)
	if err != nil {
		return nil, ConfigError{err}
	}
	d := &Device{Root: opts.Root, Config: cfg}
	sim, err := ReadSimState(opts.Root)
	if err != nil {
		return nil, err
	}
	if sim != nil {
		d.Sim = sim
		var syncDirs, fatDirs []string
		switch bf := cfg.BootFlow; bf.Type {
		case config.FlowSystemdBoot:
			syncDirs = []string{bf.EFIVarsDir}
			if bf.BootCounting {
				fatDirs = []string{bf.BootDir} // the ESP
			}
		case config.FlowGrub, config.FlowRPiTryboot:
			fatDirs = []string{bf.BootDir} // the boot partition is FAT
		case config.FlowUBoot:
			fatDirs = []string{bf.BootDir, path.Dir(bf.EnvFile), path.Dir(bf.EnvFileRedund)}
		}
		d.FS = rootfs.NewSim(opts.Root, rootfs.SimOptions{CutAt: opts.CutAt, Mode: opts.CutMode, SyncDirs: syncDirs, FATDirs: fatDirs})
	} else {
		if opts.CutAt != 0 {
			return nil, fmt.Errorf("%w: the power-cut switch works only on a simulated device", ErrRefused)
		}
		d.FS = rootfs.NewOS(opts.Root)
		if opts.PauseAt != "" {
			if d.FS, err = rootfs.WithPause(d.FS, opts.PauseAt, opts.PauseOut); err != nil {
				return nil, err
			}
		}
	}
	if d.Flow, err = bootflow.New(cfg, d.FS); err != nil {
		return nil, err
	}
	return d, nil
}

// ReadSimState returns the simulator state of the device under root, nil if
// it is not a simulated device.
func ReadSimState(root string) (*SimState, error) {
	if root == "" || root == "/" {
		return nil, nil // the real system is never simulated
	}
	p := rootfs.Join(root, SimMarker)
	b, err := os.ReadFile(p)
	if rootfs.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st SimState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &st, nil
}

// WriteSimState stores the simulator state of the device under root.
func WriteSimState(root string, st *SimState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	// Simulator bookkeeping, not device state: rename without fsync.
	p := rootfs.Join(root, SimMarker)
	if err := os.WriteFile(p+".new", append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(p+".new", p)
}

// Groups returns the configured boot groups, sorted.
func (d *Device) Groups() []string { return d.Config.GroupNames() }

// Status is the boot state at one instant.
type Status struct {
	Active  string
	Default string
	// Spare lists the groups that are neither active nor default: the only
	// ones tandem may write.
	Spare []string
	// Trial is the group waiting for its trial boot ("" if none); TrialLeft
	// its remaining attempts where the boot loader counts (else 1).
	Trial     string
	TrialLeft int
}

// CommitPending reports whether the running group booted on trial and is not
// the default yet.
func (st Status) CommitPending() bool { return st.Active != st.Default }

// Status reads the active group and the boot flow's state.
func (d *Device) Status() (Status, error) {
	var st Status
	var err error
	if st.Active, err = d.ActiveGroup(); err != nil {
		return st, err
	}
	if st.Default, err = d.Flow.Default(); err != nil {
		return st, err
	}
	for _, g := range d.Groups() {
		if g != st.Active && g != st.Default {
			st.Spare = append(st.Spare, g)
		}
	}
	if c, ok := d.Flow.(bootflow.TrialReader); ok {
		if st.Trial, st.TrialLeft, err = c.Trial(); err != nil {
			return st, err
		}
	}
	return st, nil
}

// CheckWritable refuses a group that is not spare (invariant 1: tandem never
// writes a slot of the active group; nor of the default one).
func (st Status) CheckWritable(group string) error {
	if !slices.Contains(st.Spare, group) {
		return fmt.Errorf("%w: group %s is not spare (active %s, default %s)", ErrRefused, group, st.Active, st.Default)
	}
	return nil
}

// Target chooses the group an update or a trial may go to: group when it is
// spare, or the only spare group when group is "". It refuses while the
// running group is on trial (commit or roll back first).
func (st Status) Target(group string) (string, error) {
	if st.CommitPending() {
		return "", fmt.Errorf("%w: group %s runs on trial and is not committed; commit it or reboot to roll back first", ErrRefused, st.Active)
	}
	if group != "" {
		return group, st.CheckWritable(group)
	}
	switch len(st.Spare) {
	case 0:
		return "", fmt.Errorf("%w: no spare group", ErrRefused)
	case 1:
		return st.Spare[0], nil
	}
	return "", fmt.Errorf("%w: several spare groups (%v); choose one with --group", ErrRefused, st.Spare)
}

// Commit makes the active group the default. It returns false when it
// already was: nothing is committed then, though a redundant copy of the
// default that an interrupted commit left stale is rewritten. It refuses an
// incomplete group (ErrIncomplete) unless d.ForceIncomplete is set.
func (d *Device) Commit() (bool, error) {
	st, unlock, err := d.LockStatus()
	if err != nil {
		return false, err
	}
	defer unlock()
	if !st.CommitPending() {
		// Nothing to commit (docs/cli.md), but an interrupted commit may
		// have left a redundant copy behind: repair it quietly.
		return false, d.repair()
	}
	// A trial that was given up (RollBack) waits for its reboot; it is not
	// committed in between.
	if db, err := d.LoadState(); err != nil {
		return false, err
	} else if u := db.LastUpdate; db.Trial == nil && u != nil && u.Group == st.Active && u.Status == "rolled-back" {
		return false, fmt.Errorf("%w: the trial of group %s was given up (%s); reboot to go back to %s", ErrRefused, st.Active, u.Message, st.Default)
	}
	if err := d.checkComplete(st.Active); err != nil {
		return false, err
	}
	env := "TANDEM_GROUP=" + st.Active
	if err := hooks.Run(d.FS, d.Config.HooksDir, "system-commit", "pre-commit", env); err != nil {
		return false, err
	}
	if err := d.Flow.Commit(st.Active); err != nil {
		return false, fmt.Errorf("commit %s: %w", st.Active, err)
	}
	if err := d.recordCommit(st.Active); err != nil {
		return true, fmt.Errorf("group %s is committed, but the state database was not updated: %w", st.Active, err)
	}
	return true, hooks.Run(d.FS, d.Config.HooksDir, "system-commit", "post-commit", env)
}

// TrySpare sets try-next on the spare group (there must be exactly one) and
// returns it.
func (d *Device) TrySpare() (string, error) {
	st, unlock, err := d.LockStatus()
	if err != nil {
		return "", err
	}
	defer unlock()
	target, err := st.Target("")
	if err != nil {
		return "", err
	}
	return target, d.tryNext(target)
}

// TryNext sets try-next on group, which must be spare.
func (d *Device) TryNext(group string) error {
	st, unlock, err := d.LockStatus()
	if err != nil {
		return err
	}
	defer unlock()
	if err := st.CheckWritable(group); err != nil {
		return err
	}
	return d.tryNext(group)
}

// TryNextLocked is TryNext for a caller that already holds the lock.
func (d *Device) TryNextLocked(group string) error { return d.tryNext(group) }

// tryNext refuses an incomplete group, repairs redundant copies of the
// default, records the trial in the state database, then asks the boot flow;
// a failed flow write takes the record back.
func (d *Device) tryNext(group string) error {
	if err := d.checkComplete(group); err != nil {
		return err
	}
	if err := d.checkStateSpace(); err != nil {
		return err
	}
	if err := d.repair(); err != nil {
		return err
	}
	if err := d.recordTrial(group); err != nil {
		return err
	}
	if err := d.Flow.TryNext(group); err != nil {
		if st, lerr := d.LoadState(); lerr == nil && st.Trial != nil && st.Trial.Group == group {
			st.Trial = nil
			_ = d.SaveState(st)
		}
		return fmt.Errorf("try-next %s: %w", group, err)
	}
	return nil
}

// repair rewrites redundant copies of the default an interrupted commit
// left behind, so that a spare group is never named by a stale copy.
func (d *Device) repair() error {
	r, ok := d.Flow.(bootflow.Repairer)
	if !ok {
		return nil
	}
	def, err := d.Flow.Default()
	if err != nil {
		return err
	}
	_, err = r.Repair(def)
	return err
}

// CancelTry withdraws a pending try-next and forgets the recorded trial.
func (d *Device) CancelTry() error {
	unlock, err := d.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.Flow.CancelTry(); err != nil {
		return fmt.Errorf("cancel try: %w", err)
	}
	st, err := d.LoadState()
	if err != nil || st.Trial == nil {
		return err
	}
	st.Trial = nil
	return d.SaveState(st)
}

// Reboot reboots the device (on a simulated device it records the request).
// The boot flow may add arguments (tryboot).
func (d *Device) Reboot() error {
	argv := slices.Clone(d.Config.RebootCommand)
	if ra, ok := d.Flow.(bootflow.RebootArger); ok {
		args, err := ra.RebootArgs()
		if err != nil {
			return err
		}
		argv = append(argv, args...)
	}
	if d.Sim != nil {
		if s, ok := d.FS.(*rootfs.Sim); ok && s.Cut() != nil {
			return s.Cut()
		}
		d.Sim.Reboot = &RebootRequest{Args: argv[1:]}
		return WriteSimState(d.Root, d.Sim)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("reboot: %v: %w: %s", argv, err, out)
	}
	return nil
}

// LockStatus prepares a change of the boot state or of a slot: it refuses
// a simulated system that hung, takes the device lock and reads the state
// under it. The caller calls unlock when done.
func (d *Device) LockStatus() (st Status, unlock func(), err error) {
	if err := d.CheckNotHung(); err != nil {
		return Status{}, nil, err
	}
	if unlock, err = d.Lock(); err != nil {
		return Status{}, nil, err
	}
	if st, err = d.Status(); err != nil {
		unlock()
		return Status{}, nil, err
	}
	return st, unlock, nil
}

// CheckNotHung refuses to act for a simulated system that hung before it
// could run anything (tandem sim reboot --hang).
func (d *Device) CheckNotHung() error {
	if d.Sim != nil && d.Sim.Hung {
		return fmt.Errorf("%w: the simulated system in group %s hung before it could run tandem; run `tandem sim reboot`", ErrRefused, d.Sim.Running)
	}
	return nil
}
