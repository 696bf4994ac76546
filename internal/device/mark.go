package device

import (
	"fmt"
	"slices"

	"github.com/tandem-ota/tandem/internal/bootflow"
)

// Mark is the outcome of `tandem boot mark-good` or `mark-bad` (docs/cli.md).
type Mark struct {
	Group   string `json:"group"`
	Good    bool   `json:"good"`
	Changed bool   `json:"changed"` // false: nothing needed marking
	Active  string `json:"active"`
	Default string `json:"default"`
}

// String is the one line the commands print.
func (m Mark) String() string {
	switch {
	case m.Good && m.Changed:
		return fmt.Sprintf("marked good: group %s is committed and now the default", m.Group)
	case m.Good:
		return fmt.Sprintf("nothing to mark: group %s already is the default", m.Group)
	case m.Changed && m.Group == m.Active:
		return fmt.Sprintf("marked bad: the boot loader does not start group %s again; reboot to go back to %s", m.Group, m.Default)
	case m.Changed:
		return fmt.Sprintf("marked bad: the trial of group %s is withdrawn; the next boot starts %s", m.Group, m.Default)
	}
	return fmt.Sprintf("nothing to mark: group %s is not on trial", m.Group)
}

// MarkGood commits the running group, as Commit does (Rugix's mark-good).
// group, when not "", must be the running group.
func (d *Device) MarkGood(group string) (Mark, error) {
	active, err := d.ActiveGroup()
	if err != nil {
		return Mark{}, err
	}
	if group != "" && group != active {
		return Mark{}, fmt.Errorf("%w: group %s is not running (group %s is); only the running group can be marked good", ErrRefused, group, active)
	}
	changed, err := d.Commit()
	if err != nil {
		return Mark{}, err
	}
	return Mark{Group: active, Good: true, Changed: changed, Active: active, Default: active}, nil
}

// MarkBad is MarkBadWithReason with the reason `tandem boot mark-bad` and
// rugix-ctrl's `boot mark-bad` record.
func (d *Device) MarkBad(group string) (Mark, error) {
	return d.MarkBadWithReason(group, "marked bad (boot mark-bad)")
}

// MarkBadWithReason ends group's trial so that the boot loader does not
// start it again: the one meaning of `tandem boot mark-bad`, rugix-ctrl's
// `boot mark-bad`, the local API's mark-bad and RollBack
// (docs/boot-flows.md, "Marking a trial good or bad"). group "" is the
// running group. A flow
// that implements bootflow.Counter ends the trial its own way (GRUB and
// U-Boot: the count cleared; systemd-boot: the entry gets no tries left;
// the adopted flows: their cancel); on the others the trial is cancelled
// (CancelTry), which withdraws a trial not booted yet and any further
// attempt of a running one (a one-boot trial ends at the next boot anyway).
// When group runs on trial, the update is recorded as rolled back with
// reason and the caller reboots; a trial not booted yet is withdrawn. The
// default group is refused: there would be nothing to fall back to. A group
// neither on trial nor pending is left as it is (Changed false).
func (d *Device) MarkBadWithReason(group, reason string) (Mark, error) {
	st, unlock, err := d.LockStatus()
	if err != nil {
		return Mark{}, err
	}
	defer unlock()
	if group == "" {
		group = st.Active
	}
	if !slices.Contains(d.Groups(), group) {
		return Mark{}, fmt.Errorf("%w: there is no group %q (groups: %v)", ErrRefused, group, d.Groups())
	}
	m := Mark{Group: group, Active: st.Active, Default: st.Default}
	if group == st.Default {
		return m, fmt.Errorf("%w: group %s is the default; marking it bad would leave nothing to fall back to", ErrRefused, group)
	}
	if group != st.Active && group != st.Trial {
		return m, nil
	}
	if c, ok := d.Flow.(bootflow.Counter); ok {
		err = c.MarkBad(group)
	} else {
		err = d.Flow.CancelTry()
	}
	if err != nil {
		return m, fmt.Errorf("mark %s bad: %w", group, err)
	}
	db, err := d.LoadState()
	if err != nil {
		return m, err
	}
	db.Trial = nil
	db.LastUpdate = &Result{Group: group, Status: "rolled-back", At: now(), Message: reason}
	m.Changed = true
	return m, d.SaveState(db)
}

// RollBack gives up the trial of the running group (MarkBad of it, with
// reason recorded), so that the next boot starts the default group. The
// caller reboots. It refuses when the running group is not on trial.
func (d *Device) RollBack(reason string) error {
	_, err := d.MarkBadWithReason("", reason)
	return err
}
