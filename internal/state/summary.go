package state

import "github.com/tandem-ota/tandem/internal/rootfs"

// StatusDegraded is a Summary's status when tandem init could not set up
// the state at this boot (the boot report says why).
const StatusDegraded = "degraded"

// Summary is the `state` object of `tandem system info --json` (field names
// as Rugix's where they exist: status, dataPartition).
type Summary struct {
	// Status: unmanaged, missing, blank, active (Report.Status), or
	// degraded when tandem init booted without the state at this boot, or
	// unknown when the state configuration cannot be read.
	Status string `json:"status"`
	// DataPartition is the configured data partition's device ("" when none).
	DataPartition string `json:"dataPartition,omitempty"`
	Overlay       string `json:"overlay,omitempty"`
	// Error says why the status is degraded or unknown.
	Error string `json:"error,omitempty"`
}

// Summarize returns the device's state summary; it never fails (a problem
// is the summary's status). Unlike Inspect it does not measure the paths.
func Summarize(fsys rootfs.FS, dataDir, running string) *Summary {
	r, err := inspect(fsys, dataDir, running, false)
	if err != nil {
		return &Summary{Status: "unknown", Error: err.Error()}
	}
	s := &Summary{Status: r.Status, Overlay: r.Overlay}
	if r.DataPartition != nil {
		s.DataPartition = r.DataPartition.Device
	}
	if r.Boot != nil {
		s.Overlay = r.Boot.Overlay
		if r.Boot.Status != BootOK {
			s.Status, s.Error = StatusDegraded, r.Boot.Error
		}
	}
	return s
}
