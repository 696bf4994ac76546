package state

import (
	"fmt"

	"github.com/tandem-ota/tandem/internal/config"
)

// Mounter performs the actions of a plan that are not state transitions:
// mkfs, fsck, mount, overlay and bind (real mounts in init, folder
// operations on a simulated device). ActWarn is passed to it too.
type Mounter interface {
	Do(a Action) error
}

// Recorder is a Mounter that is told of each state transition and seed
// that Apply performed (tandem init logs them to the kernel log).
type Recorder interface {
	Did(a Action)
}

// Apply runs plan: the state transitions and seeds through the store, the
// rest through m. layout is the journal the plan was computed from (nil:
// none); image is the host directory of the system image (what seeds copy
// from). It returns the layout after the plan.
//
// Each transition is crash-safe by itself (see Store); a plan cut anywhere
// is computed again at the next boot from what the journal then says, and
// reaches the same end.
func Apply(plan []Action, s *Store, layout *Layout, image string, m Mounter) (Layout, error) {
	var l Layout
	if layout != nil {
		l = *layout
	}
	var err error
	for _, a := range plan {
		switch a.Kind {
		case ActFormat:
			l, err = s.Format()
		case ActReset:
			l, err = s.ApplyReset(l)
		case ActCommit:
			l, err = s.Commit(l)
		case ActRollback:
			l, err = s.Rollback(l)
		case ActSnapshot:
			l, err = s.Snapshot(l, a.Group)
		case ActAdopt:
			l, err = s.Adopt(l, a.Group)
		case ActCollect:
			err = s.Collect(l)
		case ActSeed:
			err = s.Seed(a.Gen, *a.Path, image)
		default:
			if err = m.Do(a); err != nil {
				return l, fmt.Errorf("%s: %w", a, err)
			}
			continue
		}
		if err != nil {
			return l, fmt.Errorf("%s: %w", a, err)
		}
		if r, ok := m.(Recorder); ok {
			r.Did(a)
		}
	}
	return l, nil
}

// ErrNotManaged is returned by commands that need a data partition on a
// device whose state configuration declares none; it wraps
// config.ErrInvalid (a configuration problem).
var ErrNotManaged = fmt.Errorf("%w: no data partition is configured in %s/*.toml (docs/state.md)", config.ErrInvalid, ConfigDir)
