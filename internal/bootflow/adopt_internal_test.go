package bootflow

import (
	"maps"
	"testing"

	"github.com/tandem-ota/tandem/internal/config"
)

// memStore is an environment in memory.
type memStore struct{ env map[string]string }

func (m *memStore) load() (map[string]string, error) { return maps.Clone(m.env), nil }

func (m *memStore) save(vars [][2]string) error {
	for _, kv := range vars {
		if kv[1] == "" {
			delete(m.env, kv[0])
		} else {
			m.env[kv[0]] = kv[1]
		}
	}
	return nil
}

func raucUBoot(env map[string]string) (*raucFlow, *memStore) {
	s := &memStore{env: env}
	return &raucFlow{name: config.FlowRAUCUBoot, store: s, vars: raucUBootVars{}, groups: []string{"a", "b"},
		names: map[string]string{"a": "A", "b": "B"}, attempts: 2}, s
}

// The reading of RAUC's variables, state by state.
func TestRAUCStates(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		def, trial string
		left       int
		bad        bool
	}{
		{"committed", map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}, "a", "", 0, false},
		{"committed, attempts spent", map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "1", "BOOT_B_LEFT": "0"}, "a", "", 0, false},
		{"trial pending", map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2"}, "a", "b", 2, false},
		{"trial used up", map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}, "a", "", 0, false},
		// RAUC itself keeps both slots good: tandem reads the first as a trial
		// until it is committed (docs/migrating.md).
		{"RAUC's own good state", map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}, "a", "b", 3, false},
		{"script defaults", map[string]string{}, "b", "a", 3, false},
		{"unknown bootname", map[string]string{"BOOT_ORDER": "A C", "BOOT_A_LEFT": "3"}, "", "", 0, true},
		{"nothing may boot", map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "x"}, "", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := raucUBoot(tt.env)
			def, err := f.Default()
			if (err != nil) != tt.bad {
				t.Fatalf("Default: %v", err)
			}
			if tt.bad {
				return
			}
			g, left, err := f.Trial()
			if err != nil || def != tt.def || g != tt.trial || left != tt.left {
				t.Fatalf("default %q, trial %q (%d), %v; want %q, %q (%d)", def, g, left, err, tt.def, tt.trial, tt.left)
			}
		})
	}
}

// Refresh marks the default good again, keeps a pending trial and kills a
// trial that was tried and not committed; it writes nothing when all is well.
func TestRAUCRefresh(t *testing.T) {
	f, s := raucUBoot(map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0"})
	if wrote, err := f.Refresh("a"); err != nil || !wrote || s.env["BOOT_A_LEFT"] != "3" {
		t.Fatalf("refresh: %v %v %v", wrote, err, s.env)
	}
	if wrote, err := f.Refresh("a"); err != nil || wrote {
		t.Fatalf("second refresh wrote: %v %v", wrote, err)
	}
	if err := f.TryNext("b"); err != nil {
		t.Fatal(err)
	}
	if s.env["BOOT_ORDER"] != "B A" || s.env["BOOT_B_LEFT"] != "2" {
		t.Fatalf("try-next: %v", s.env)
	}
	s.env["BOOT_A_LEFT"] = "1"
	if _, err := f.Refresh("a"); err != nil || s.env["BOOT_B_LEFT"] != "2" || s.env["BOOT_ORDER"] != "B A" || s.env["BOOT_A_LEFT"] != "3" {
		t.Fatalf("refresh dropped the pending trial: %v %v", err, s.env)
	}
	// A trial of b that booted once and failed: B_LEFT spent, then a's boot.
	s.env["BOOT_B_LEFT"] = "0"
	if _, err := f.Refresh("a"); err != nil {
		t.Fatal(err)
	}
	if g, _, _ := f.Trial(); g != "" || s.env["BOOT_B_LEFT"] != "0" {
		t.Fatalf("after refresh: trial %q, %v", g, s.env)
	}
}

// FuzzRAUCState reads arbitrary values of RAUC's variables: never a panic,
// and a state that reads is one tandem can write back and read again.
func FuzzRAUCState(f *testing.F) {
	f.Add("A B", "3", "0", "0", "0")
	f.Add("B A", "1", "3", "1", "1")
	f.Add("", "x", "", "", "2")
	f.Fuzz(func(t *testing.T, order, a, b, aTry, bTry string) {
		for _, grub := range []bool{false, true} {
			env := map[string]string{"BOOT_ORDER": order, "ORDER": order, "BOOT_A_LEFT": a, "BOOT_B_LEFT": b,
				"A_OK": a, "B_OK": b, "A_TRY": aTry, "B_TRY": bTry}
			fl, s := raucUBoot(env)
			if grub {
				fl.vars, fl.name = raucGrubVars{}, config.FlowRAUCGrub
			}
			def, err := fl.Default()
			if err != nil {
				continue
			}
			if err := fl.Commit(def); err != nil {
				t.Fatalf("commit %s: %v", def, err)
			}
			if got, err := fl.Default(); err != nil || got != def {
				t.Fatalf("after commit of %s: default %q, %v (%v)", def, got, err, s.env)
			}
		}
	})
}
