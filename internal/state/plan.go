package state

import (
	"fmt"
	"path"
	"strings"
)

// DataStatus is what the boot found where the data partition should be.
type DataStatus int

const (
	// DataMounted: the partition holds a file system (fsck and mount follow).
	DataMounted DataStatus = iota
	// DataBlank: the partition exists and holds no file system.
	DataBlank
	// DataMissing: no such partition, or it cannot be checked or mounted.
	DataMissing
)

var dataStatusNames = [...]string{"mounted", "blank", "missing"}

func (d DataStatus) String() string { return dataStatusNames[d] }

// Input is what the mount plan depends on, all read before the plan runs.
type Input struct {
	Data DataStatus
	// Layout is the journal on the data partition; nil when the partition
	// has none yet (blank, or formatted without a layout).
	Layout *Layout
	// Booting is the group this boot starts; Default the boot loader's
	// default (Booting != Default: the group is on trial).
	Booting, Default string
	// DataDir is system.toml's data-dir (tandem's own state, always a
	// shared persistent path).
	DataDir string
}

// Kind is the kind of a plan action.
type Kind string

// Action kinds, in the order a plan uses them.
const (
	ActWarn     Kind = "warn"     // report a degraded boot (Message)
	ActMkfs     Kind = "mkfs"     // make Filesystem on Device (first boot)
	ActFsck     Kind = "fsck"     // check Device
	ActMount    Kind = "mount"    // mount Device on Target
	ActFormat   Kind = "format"   // create the state layout
	ActReset    Kind = "reset"    // perform the pending factory reset (KeepBackup)
	ActCommit   Kind = "commit"   // the trial's state becomes the state (Group)
	ActRollback Kind = "rollback" // drop the trial's state (Group)
	ActSnapshot Kind = "snapshot" // copy the committed state for Group's trial
	ActAdopt    Kind = "adopt"    // the committed state belongs to Group
	ActCollect  Kind = "collect"  // remove generations the journal does not name
	ActOverlay  Kind = "overlay"  // writable layer over / (Mode; Source: upper for persist)
	ActSeed     Kind = "seed"     // make Path exist in generation Gen, from the system image
	ActBind     Kind = "bind"     // bind-mount Source on Target (Path's kind)
)

// Action is one step of a mount plan.
type Action struct {
	Kind       Kind   `json:"kind"`
	Device     string `json:"device,omitempty"`
	Filesystem string `json:"filesystem,omitempty"`
	Group      string `json:"group,omitempty"`
	KeepBackup bool   `json:"keepBackup,omitempty"`
	Mode       string `json:"mode,omitempty"`
	Path       *Path  `json:"path,omitempty"`
	Gen        int    `json:"gen,omitempty"`
	Source     string `json:"source,omitempty"`
	Target     string `json:"target,omitempty"`
	Message    string `json:"message,omitempty"`
}

// String renders the action as one line of `tandem state info`.
func (a Action) String() string {
	switch a.Kind {
	case ActWarn:
		return "warn: " + a.Message
	case ActMkfs:
		return fmt.Sprintf("mkfs %s on %s", a.Filesystem, a.Device)
	case ActFsck:
		return "fsck " + a.Device
	case ActMount:
		return fmt.Sprintf("mount %s on %s", a.Device, a.Target)
	case ActReset:
		if a.KeepBackup {
			return "reset the state (keep a backup)"
		}
		return "reset the state"
	case ActCommit, ActRollback, ActSnapshot, ActAdopt:
		return fmt.Sprintf("%s state for group %s", a.Kind, a.Group)
	case ActOverlay:
		if a.Source != "" {
			return fmt.Sprintf("overlay %s on / (upper %s)", a.Mode, a.Source)
		}
		return fmt.Sprintf("overlay %s on /", a.Mode)
	case ActSeed:
		return fmt.Sprintf("seed %s %s in generation %d", a.Path.Kind, a.Path.Path, a.Gen)
	case ActBind:
		return fmt.Sprintf("bind %s on %s", a.Source, a.Target)
	}
	return string(a.Kind)
}

// DeviceName is how the plan names the data partition: its device, its
// label (/dev/disk/by-label/...) or "partition N of the root disk".
func (d *DataPartition) DeviceName() string {
	switch {
	case d.Device != "":
		return d.Device
	case d.Label != "":
		return "/dev/disk/by-label/" + d.Label
	}
	return fmt.Sprintf("partition %d of the root disk", d.Partition)
}

