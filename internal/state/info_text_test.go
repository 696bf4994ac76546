package state

import (
	"os"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/rootfs"
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

// TestInspectBootReport: state info reads tandem init's boot report and
// shows a degraded boot (issue 12: "a clear message in system info").
func TestInspectBootReport(t *testing.T) {
	root := t.TempDir()
	fsys := rootfs.NewOS(root)
	if r, err := Inspect(fsys, "/var/lib/tandem", "a"); err != nil || r.Boot != nil {
		t.Fatalf("no report: %+v, %v", r, err)
	}
	if err := fsys.MkdirAll("/run/tandem", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fsys.Path(BootReportPath), []byte(`{"status":"degraded","error":"data partition /dev/sda4 is missing","overlay":"discard","actions":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Inspect(fsys, "/var/lib/tandem", "a")
	if err != nil || r.Boot == nil || r.Boot.Status != BootDegraded {
		t.Fatalf("report: %+v, %v", r, err)
	}
	var b strings.Builder
	_ = r.WriteText(&b)
	if !strings.Contains(b.String(), "this boot       degraded: data partition /dev/sda4 is missing\n") {
		t.Errorf("text:\n%s", b.String())
	}
}
