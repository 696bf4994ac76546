package state

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes r as `tandem state info` prints it without --json: the
// status, the data partition and overlay, the committed generation and the
// trial snapshot, a pending reset, a backup, and the persistent paths with
// their sizes.
func (r *Report) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "status          %s\n", r.Status)
	if r.Boot != nil && r.Boot.Status != BootOK {
		fmt.Fprintf(b, "this boot       %s: %s\n", r.Boot.Status, r.Boot.Error)
	}
	if r.DataPartition == nil {
		fmt.Fprintf(b, "data partition  none configured (%s/*.toml)\n", ConfigDir)
	} else {
		fmt.Fprintf(b, "data partition  %s on %s\n", r.DataPartition.Device, r.DataPartition.Mount)
		fmt.Fprintf(b, "overlay         %s\n", r.Overlay)
	}
	if r.Committed != nil {
		group := r.Committed.Group
		if group == "" {
			group = "none yet"
		}
		fmt.Fprintf(b, "committed       generation %d (group %s)\n", r.Committed.Gen, group)
	}
	if r.Trial != nil {
		fmt.Fprintf(b, "trial snapshot  generation %d for group %s\n", r.Trial.Gen, r.Trial.Group)
	} else {
		fmt.Fprintf(b, "trial snapshot  none\n")
	}
	switch {
	case r.ResetPending == nil:
		fmt.Fprintf(b, "reset           not pending\n")
	case r.ResetPending.KeepBackup:
		fmt.Fprintf(b, "reset           pending at the next boot (the old state is kept as a backup)\n")
	default:
		fmt.Fprintf(b, "reset           pending at the next boot\n")
	}
	if r.Backup != nil {
		fmt.Fprintf(b, "backup          generations %d and %d (shared)\n", r.Backup.Gen, r.Backup.Shared)
	}
	if len(r.Paths) == 0 {
		fmt.Fprintf(b, "persistent paths  none\n")
	} else {
		fmt.Fprintf(b, "persistent paths\n")
	}
	for _, p := range r.Paths {
		shared := ""
		if p.Shared {
			shared = ", shared"
		}
		fmt.Fprintf(b, "  %-30s %s%s, %d bytes\n", p.Path, p.Type, shared, p.Size)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