// Plan computes the mount plan of one boot: a pure function of the state
// configuration and what the boot found. The actions are in the order to
// run them; the state transitions among them (format, reset, commit,
// rollback, snapshot, adopt) are applied by a Store, the mounts by init
// (or, on a simulated device, by folder operations).
//
// The trial rules follow the boot loader, the only source of truth about
// commits: a snapshot whose group is now the default was committed (even if
// the power failed before the state commit was recorded); a snapshot whose
// group is not booting was rolled back; a group booting on trial without a
// snapshot gets one. A data partition that is missing, cannot be mounted
// or is blank without a configured file system gives a boot with the
// overlay discarded and no persistent paths — never no boot.
func Plan(c *Config, in Input) []Action {
	if c.Data == nil {
		if c.Overlay == OverlayDisabled {
			return nil
		}
		return []Action{{Kind: ActOverlay, Mode: OverlayDiscard}}
	}
	d := c.Data
	dev := d.DeviceName()
	var plan []Action
	degraded := func(why string) []Action {
		return append(plan,
			Action{Kind: ActWarn, Message: fmt.Sprintf("the data partition (%s) %s: the state is not mounted; booting with the overlay discarded", dev, why)},
			Action{Kind: ActOverlay, Mode: OverlayDiscard})
	}
	switch in.Data {
	case DataMissing:
		return degraded("is missing or cannot be mounted")
	case DataBlank:
		if d.Filesystem == "" {
			return degraded("holds no file system and none is configured")
		}
		plan = append(plan, Action{Kind: ActMkfs, Device: dev, Filesystem: d.Filesystem})
	}
	if d.Fsck && in.Data == DataMounted {
		plan = append(plan, Action{Kind: ActFsck, Device: dev})
	}
	plan = append(plan, Action{Kind: ActMount, Device: dev, Target: d.Mount})

	var l Layout
	if in.Layout == nil || in.Data == DataBlank {
		plan = append(plan, Action{Kind: ActFormat})
		l = NewLayout()
	} else {
		l = in.Layout.clone()
	}
	changed := false
	if l.Reset != nil {
		plan = append(plan, Action{Kind: ActReset, KeepBackup: l.Reset.KeepBackup})
		l = l.afterReset()
		changed = true
	}
	if t := l.Trial; t != nil {
		switch {
		case t.Group == in.Default:
			plan = append(plan, Action{Kind: ActCommit, Group: t.Group})
			l, _ = l.afterCommit()
			changed = true
		case t.Group != in.Booting:
			plan = append(plan, Action{Kind: ActRollback, Group: t.Group})
			l, _ = l.afterRollback()
			changed = true
		}
	}
	if l.Trial == nil && l.Committed.Group != in.Booting {
		if in.Booting == in.Default || l.Committed.Group == "" {
			plan = append(plan, Action{Kind: ActAdopt, Group: in.Booting})
			l = l.afterAdopt(in.Booting)
		} else {
			plan = append(plan, Action{Kind: ActSnapshot, Group: in.Booting})
			l, _ = l.afterSnapshot(in.Booting)
			changed = true
		}
	}
	// Collect at every boot that found a layout, not only after a change:
	// a transition a power cut interrupted before its journal write left
	// garbage that no redo may remove (a trial's snapshot cut short, and the
	// boot loader then fell back). It costs a directory read.
	if changed || in.Layout != nil {
		plan = append(plan, Action{Kind: ActCollect})
	}
	layout := path.Join(d.Mount, LayoutDir)
	switch c.Overlay {
	case OverlayPersist:
		plan = append(plan, Action{Kind: ActOverlay, Mode: OverlayPersist, Source: path.Join(layout, "overlay", in.Booting)})
	case OverlayDiscard:
		plan = append(plan, Action{Kind: ActOverlay, Mode: OverlayDiscard})
	}
	for _, p := range c.WithDataDir(in.DataDir) {
		gen := l.Current(in.Booting)
		if p.Shared {
			gen = l.Shared
		}
		p := p
		plan = append(plan,
			Action{Kind: ActSeed, Path: &p, Gen: gen},
			Action{Kind: ActBind, Path: &p, Gen: gen, Source: path.Join(layout, genName(gen), p.Path), Target: p.Path})
	}
	return plan
}

// Transitions returns how many actions of plan change the state layout.
func Transitions(plan []Action) int {
	n := 0
	for _, a := range plan {
		switch a.Kind {
		case ActFormat, ActReset, ActCommit, ActRollback, ActSnapshot, ActAdopt:
			n++
		}
	}
	return n
}

// Describe renders a plan, one action a line.
func Describe(plan []Action) string {
	var b strings.Builder
	for _, a := range plan {
		b.WriteString(a.String())
		b.WriteByte('\n')
	}
	return b.String()
}
