package device

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/state"
)

// WriteText writes info as `tandem system info` prints it without --json
// (docs/cli.md): the boot flow, the groups with their versions and slots,
// the last update, and the state when it is managed.
func (info *Info) WriteText(w io.Writer) error {
	p := &strings.Builder{}
	b := info.Boot
	fmt.Fprintf(p, "boot flow      %s\n", b.BootFlow)
	fmt.Fprintf(p, "active group   %s\n", b.ActiveGroup)
	fmt.Fprintf(p, "default group  %s\n", b.DefaultGroup)
	switch {
	case b.CommitPending:
		fmt.Fprintf(p, "commit         pending: %s runs on trial; `tandem system commit` keeps it, a reboot goes back to %s\n", b.ActiveGroup, b.DefaultGroup)
	default:
		fmt.Fprintf(p, "commit         not pending\n")
	}
	if b.Trial != nil {
		fmt.Fprintf(p, "next boot      %s on trial (%d attempts left)\n", b.Trial.Group, b.Trial.AttemptsLeft)
	}
	spare := strings.Join(b.SpareGroups, ", ")
	if spare == "" {
		spare = "none (commit or roll back before the next update)"
	}
	fmt.Fprintf(p, "spare groups   %s\n", spare)
	fmt.Fprintf(p, "groups\n")
	for _, g := range slices.Sorted(maps.Keys(b.Groups)) {
		gi := b.Groups[g]
		var tags []string
		if g == b.ActiveGroup {
			tags = append(tags, "active")
		}
		if g == b.DefaultGroup {
			tags = append(tags, "default")
		}
		fmt.Fprintf(p, "  %-4s %-18s version %s\n", g, strings.Join(tags, ", "), gi.versionText())
		for _, alias := range slices.Sorted(maps.Keys(gi.Slots)) {
			name := gi.Slots[alias]
			fmt.Fprintf(p, "       %s = %s  %s\n", alias, name, info.Slots[name].where())
		}
	}
	if u := info.LastUpdate; u != nil {
		msg := u.Message
		if msg == "" {
			msg = "group " + u.Group
		}
		fmt.Fprintf(p, "last update    %s: %s\n", u.Status, msg)
	} else {
		fmt.Fprintf(p, "last update    none\n")
	}
	if st := info.State; st != nil && st.Status != state.StatusUnmanaged {
		line := st.Status
		if st.DataPartition != "" {
			line += ", data partition " + st.DataPartition
		}
		if st.Error != "" {
			line += ": " + st.Error
		}
		fmt.Fprintf(p, "state          %s (tandem state info)\n", line)
	}
	_, err := io.WriteString(w, p.String())
	return err
}

// versionText says what a group holds: its version and where that comes
// from, that its install did not finish, or "unknown".
func (gi GroupInfo) versionText() string {
	switch {
	case gi.Incomplete != nil:
		return fmt.Sprintf("incomplete (the install of %s begun %s did not finish; re-run it)",
			gi.Incomplete.Version, gi.Incomplete.StartedAt.Format(time.RFC3339))
	case gi.Version != "":
		return gi.Version + " (" + gi.VersionSource + ")"
	}
	return "unknown"
}

// where says where a slot's data lives: its file, device, partition or handler.
func (s SlotInfo) where() string {
	switch {
	case s.Path != "":
		return s.Type + " " + s.Path
	case s.Device != "":
		return s.Type + " " + s.Device
	case s.Partition != 0:
		return fmt.Sprintf("%s partition %d of the root disk", s.Type, s.Partition)
	}
	return s.Type + " " + strings.Join(s.Handler, " ")
}
