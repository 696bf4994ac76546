package ubootenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/testutil"
)

// These tests drive libubootenv 0.3.2's fw_printenv/fw_setenv and
// mkenvimage. fw_env.config lines are "DEVICE OFFSET SIZE [SECTORSIZE
// [SECTORS]]", read with sscanf("%ms %lli %zx %zx %lx"): the offset is a C
// integer (decimal, 0x hex or 0 octal) but the size is always hexadecimal,
// with or without 0x; a path not under /dev/mtd or /dev/ubi is a plain file;
// '#' in column 0 starts a comment; a second line makes the environment
// redundant. The tools take an exclusive flock on /var/lock/fw_printenv.lock
// (created if missing; 0.3.2 ignores a failure to open it), which serialises
// them across test processes but needs no setup.

const imgSize = 0x1000

func runTool(t *testing.T, tool string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(tool, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %q: %v: %s", filepath.Base(tool), args, err, stderr.String())
	}
	return stdout.String()
}

// fwEnv is one environment on disk: one image file per copy and the
// fw_env.config that points at them.
type fwEnv struct {
	config string
	copies []string
}

func newFwEnv(t *testing.T, redundant bool) fwEnv {
	t.Helper()
	dir := t.TempDir()
	e := fwEnv{config: filepath.Join(dir, "fw_env.config")}
	cfg := "# device offset size\n"
	n := 1
	if redundant {
		n = 2
	}
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("env%d.bin", i))
		e.copies = append(e.copies, p)
		cfg += fmt.Sprintf("%s 0 0x%x\n", p, imgSize)
	}
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e fwEnv) write(t *testing.T, i int, img []byte) {
	t.Helper()
	if err := os.WriteFile(e.copies[i], img, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e fwEnv) read(t *testing.T, i int) []byte {
	t.Helper()
	b, err := os.ReadFile(e.copies[i])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// printenvOutput is what fw_printenv prints for vs: libubootenv keeps its
// variables sorted by name (strcmp order).
func printenvOutput(vs []kv) string {
	vs = slices.Clone(vs)
	slices.SortFunc(vs, func(a, b kv) int { return strings.Compare(a.name, b.name) })
	out := ""
	for _, v := range vs {
		out += v.name + "=" + v.value + "\n"
	}
	return out
}

func sorted(vs []kv) []kv {
	vs = slices.Clone(vs)
	slices.SortFunc(vs, func(a, b kv) int { return strings.Compare(a.name, b.name) })
	return vs
}

var testVars = []kv{
	{"bootcmd", "run distro_bootcmd; echo done"},
	{"slot", "a"},
	{"eq", "k=v=w"},
	{"empty", ""},
	{"bs", `C:\dir\`},
	{"nl", "line1\nline2"},
	{"BOOT_ORDER", "A B"},
}

func TestEncodeReadByFwPrintenv(t *testing.T) {
	printenv := testutil.NeedTool(t, "fw_printenv")
	for _, redundant := range []bool{false, true} {
		t.Run(fmt.Sprintf("redundant=%v", redundant), func(t *testing.T) {
			fe := newFwEnv(t, redundant)
			img, err := Encode(build(t, testVars), imgSize, redundant, 3)
			if err != nil {
				t.Fatal(err)
			}
			fe.write(t, 0, img)
			if redundant {
				// An older copy with other content must be ignored.
				old, err := Encode(build(t, []kv{{"slot", "old"}}), imgSize, true, 2)
				if err != nil {
					t.Fatal(err)
				}
				fe.write(t, 1, old)
			}
			got := runTool(t, printenv, "-c", fe.config)
			if want := printenvOutput(testVars); got != want {
				t.Errorf("fw_printenv =\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestFwSetenvReadByDecode(t *testing.T) {
	setenv := testutil.NeedTool(t, "fw_setenv")
	initial := []kv{{"slot", "a"}, {"keep", "1"}, {"gone", "x"}}
	script := "# set several at once; name=value, empty value deletes\n" +
		"upgrade_available=1\nbootcount=0\nslot=b\ngone=\n"
	after := []kv{{"slot", "b"}, {"keep", "1"}, {"spaced", "a b = c"}, {"upgrade_available", "1"}, {"bootcount", "0"}}

	t.Run("single", func(t *testing.T) {
		fe := newFwEnv(t, false)
		img, err := Encode(build(t, initial), imgSize, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		fe.write(t, 0, img)
		runTool(t, setenv, "-c", fe.config, "spaced", "a b = c")
		e, _, err := Decode(fe.read(t, 0), false)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := e.Get("spaced"); !ok || v != "a b = c" {
			t.Errorf("spaced = %q, %v", v, ok)
		}
		scriptPath := filepath.Join(t.TempDir(), "script")
		if err := os.WriteFile(scriptPath, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		runTool(t, setenv, "-c", fe.config, "-s", scriptPath)
		e, _, err = Decode(fe.read(t, 0), false)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := vars(e), sorted(after); !reflect.DeepEqual(got, want) {
			t.Errorf("vars =\n%q\nwant\n%q", got, want)
		}
	})

	t.Run("redundant", func(t *testing.T) {
		printenv := testutil.NeedTool(t, "fw_printenv")
		fe := newFwEnv(t, true)
		cur, err := Encode(build(t, initial), imgSize, true, 5)
		if err != nil {
			t.Fatal(err)
		}
		old, err := Encode(build(t, []kv{{"slot", "old"}}), imgSize, true, 4)
		if err != nil {
			t.Fatal(err)
		}
		fe.write(t, 0, cur)
		fe.write(t, 1, old)

		check := func(step string, wantIndex int, wantFlag byte, want []kv) {
			t.Helper()
			index, e, flag, err := SelectRedundant(fe.read(t, 0), fe.read(t, 1))
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			if index != wantIndex || flag != wantFlag {
				t.Errorf("%s: index, flag = %d, %d; want %d, %d", step, index, flag, wantIndex, wantFlag)
			}
			if got := vars(e); !reflect.DeepEqual(got, sorted(want)) {
				t.Errorf("%s: vars =\n%q\nwant\n%q", step, got, sorted(want))
			}
			if got := runTool(t, printenv, "-c", fe.config); got != printenvOutput(want) {
				t.Errorf("%s: fw_printenv =\n%s\nwant\n%s", step, got, printenvOutput(want))
			}
		}

		runTool(t, setenv, "-c", fe.config, "spaced", "a b = c")
		check("setenv", 1, NextFlag(5), append(slices.Clone(initial), kv{"spaced", "a b = c"}))

		scriptPath := filepath.Join(t.TempDir(), "script")
		if err := os.WriteFile(scriptPath, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		runTool(t, setenv, "-c", fe.config, "-s", scriptPath)
		check("script", 0, NextFlag(NextFlag(5)), after)
	})

	t.Run("flag wraps", func(t *testing.T) {
		fe := newFwEnv(t, true)
		cur, err := Encode(build(t, initial), imgSize, true, 255)
		if err != nil {
			t.Fatal(err)
		}
		old, err := Encode(build(t, []kv{{"slot", "old"}}), imgSize, true, 254)
		if err != nil {
			t.Fatal(err)
		}
		fe.write(t, 0, cur)
		fe.write(t, 1, old)
		runTool(t, setenv, "-c", fe.config, "slot", "wrapped")
		index, e, flag, err := SelectRedundant(fe.read(t, 0), fe.read(t, 1))
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := e.Get("slot"); index != 1 || flag != 0 || v != "wrapped" {
			t.Errorf("index, flag, slot = %d, %d, %q; want 1, 0, \"wrapped\"", index, flag, v)
		}
	})
}

func TestMkenvimage(t *testing.T) {
	mkenvimage := testutil.NeedTool(t, "mkenvimage")
	// mkenvimage skips blank lines and '#' lines and turns a backslash at
	// the end of a line into an embedded newline; other backslashes stay.
	input := "# comment\n\nslot=b\nbootcmd=run a; run b\neq=k=v\nbs=C:\\dir\nnl=one\\\ntwo\nBOOT_ORDER=B A\n"
	want := []kv{{"slot", "b"}, {"bootcmd", "run a; run b"}, {"eq", "k=v"}, {"bs", `C:\dir`}, {"nl", "one\ntwo"}, {"BOOT_ORDER", "B A"}}
	dir := t.TempDir()
	in := filepath.Join(dir, "env.txt")
	if err := os.WriteFile(in, []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, redundant := range []bool{false, true} {
		for _, pad := range []int{-1, 0, 0x5a} {
			t.Run(fmt.Sprintf("redundant=%v/pad=%d", redundant, pad), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "env.bin")
				args := []string{"-s", fmt.Sprint(imgSize), "-o", out}
				if redundant {
					args = append(args, "-r")
				}
				if pad >= 0 {
					args = append(args, "-p", fmt.Sprint(pad))
				}
				runTool(t, mkenvimage, append(args, in)...)
				img, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				e, flag, err := Decode(img, redundant)
				if err != nil {
					t.Fatal(err)
				}
				if got := vars(e); !reflect.DeepEqual(got, want) {
					t.Errorf("vars =\n%q\nwant\n%q", got, want)
				}
				var wantFlag byte
				if redundant {
					wantFlag = 1 // mkenvimage -r always writes flag 1
				}
				if flag != wantFlag {
					t.Errorf("flag = %d, want %d", flag, wantFlag)
				}
				padByte := byte(0xff) // mkenvimage's default fill
				if pad >= 0 {
					padByte = byte(pad)
				}
				ours, err := EncodePad(e, imgSize, redundant, flag, padByte)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ours, img) {
					t.Errorf("EncodePad differs from mkenvimage output")
				}
				if pad == 0 {
					ours, err := Encode(e, imgSize, redundant, flag)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(ours, img) {
						t.Errorf("Encode differs from mkenvimage -p 0 output")
					}
				}
			})
		}
	}
}

// TestTornCopy overwrites half of the newer copy with garbage, as an
// interrupted write would, and checks that fw_printenv and SelectRedundant
// both fall back to the other copy, and that fw_setenv then repairs it.
func TestTornCopy(t *testing.T) {
	printenv := testutil.NeedTool(t, "fw_printenv")
	setenv := testutil.NeedTool(t, "fw_setenv")
	older := []kv{{"slot", "a"}, {"n", "1"}}
	newer := []kv{{"slot", "b"}, {"n", "2"}}
	for torn := range 2 {
		t.Run(fmt.Sprintf("copy%d", torn), func(t *testing.T) {
			fe := newFwEnv(t, true)
			good := 1 - torn
			// The torn copy is the newer one (flag 8 vs 7).
			tornImg, err := Encode(build(t, newer), imgSize, true, 8)
			if err != nil {
				t.Fatal(err)
			}
			goodImg, err := Encode(build(t, older), imgSize, true, 7)
			if err != nil {
				t.Fatal(err)
			}
			for i := imgSize / 2; i < imgSize; i++ {
				tornImg[i] = byte(i * 7)
			}
			fe.write(t, torn, tornImg)
			fe.write(t, good, goodImg)

			if got, want := runTool(t, printenv, "-c", fe.config), printenvOutput(older); got != want {
				t.Errorf("fw_printenv =\n%s\nwant\n%s", got, want)
			}
			index, e, flag, err := SelectRedundant(fe.read(t, 0), fe.read(t, 1))
			if err != nil {
				t.Fatal(err)
			}
			if index != good || flag != 7 || !reflect.DeepEqual(vars(e), older) {
				t.Errorf("SelectRedundant = %d, %d, %q; want %d, 7, %q", index, flag, vars(e), good, older)
			}

			// fw_setenv writes over the torn copy with flag 8.
			runTool(t, setenv, "-c", fe.config, "n", "3")
			index, e, flag, err = SelectRedundant(fe.read(t, 0), fe.read(t, 1))
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := e.Get("n"); index != torn || flag != 8 || v != "3" {
				t.Errorf("after fw_setenv: index, flag, n = %d, %d, %q; want %d, 8, \"3\"", index, flag, v, torn)
			}
		})
	}
}
