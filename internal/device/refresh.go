package device

import "github.com/tandem-ota/tandem/internal/bootflow"

// Refresh marks the committed group good again on flows whose boot loader
// spends one of its attempts at every boot (bootflow.Refresher: RAUC's
// integrations), as RAUC's mark-good service does after each boot. It does
// nothing while the running group is on trial (that is the health check's
// decision) or on other flows, and reports whether it wrote.
func (d *Device) Refresh() (bool, error) {
	r, ok := d.Flow.(bootflow.Refresher)
	if !ok {
		return false, nil
	}
	st, unlock, err := d.LockStatus()
	if err != nil {
		return false, err
	}
	defer unlock()
	if st.CommitPending() {
		return false, nil
	}
	return r.Refresh(st.Default)
}
