package device

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/filetrust"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// StateFile is the state database, relative to the data directory. It is
// written with rootfs.WriteAtomic; docs/state.md describes it.
const StateFile = "state.json"

// maxStateFile bounds the state database tandem accepts.
const maxStateFile = 1 << 20

// State is what tandem remembers across reboots.
type State struct {
	// Groups holds what tandem installed into each group.
	Groups map[string]GroupState `json:"groups,omitempty"`
	// Trial is the last try-next that was not committed yet.
	Trial *Trial `json:"trial,omitempty"`
	// LastUpdate is the outcome of the last finished update.
	LastUpdate *Result `json:"lastUpdate,omitempty"`
}

// GroupState records an installation into a group.
type GroupState struct {
	Version     string    `json:"version,omitempty"`
	BundleHash  string    `json:"bundleHash,omitempty"`
	InstalledAt time.Time `json:"installedAt"`
	// CommittedAt is when the installed version was committed (zero: not
	// yet): a fleet job learns from it that its update committed even
	// after the device has moved on to another group.
	CommittedAt time.Time `json:"committedAt,omitzero"`
	// Incomplete is set (durably) before an install writes the first byte
	// of the group's slots and cleared when every payload was written and
	// verified (RecordInstall): while it is set the group may hold a torn
	// system, and nothing tries or commits it (ErrIncomplete). Version and
	// BundleHash are then empty, so that no version is claimed for it.
	Incomplete *Writing `json:"incomplete,omitempty"`
}

// Writing is an install that began writing a group and has not finished.
type Writing struct {
	Version    string    `json:"version"`
	BundleHash string    `json:"bundleHash"`
	StartedAt  time.Time `json:"startedAt"`
}

// Trial is a requested trial boot.
type Trial struct {
	Group       string    `json:"group"`
	RequestedAt time.Time `json:"requestedAt"`
}

// Result is the outcome of an update.
type Result struct {
	Group string `json:"group"`
	// Status is installed, committed, rolled-back or failed (docs/cli.md).
	Status  string    `json:"status"`
	At      time.Time `json:"at"`
	Message string    `json:"message,omitempty"`
}

func (d *Device) statePath() string { return path.Join(d.Config.DataDir, StateFile) }

// LoadState reads the state database; a missing one is empty.
func (d *Device) LoadState() (*State, error) {
	st := &State{}
	if _, err := d.ReadJSON(d.statePath(), maxStateFile, st); err != nil {
		return nil, err
	}
	return st, nil
}

// SaveState writes the state database atomically.
func (d *Device) SaveState(st *State) error { return d.WriteJSON(d.statePath(), st) }

// ReadJSON reads the JSON document at the device path name, at most max
// bytes, into v. A missing document is not an error: found is false and v
// is left as it is. A document that other users may change (one that fails
// filetrust.Check: owned by another user, writable by group or others, or
// in such a directory) is refused (ErrRefused).
func (d *Device) ReadJSON(name string, max int, v any) (found bool, err error) {
	b, err := d.FS.ReadFile(name)
	if rootfs.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := filetrust.Check(d.FS.Path(name)); err != nil {
		return false, fmt.Errorf("%w: state file: %w", ErrRefused, err)
	}
	if len(b) > max {
		return false, fmt.Errorf("%s: larger than %d bytes", d.FS.Path(name), max)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", d.FS.Path(name), err)
	}
	return true, nil
}

// WriteJSON writes v, indented, to the device path name with
// rootfs.WriteAtomic, mode 0600, making its directory (mode 0700) first.
func (d *Device) WriteJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := d.FS.MkdirAll(path.Dir(name), 0o700); err != nil {
		return err
	}
	return rootfs.WriteAtomic(d.FS, name, append(b, '\n'), 0o600)
}

func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

func (d *Device) recordTrial(group string) error {
	st, err := d.LoadState()
	if err != nil {
		return err
	}
	st.Trial = &Trial{Group: group, RequestedAt: now()}
	return d.SaveState(st)
}

func (d *Device) recordCommit(group string) error {
	st, err := d.LoadState()
	if err != nil {
		return err
	}
	st.Trial = nil
	st.LastUpdate = &Result{Group: group, Status: "committed", At: now()}
	if gs, ok := st.Groups[group]; ok {
		gs.CommittedAt = st.LastUpdate.At
		st.Groups[group] = gs
	}
	return d.SaveState(st)
}

// BeginWrite prepares group g to be written with the bundle of the given
// version and hash: it cancels a try-next pending on it (crash-safely, in the
// boot flow), forgets what it held and marks it incomplete, durably, so that
// a group whose writing was interrupted is never booted, committed nor
// reported as the version it held before. Call it before the first slot
// byte is written, and RecordInstall once every payload is written and
// verified. The caller holds the lock.
func (d *Device) BeginWrite(g, version, bundleHash string) error {
	if err := d.repair(); err != nil {
		return err
	}
	if err := d.Flow.CancelTry(); err != nil {
		return fmt.Errorf("cancel the pending try of %s: %w", g, err)
	}
	if r, ok := d.Flow.(bootflow.Retirer); ok {
		if err := r.Retire(g); err != nil {
			return fmt.Errorf("remove the boot entry of %s: %w", g, err)
		}
	}
	st, err := d.LoadState()
	if err != nil {
		return err
	}
	st.Trial = nil
	if st.Groups == nil {
		st.Groups = map[string]GroupState{}
	}
	st.Groups[g] = GroupState{Incomplete: &Writing{Version: version, BundleHash: bundleHash, StartedAt: now()}}
	return d.SaveState(st)
}

// RecordInstall records what was installed into group g and clears its
// incomplete mark (BeginWrite): call it only once every payload was written
// and verified.
func (d *Device) RecordInstall(g, version, bundleHash string) error {
	st, err := d.LoadState()
	if err != nil {
		return err
	}
	if st.Groups == nil {
		st.Groups = map[string]GroupState{}
	}
	st.Groups[g] = GroupState{Version: version, BundleHash: bundleHash, InstalledAt: now()}
	st.LastUpdate = &Result{Group: g, Status: "installed", At: now()}
	return d.SaveState(st)
}

// checkComplete refuses group g when an install began writing it and did
// not finish (ErrIncomplete), unless d.ForceIncomplete is set.
func (d *Device) checkComplete(g string) error {
	st, err := d.LoadState()
	if err != nil {
		return err
	}
	w := st.Groups[g].Incomplete
	if w == nil || d.ForceIncomplete {
		return nil
	}
	return &IncompleteError{Group: g, Writing: *w}
}

// BootID identifies the running boot: the kernel's random boot id, or the
// boot count of a simulated device. It changes with every reboot.
func (d *Device) BootID() (string, error) {
	if d.Root != "" {
		sim, err := ReadSimState(d.Root)
		if err != nil {
			return "", err
		}
		if sim != nil {
			return fmt.Sprintf("sim-%d", sim.Boots), nil
		}
	}
	b, err := readSmall(rootfs.Join(d.Root, "/proc/sys/kernel/random/boot_id"))
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
