package grubenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tandem-ota/tandem/internal/testutil"
)

func editenv(t *testing.T, tool string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(tool, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("grub-editenv %q: %v: %s", args, err, stderr.String())
	}
	return stdout.String()
}

// TestEncodeReadByGrubEditenv checks that grub-editenv lists exactly the
// variables of every block Encode produces.
func TestEncodeReadByGrubEditenv(t *testing.T) {
	tool := testutil.NeedTool(t, "grub-editenv")
	cases := []struct {
		name string
		size int
		vars []kv
	}{
		{"empty", BlockSize, nil},
		{"plain", BlockSize, []kv{{"next_entry", "slot_b"}, {"boot_count", "0"}}},
		{"special", BlockSize, []kv{
			{"spaces", "a b  c"}, {"eq", "k=v=w"}, {"bs", `C:\dir\`}, {"nl", "line1\nline2\n"},
			{"empty", ""}, {"utf8", "größe"}, {`name\bs`, "x"},
		}},
		{"2048", 2048, []kv{{"a", "1"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e Env
			want := ""
			for _, v := range c.vars {
				if err := e.Set(v.name, v.value); err != nil {
					t.Fatal(err)
				}
				want += v.name + "=" + v.value + "\n"
			}
			b, err := e.Encode(c.size)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "grubenv")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if got := editenv(t, tool, path, "list"); got != want {
				t.Errorf("grub-editenv list =\n%q\nwant\n%q", got, want)
			}
		})
	}
}

// TestParseGrubEditenvFile checks that blocks written by grub-editenv parse to
// the variables it was given and that Encode reproduces them byte for byte,
// also after the same set/unset operations on both sides.
func TestParseGrubEditenvFile(t *testing.T) {
	tool := testutil.NeedTool(t, "grub-editenv")
	path := filepath.Join(t.TempDir(), "grubenv")
	editenv(t, tool, path, "create")
	set := []kv{
		{"saved_entry", "slot_a"}, {"spaces", "a b  c"}, {"eq", "k=v=w"},
		{"bs", `C:\dir\`}, {"nl", "line1\nline2"}, {"empty", ""}, {"trailing_nl", "x\n"},
	}
	args := []string{path, "set"}
	for _, v := range set {
		args = append(args, v.name+"="+v.value)
	}
	editenv(t, tool, args...)

	check := func(step string, want []kv, ours *Env) {
		t.Helper()
		file, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Parse(file)
		if err != nil {
			t.Fatalf("%s: Parse: %v", step, err)
		}
		if got := vars(e); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: vars =\n%q\nwant\n%q", step, got, want)
		}
		for _, env := range []*Env{e, ours} {
			out, err := env.Encode(len(file))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, file) {
				t.Errorf("%s: Encode differs from grub-editenv's file\n got %q\nwant %q", step, out, file)
			}
		}
	}

	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	check("set", set, ours)

	// Same edits with grub-editenv and with Env: grow a value in place,
	// shrink another, delete one, add one.
	editenv(t, tool, path, "set", "saved_entry=slot_b_longer", "eq=")
	editenv(t, tool, path, "unset", "spaces", "missing")
	editenv(t, tool, path, "set", "new=1")
	for _, v := range []kv{{"saved_entry", "slot_b_longer"}, {"eq", ""}} {
		if err := ours.Set(v.name, v.value); err != nil {
			t.Fatal(err)
		}
	}
	ours.Delete("spaces")
	ours.Delete("missing")
	if err := ours.Set("new", "1"); err != nil {
		t.Fatal(err)
	}
	check("edit", []kv{
		{"saved_entry", "slot_b_longer"}, {"eq", ""}, {"bs", `C:\dir\`},
		{"nl", "line1\nline2"}, {"empty", ""}, {"trailing_nl", "x\n"}, {"new", "1"},
	}, ours)
}
