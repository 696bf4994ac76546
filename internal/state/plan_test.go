package state

import (
	"strconv"
	"strings"
	"testing"
)

func planConfig(t *testing.T, extra string) *Config {
	t.Helper()
	c, err := Parse([]File{{"/s.toml", []byte("[data-partition]\npartition = 4\n" + extra + "[persist.\"/var/lib/app\"]\n[persist.\"/var/log\"]\nshared = true\n")}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func layoutWith(f func(*Layout)) *Layout {
	l := NewLayout()
	l.Committed.Group = "a"
	if f != nil {
		f(&l)
	}
	return &l
}

// kinds renders the state-changing and mount actions of a plan in short.
func kinds(plan []Action) string {
	var parts []string
	for _, a := range plan {
		s := string(a.Kind)
		switch a.Kind {
		case ActCommit, ActRollback, ActSnapshot, ActAdopt:
			s += " " + a.Group
		case ActOverlay:
			s += " " + a.Mode
		case ActBind:
			s += " " + a.Target + "@" + itoa(a.Gen)
		case ActSeed:
			continue
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestPlan: the mount plan for every combination of what a boot finds.
func TestPlan(t *testing.T) {
	trialB := func(l *Layout) { l.Trial = &GenRef{Group: "b", Gen: 3}; l.Next = 4 }
	binds := func(state, shared int) string {
		return "bind /var/lib/app@" + itoa(state) + ", bind /var/lib/tandem@" + itoa(shared) + ", bind /var/log@" + itoa(shared)
	}
	for _, tc := range []struct {
		name          string
		extra         string
		data          DataStatus
		layout        *Layout
		booting, dflt string
		want          string
	}{
		{"first boot", "", DataMounted, nil, "a", "a",
			"fsck, mount, format, adopt a, overlay discard, " + binds(1, 2)},
		{"steady", "", DataMounted, layoutWith(nil), "a", "a",
			"fsck, mount, collect, overlay discard, " + binds(1, 2)},
		{"trial boot takes a snapshot", "", DataMounted, layoutWith(nil), "b", "a",
			"fsck, mount, snapshot b, collect, overlay discard, " + binds(3, 2)},
		{"second trial attempt keeps the snapshot", "", DataMounted, layoutWith(trialB), "b", "a",
			"fsck, mount, collect, overlay discard, " + binds(3, 2)},
		{"fallback rolls back", "", DataMounted, layoutWith(trialB), "a", "a",
			"fsck, mount, rollback b, collect, overlay discard, " + binds(1, 2)},
		{"committed trial commits its state", "", DataMounted, layoutWith(trialB), "b", "b",
			"fsck, mount, commit b, collect, overlay discard, " + binds(3, 2)},
		{"committed, then a new trial of a", "", DataMounted, layoutWith(trialB), "a", "b",
			"fsck, mount, commit b, snapshot a, collect, overlay discard, " + binds(4, 2)},
		{"three groups: trial of c after b's was given up", "", DataMounted, layoutWith(trialB), "c", "a",
			"fsck, mount, rollback b, snapshot c, collect, overlay discard, " + binds(4, 2)},
		{"forced commit without snapshot adopts", "", DataMounted, layoutWith(nil), "b", "b",
			"fsck, mount, adopt b, collect, overlay discard, " + binds(1, 2)},
		{"reset", "", DataMounted, layoutWith(func(l *Layout) { l.Reset = &ResetRequest{} }), "a", "a",
			"fsck, mount, reset, adopt a, collect, overlay discard, " + binds(3, 4)},
		{"reset during a trial drops the trial", "", DataMounted, layoutWith(func(l *Layout) { trialB(l); l.Reset = &ResetRequest{KeepBackup: true} }), "b", "a",
			"fsck, mount, reset, adopt b, collect, overlay discard, " + binds(4, 5)},
		{"missing partition", "", DataMissing, nil, "a", "a", "warn, overlay discard"},
		{"blank partition, no file system configured", "", DataBlank, nil, "a", "a", "warn, overlay discard"},
		{"blank partition, mkfs", "filesystem = \"ext4\"\n", DataBlank, nil, "a", "a",
			"mkfs, mount, format, adopt a, overlay discard, " + binds(1, 2)},
		{"no fsck, persist overlay", "fsck = false\n", DataMounted, layoutWith(nil), "a", "a",
			"mount, collect, overlay persist, " + binds(1, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := planConfig(t, tc.extra)
			if strings.Contains(tc.name, "persist overlay") {
				c.Overlay = OverlayPersist
			}
			plan := Plan(c, Input{Data: tc.data, Layout: tc.layout, Booting: tc.booting, Default: tc.dflt, DataDir: "/var/lib/tandem"})
			if got := kinds(plan); got != tc.want {
				t.Errorf("plan\n got %s\nwant %s\n%s", got, tc.want, Describe(plan))
			}
		})
	}
}

// TestPlanUnmanaged: without a data partition only the overlay is planned.
func TestPlanUnmanaged(t *testing.T) {
	c := &Config{Overlay: OverlayDiscard}
	if got := kinds(Plan(c, Input{Booting: "a", Default: "a"})); got != "overlay discard" {
		t.Errorf("got %s", got)
	}
	c.Overlay = OverlayDisabled
	if got := Plan(c, Input{Booting: "a", Default: "a"}); len(got) != 0 {
		t.Errorf("got %v", got)
	}
}
