package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// The layout on the data partition (docs/state.md, "On-disk layout"):
//
//	<mount>/tandem-state/state.json   the journal: which generation is what
//	<mount>/tandem-state/gen/<id>/    a generation: persistent paths under their device paths
//
// A generation is a directory of persistent paths. state.json names the
// committed generation, the shared one, a trial's snapshot, a reset's
// backup and a pending reset. Every transition builds what it needs under a
// new generation id first (made durable), then replaces state.json in one
// atomic rename: that rename is the transition. Generations state.json does
// not name are garbage, removed by Collect.
const (
	// LayoutDir is the directory of the layout on the data partition.
	LayoutDir = "tandem-state"
	// JournalFile is the journal's name in LayoutDir.
	JournalFile = "state.json"
	// GenDir holds the generations in LayoutDir.
	GenDir = "gen"
	// maxJournal bounds state.json (it is read by init before anything).
	maxJournal = 64 << 10
)

// Layout is the content of state.json.
type Layout struct {
	Version int `json:"version"`
	// Committed is the generation of the committed state and the group
	// it belongs to ("" until a group adopts it, after a format or a reset).
	Committed GenRef `json:"committed"`
	// Shared is the generation of the shared paths (never snapshotted).
	Shared int `json:"shared"`
	// Trial is the snapshot a group on trial uses; nil when none.
	Trial *GenRef `json:"trial,omitempty"`
	// Backup is what a reset with --keep-backup set aside; nil when none.
	Backup *Backup `json:"backup,omitempty"`
	// Reset is a pending factory reset; nil when none.
	Reset *ResetRequest `json:"reset,omitempty"`
	// Next is the id the next generation gets (ids are never reused).
	Next int `json:"next"`
}

// GenRef names a generation and the group whose state it is.
type GenRef struct {
	Group string `json:"group"`
	Gen   int    `json:"gen"`
}

// Backup is the state a reset set aside.
type Backup struct {
	Gen    int `json:"gen"`
	Shared int `json:"shared"`
}

// ResetRequest is a factory reset that the next boot performs.
type ResetRequest struct {
	KeepBackup bool `json:"keepBackup"`
}

// layoutVersion is the version of state.json this code writes and reads.
const layoutVersion = 1

// Errors of the transitions.
var (
	// ErrNoLayout: the data partition holds no state layout (not formatted).
	ErrNoLayout = errors.New("the data partition holds no state layout")
	// ErrTrial: a transition that needs no trial found one, or the reverse.
	ErrTrial = errors.New("trial state")
)

// NewLayout is the layout of a freshly formatted data partition: an empty
// committed generation (1) and an empty shared one (2), no group yet.
func NewLayout() Layout {
	return Layout{Version: layoutVersion, Committed: GenRef{Gen: 1}, Shared: 2, Next: 3}
}

// ParseLayout decodes and checks state.json.
func ParseLayout(b []byte) (Layout, error) {
	var l Layout
	if len(b) > maxJournal {
		return l, fmt.Errorf("%s is larger than %d bytes", JournalFile, maxJournal)
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("%s: %w", JournalFile, err)
	}
	if l.Version != layoutVersion {
		return l, fmt.Errorf("%s: version %d: this tandem reads version %d", JournalFile, l.Version, layoutVersion)
	}
	return l, l.check()
}

// check: every referenced id is below Next, positive, and used once.
func (l Layout) check() error {
	ids := l.Referenced()
	for i, id := range ids {
		if id < 1 || id >= l.Next {
			return fmt.Errorf("%s: generation %d out of range (next %d)", JournalFile, id, l.Next)
		}
		if slices.Contains(ids[:i], id) {
			return fmt.Errorf("%s: generation %d named twice", JournalFile, id)
		}
	}
	if l.Trial != nil && l.Trial.Group == "" {
		return fmt.Errorf("%s: a trial without a group", JournalFile)
	}
	return nil
}

// Referenced returns the generations the layout names (the rest is garbage).
func (l Layout) Referenced() []int {
	ids := []int{l.Committed.Gen, l.Shared}
	if l.Trial != nil {
		ids = append(ids, l.Trial.Gen)
	}
	if l.Backup != nil {
		ids = append(ids, l.Backup.Gen, l.Backup.Shared)
	}
	return ids
}

// Current returns the generation a boot of group uses for the
// non-shared paths: the trial's snapshot when group is on trial, else the
// committed one.
func (l Layout) Current(group string) int {
	if l.Trial != nil && l.Trial.Group == group {
		return l.Trial.Gen
	}
	return l.Committed.Gen
}

func (l Layout) clone() Layout {
	c := l
	if l.Trial != nil {
		t := *l.Trial
		c.Trial = &t
	}
	if l.Backup != nil {
		b := *l.Backup
		c.Backup = &b
	}
	if l.Reset != nil {
		r := *l.Reset
		c.Reset = &r
	}
	return c
}

// The transitions, as pure functions of the layout. The Store applies them
// with the file operations each needs before the journal is replaced.

// withReset is the layout after `tandem state reset` asked for one.
func (l Layout) withReset(keepBackup bool) Layout {
	c := l.clone()
	c.Reset = &ResetRequest{KeepBackup: keepBackup}
	return c
}

// afterReset is the layout after a reset: new empty generations for the
// committed and shared state (ids Next and Next+1), no trial, no group; the
// old committed and shared generations kept as the backup if asked.
func (l Layout) afterReset() Layout {
	c := Layout{Version: layoutVersion, Committed: GenRef{Gen: l.Next}, Shared: l.Next + 1, Next: l.Next + 2}
	if l.Reset != nil && l.Reset.KeepBackup {
		c.Backup = &Backup{Gen: l.Committed.Gen, Shared: l.Shared}
	}
	return c
}

// afterSnapshot: group goes on trial with a copy (id Next) of the committed state.
func (l Layout) afterSnapshot(group string) (Layout, error) {
	if l.Trial != nil {
		return l, fmt.Errorf("%w: group %s already has a snapshot; commit or roll it back first", ErrTrial, l.Trial.Group)
	}
	c := l.clone()
	c.Trial = &GenRef{Group: group, Gen: l.Next}
	c.Next++
	return c, nil
}

// afterCommit: the trial's snapshot becomes the committed state.
func (l Layout) afterCommit() (Layout, error) {
	if l.Trial == nil {
		return l, fmt.Errorf("%w: no snapshot to commit", ErrTrial)
	}
	c := l.clone()
	c.Committed, c.Trial = *l.Trial, nil
	return c, nil
}

// afterRollback: the trial's snapshot is dropped; the committed state is
// untouched.
func (l Layout) afterRollback() (Layout, error) {
	if l.Trial == nil {
		return l, fmt.Errorf("%w: no snapshot to roll back", ErrTrial)
	}
	c := l.clone()
	c.Trial = nil
	return c, nil
}

// afterAdopt: the committed state belongs to group (the first boot after a
// format or reset, or a group committed without a snapshot).
func (l Layout) afterAdopt(group string) Layout {
	c := l.clone()
	c.Committed.Group = group
	return c
}

// genName is the directory of generation id under LayoutDir.
func genName(id int) string { return GenDir + "/" + strconv.Itoa(id) }
