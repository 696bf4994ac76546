package state

import (
	"strings"
	"testing"
)

// TestReportWriteText checks the text form of state info: an unmanaged
// device, and a managed one with a reset pending, a backup and paths.
func TestReportWriteText(t *testing.T) {
	var b strings.Builder
	if err := (&Report{Status: StatusUnmanaged, Paths: []PathReport{}}).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `status          unmanaged
data partition  none configured (` + ConfigDir + `/*.toml)
trial snapshot  none
reset           not pending
persistent paths  none
`
	if b.String() != want {
		t.Errorf("unmanaged:\n%s\nwant:\n%s", b.String(), want)
	}
	r := &Report{Status: StatusActive, DataPartition: &DataReport{Device: "/dev/sda4", Mount: "/run/tandem/data"}, Overlay: "discard",
		Committed: &GenRef{Gen: 2}, Trial: &GenRef{Group: "b", Gen: 3}, ResetPending: &ResetRequest{KeepBackup: true},
		Backup: &Backup{Gen: 1, Shared: 2},
		Paths:  []PathReport{{Path: "/var/lib/app", Type: "directory", Size: 10}, {Path: "/var/log", Type: "directory", Shared: true}}}
	b.Reset()
	_ = r.WriteText(&b)
	want = `status          active
data partition  /dev/sda4 on /run/tandem/data
overlay         discard
committed       generation 2 (group none yet)
trial snapshot  generation 3 for group b
reset           pending at the next boot (the old state is kept as a backup)
backup          generations 1 and 2 (shared)
persistent paths
  /var/lib/app                   directory, 10 bytes
  /var/log                       directory, shared, 0 bytes
`
	if b.String() != want {
		t.Errorf("active:\n%s\nwant:\n%s", b.String(), want)
	}
}
