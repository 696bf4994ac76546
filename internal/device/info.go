package device

import (
	"fmt"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootflow"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/state"
)

// Info is the document `tandem system info --json` prints (docs/cli.md).
type Info struct {
	Compatible string              `json:"compatible"`
	Boot       BootInfo            `json:"boot"`
	Slots      map[string]SlotInfo `json:"slots"`
	// LastUpdate is the outcome of the last update, nil if none is known.
	LastUpdate *Result `json:"lastUpdate"`
	// State is the state management's summary (docs/state.md).
	State *state.Summary `json:"state"`
}

// BootInfo is the boot state.
type BootInfo struct {
	BootFlow      string               `json:"bootFlow"`
	ActiveGroup   string               `json:"activeGroup"`
	DefaultGroup  string               `json:"defaultGroup"`
	SpareGroups   []string             `json:"spareGroups"`
	CommitPending bool                 `json:"commitPending"`
	Trial         *TrialInfo           `json:"trial,omitempty"`
	Groups        map[string]GroupInfo `json:"groups"`
}

// TrialInfo is a trial waiting for the next boot.
type TrialInfo struct {
	Group        string `json:"group"`
	AttemptsLeft int    `json:"attemptsLeft"`
}

// GroupInfo describes one boot group.
type GroupInfo struct {
	Slots   map[string]string `json:"slots"`             // alias → slot name
	Version string            `json:"version,omitempty"` // installed version, "" if unknown
	// VersionSource says where Version comes from: installed, factory or os-release.
	VersionSource string `json:"versionSource,omitempty"`
	// Incomplete is set when an install began writing the group and did
	// not finish: the group may hold a torn system, has no version, and is
	// neither tried nor committed until an install of it completes.
	Incomplete *Writing `json:"incomplete,omitempty"`
}

// SlotInfo describes one slot.
type SlotInfo struct {
	Type      string   `json:"type"`
	Group     string   `json:"group,omitempty"`
	Active    bool     `json:"active"`
	Path      string   `json:"path,omitempty"` // file and directory slots: host path
	Device    string   `json:"device,omitempty"`
	Partition int      `json:"partition,omitempty"`
	Handler   []string `json:"handler,omitempty"`
}

// Info collects the device's state.
func (d *Device) Info() (*Info, error) {
	st, err := d.Status()
	if err != nil {
		return nil, err
	}
	db, err := d.LoadState()
	if err != nil {
		// Show the boot state anyway; the broken database is the last update's story.
		db = &State{LastUpdate: &Result{Status: "unknown", Message: err.Error()}}
	}
	info := &Info{
		Compatible: d.Config.Compatible,
		Boot: BootInfo{
			BootFlow: d.Flow.Name(), ActiveGroup: st.Active, DefaultGroup: st.Default,
			SpareGroups: st.Spare, CommitPending: st.CommitPending(), Groups: map[string]GroupInfo{},
		},
		Slots:      map[string]SlotInfo{},
		LastUpdate: lastUpdate(db, st, d.Flow),
		State:      state.Summarize(d.FS, d.Config.DataDir, st.Active),
	}
	if info.Boot.SpareGroups == nil {
		info.Boot.SpareGroups = []string{}
	}
	if st.Trial != "" {
		info.Boot.Trial = &TrialInfo{Group: st.Trial, AttemptsLeft: st.TrialLeft}
	}
	for _, g := range d.Groups() {
		gi := GroupInfo{Slots: d.Config.Groups[g].Slots}
		gi.Version, gi.VersionSource = d.version(g, st.Active, db)
		gi.Incomplete = db.Groups[g].Incomplete
		info.Boot.Groups[g] = gi
	}
	for _, name := range d.Config.SlotNames() {
		s := d.Config.Slots[name]
		g, _ := d.Config.GroupOfSlot(name)
		si := SlotInfo{Type: s.Type, Group: g, Active: g == st.Active, Device: s.Device, Partition: s.Partition, Handler: s.Handler}
		if s.Path != "" {
			si.Path = rootfs.Join(d.Root, s.Path)
		}
		info.Slots[name] = si
	}
	return info, nil
}

// lastUpdate reports the recorded result, or what became of a recorded trial.
func lastUpdate(db *State, st Status, flow bootflow.Flow) *Result {
	t := db.Trial
	if t == nil {
		return db.LastUpdate
	}
	switch {
	case t.Group == st.Active && st.CommitPending():
		return &Result{Group: t.Group, Status: "on-trial", At: t.RequestedAt,
			Message: fmt.Sprintf("group %s runs on trial; commit it to keep it", t.Group)}
	case t.Group == st.Trial:
		return &Result{Group: t.Group, Status: "trial-pending", At: t.RequestedAt,
			Message: fmt.Sprintf("group %s boots on trial at the next reboot", t.Group)}
	case t.Group == st.Default:
		return &Result{Group: t.Group, Status: "committed", At: t.RequestedAt}
	}
	if _, ok := flow.(bootflow.TrialReader); !ok {
		return &Result{Group: t.Group, Status: "trial-requested", At: t.RequestedAt}
	}
	return &Result{Group: t.Group, Status: "rolled-back", At: t.RequestedAt,
		Message: fmt.Sprintf("the trial of group %s was not committed; the boot loader went back to %s", t.Group, st.Default)}
}

// version returns the installed version of group g and where it comes from.
func (d *Device) version(g, active string, db *State) (string, string) {
	gs, ok := db.Groups[g]
	switch {
	case ok && gs.Incomplete != nil:
		return "", "" // a torn group holds no version, not even the factory one
	case ok && gs.Version != "":
		return gs.Version, "installed"
	}
	if v := d.Config.Groups[g].FactoryVersion; v != "" {
		return v, "factory"
	}
	if g == active {
		if v := osReleaseVersion(d.FS); v != "" {
			return v, "os-release"
		}
	}
	return "", ""
}

// osReleaseVersion reads IMAGE_VERSION, else VERSION_ID, from os-release.
func osReleaseVersion(fsys rootfs.FS) string {
	b, err := fsys.ReadFile("/etc/os-release")
	if err != nil || len(b) > maxProcFile {
		return ""
	}
	vars := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok {
			vars[k] = strings.Trim(v, `"'`)
		}
	}
	if v := vars["IMAGE_VERSION"]; v != "" {
		return v
	}
	return vars["VERSION_ID"]
}
