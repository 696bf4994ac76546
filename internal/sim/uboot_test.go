package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandem-ota/tandem/internal/bootenv/ubootenv"
)

// ubootCopy is one env file: its flag and variables, damaged as asked.
type ubootCopy struct {
	missing bool
	flag    byte
	vars    [][2]string
	torn    bool // one data byte changed: bad CRC
	long    bool // one byte too many
}

func (c ubootCopy) image(t *testing.T) []byte {
	t.Helper()
	env := &ubootenv.Env{}
	for _, kv := range c.vars {
		if err := env.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	img, err := ubootenv.Encode(env, 0x4000, true, c.flag)
	if err != nil {
		t.Fatal(err)
	}
	if c.torn {
		img[100] ^= 0x55
	}
	if c.long {
		img = append(img, 0)
	}
	return img
}

var (
	defA  = [][2]string{{"tandem_default", "a"}}
	defB  = [][2]string{{"tandem_default", "b"}}
	tryB2 = [][2]string{{"tandem_default", "a"}, {"tandem_trial", "b"}, {"tandem_trial_left", "2"}}
	tryB1 = [][2]string{{"tandem_default", "a"}, {"tandem_trial", "b"}, {"tandem_trial_left", "1"}}
)

// TestUBootScriptCases checks the model of boot.cmd against what the real
// U-Boot (Debian's qemu_arm64 build) did with the same two files; the e2e
// test TestUBootScriptMatchesSim runs each case on both.
func TestUBootScriptCases(t *testing.T) {
	for _, tc := range []struct {
		name     string
		c0, c1   ubootCopy
		group    string
		written  int    // index of the copy rewritten, -1: none
		wantFlag byte   // its new flag
		wantLeft string // its new count
	}{
		{"flag wrap: 0 beats 255", ubootCopy{flag: 255, vars: tryB2}, ubootCopy{flag: 0, vars: defB}, "b", -1, 0, ""},
		{"flag wrap, other order", ubootCopy{flag: 0, vars: defB}, ubootCopy{flag: 255, vars: tryB2}, "b", -1, 0, ""},
		{"torn newer copy", ubootCopy{flag: 5, vars: tryB2, torn: true}, ubootCopy{flag: 4, vars: defA}, "a", -1, 0, ""},
		{"trial in the newer second copy", ubootCopy{flag: 6, vars: defA}, ubootCopy{flag: 7, vars: tryB1}, "b", 0, 8, "0"},
		{"trial in the first copy, counts into the second", ubootCopy{flag: 1, vars: tryB2}, ubootCopy{flag: 0, vars: defA}, "b", 1, 2, "1"},
		{"flag 255 counts into flag 0", ubootCopy{flag: 255, vars: tryB2}, ubootCopy{flag: 254, vars: defA}, "b", 1, 0, "1"},
		{"target copy missing: no count down, default", ubootCopy{flag: 6, vars: tryB1}, ubootCopy{missing: true}, "a", -1, 0, ""},
		{"target copy too long: default", ubootCopy{flag: 9, vars: defB, long: true}, ubootCopy{flag: 2, vars: tryB2}, "a", -1, 0, ""},
		{"both torn: first group", ubootCopy{flag: 6, vars: defB, torn: true}, ubootCopy{flag: 6, vars: defB, torn: true}, "a", -1, 0, ""},
		{"equal flags: first copy", ubootCopy{flag: 3, vars: defB}, ubootCopy{flag: 3, vars: defA}, "b", -1, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := New(dir, Options{BootFlow: "uboot"}); err != nil {
				t.Fatal(err)
			}
			files := []string{filepath.Join(dir, "boot", "uboot.env"), filepath.Join(dir, "boot", "uboot-redund.env")}
			var before [2][]byte
			for i, c := range []ubootCopy{tc.c0, tc.c1} {
				if c.missing {
					if err := os.Remove(files[i]); err != nil {
						t.Fatal(err)
					}
					continue
				}
				before[i] = c.image(t)
				if err := os.WriteFile(files[i], before[i], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			group, notes, err := Reboot(dir, false)
			if err != nil {
				t.Fatal(err)
			}
			if group != tc.group {
				t.Errorf("booted %s, want %s (notes %q)", group, tc.group, notes)
			}
			for i, f := range files {
				after, _ := os.ReadFile(f)
				if i != tc.written {
					if !bytes.Equal(after, before[i]) {
						t.Errorf("copy %d changed", i)
					}
					continue
				}
				env, flag, err := ubootenv.Decode(after, true)
				if err != nil {
					t.Fatalf("copy %d: %v", i, err)
				}
				left, _ := env.Get("tandem_trial_left")
				if flag != tc.wantFlag || left != tc.wantLeft || len(env.Names()) != 3 {
					t.Errorf("copy %d: flag %d, tandem_trial_left %q, variables %q; want flag %d, %q and tandem's three", i, flag, left, env.Names(), tc.wantFlag, tc.wantLeft)
				}
			}
		})
	}
}
