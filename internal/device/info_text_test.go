package device

import (
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/state"
)

// TestInfoWriteText checks the text form of system info: groups and slots
// in name order, the tags, an incomplete group and the last update.
func TestInfoWriteText(t *testing.T) {
	started := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	info := &Info{
		Boot: BootInfo{BootFlow: "grub", ActiveGroup: "b", DefaultGroup: "a", CommitPending: true,
			Trial: &TrialInfo{Group: "b", AttemptsLeft: 1},
			Groups: map[string]GroupInfo{
				"b": {Slots: map[string]string{"system": "system-b", "boot": "boot-b"}, Version: "2.0.0", VersionSource: "installed"},
				"a": {Slots: map[string]string{"system": "system-a"}, Incomplete: &Writing{Version: "3.0.0", StartedAt: started}},
			}},
		Slots: map[string]SlotInfo{
			"system-a": {Type: "file", Path: "/slots/a"},
			"system-b": {Type: "block", Device: "/dev/sda3"},
			"boot-b":   {Type: "block", Partition: 2},
		},
		LastUpdate: &Result{Group: "b", Status: "installed"},
	}
	var b strings.Builder
	if err := info.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `boot flow      grub
active group   b
default group  a
commit         pending: b runs on trial; ` + "`tandem system commit`" + ` keeps it, a reboot goes back to a
next boot      b on trial (1 attempts left)
spare groups   none (commit or roll back before the next update)
groups
  a    default            version incomplete (the install of 3.0.0 begun 2025-01-02T03:04:05Z did not finish; re-run it)
       system = system-a  file /slots/a
  b    active             version 2.0.0 (installed)
       boot = boot-b  block partition 2 of the root disk
       system = system-b  block /dev/sda3
last update    installed: group b
`
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	info.LastUpdate, info.Boot.SpareGroups = nil, []string{"a"}
	b.Reset()
	_ = info.WriteText(&b)
	for _, line := range []string{"spare groups   a\n", "last update    none\n"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("missing %q in:\n%s", line, b.String())
		}
	}
}

// TestInfoTextState: system info shows managed state, and why a boot is
// degraded (issue 12: "a clear message in system info").
func TestInfoTextState(t *testing.T) {
	var b strings.Builder
	info := &Info{Boot: BootInfo{Groups: map[string]GroupInfo{}}, State: &state.Summary{Status: state.StatusDegraded, DataPartition: "/dev/sda4", Error: "no recognised file system on /dev/sda4"}}
	if err := info.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if want := "state          degraded, data partition /dev/sda4: no recognised file system on /dev/sda4 (tandem state info)\n"; !strings.Contains(b.String(), want) {
		t.Errorf("got:\n%s\nwant a line %q", b.String(), want)
	}
}
