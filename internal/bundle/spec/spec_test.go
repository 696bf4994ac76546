package spec

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/bundle"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "4K": 4096, "16M": 16 << 20, "2G": 2 << 30, "0": 0, "-1K": 0, "K": 0, "1T": 0} {
		got, err := ParseSize(in)
		if (err != nil) != (want == 0) || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

const good = `compatible = "acme"
version = "2.1.0"
min-version = "1.0.0"
incremental = true
compression = "best"
keys = ["release.key", "/abs/leaf.key:chain.pem"]

[[payload]]
name = "system"
file = "v2.img"
chunk-size = "16K"

[[payload]]
name = "apps"
kind = "tree"
target = "data"
file = "/abs/app.tar"
chunker = "fixed"

[[payload]]
name = "migrate"
kind = "execute"
file = "migrate.sh"
handler = ["/bin/sh", "-s"]
`

func writeSpec(t *testing.T, text string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "bundle.toml")
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestLoad(t *testing.T) {
	name := writeSpec(t, good)
	dir := filepath.Dir(name)
	s, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	h := s.Header
	if h.Compatible != "acme" || h.Version != "2.1.0" || h.MinVersion != "1.0.0" || !h.Incremental() || s.Level != bundle.LevelBest {
		t.Fatalf("header %+v, level %q", h, s.Level)
	}
	// Both parts of KEY:CHAIN are relative to the spec, as the doc says.
	if want := []string{filepath.Join(dir, "release.key"), "/abs/leaf.key:" + filepath.Join(dir, "chain.pem")}; strings.Join(s.Keys, " ") != strings.Join(want, " ") {
		t.Fatalf("keys %q, want %q", s.Keys, want)
	}
	want := []Payload{
		{bundle.PayloadSpec{Name: "system", Kind: bundle.KindSlot, Target: "system", Chunker: bundle.ChunkerBuzhash, ChunkSize: 16 << 10}, filepath.Join(dir, "v2.img")},
		{bundle.PayloadSpec{Name: "apps", Kind: bundle.KindTree, Target: "data", Chunker: bundle.ChunkerFixed}, "/abs/app.tar"},
		{bundle.PayloadSpec{Name: "migrate", Kind: bundle.KindExecute, Handler: []string{"/bin/sh", "-s"}, Chunker: bundle.ChunkerBuzhash}, filepath.Join(dir, "migrate.sh")},
	}
	if len(s.Payloads) != len(want) {
		t.Fatalf("%d payloads", len(s.Payloads))
	}
	for i, p := range s.Payloads {
		w := want[i]
		if p.Name != w.Name || p.Kind != w.Kind || p.Target != w.Target || p.Chunker != w.Chunker || p.ChunkSize != w.ChunkSize ||
			strings.Join(p.Handler, " ") != strings.Join(w.Handler, " ") || p.File != w.File {
			t.Errorf("payload %d: %+v, want %+v", i, p, w)
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{good + "colour = \"blue\"\n", "bundle.toml:25:1: unknown key payload.colour"},
		{"compatible = \"a\"\nversion = 1.0\n", "bundle.toml:2:"},
		{"compatible = \"a\"\n", "no [[payload]]"},
		{"[[payload]]\nname = \"x\"\nkind = \"disk\"\nfile = \"x\"\n", `payload 1: kind "disk"`},
		{"[[payload]]\nname = \"x\"\nchunker = \"rabin\"\nfile = \"x\"\n", `payload 1: chunker "rabin"`},
		{"[[payload]]\nname = \"x\"\nchunk-size = \"1T\"\nfile = \"x\"\n", "payload 1: chunk-size"},
		{"[[payload]]\nname = \"x\"\n", "payload 1: no file"},
		{"# " + strings.Repeat("x", MaxSize) + "\n", "larger than"},
	} {
		if _, err := Load(writeSpec(t, tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%.40q): %v, want %q", tc.text, err, tc.want)
		}
	}
}

func TestCreate(t *testing.T) {
	name := writeSpec(t, "compatible = \"acme\"\nversion = \"2.0.0\"\n[[payload]]\nname = \"system\"\nfile = \"v2.img\"\n")
	dir := filepath.Dir(name)
	s, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.tandem")
	if _, err := s.Create(out, nil, nil); err == nil || !strings.Contains(err.Error(), name+": payload 1: open") {
		t.Fatalf("Create without the payload file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "v2.img"), []byte(strings.Repeat("tandem ", 5000)), 0o644); err != nil {
		t.Fatal(err)
	}
	hash, err := s.Create(out, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := bundle.Inspect(out, false)
	if err != nil || info.Hash != hash.String() || len(info.Payloads) != 1 || info.Payloads[0].Size != 35000 {
		t.Fatalf("Inspect: %v, %+v", err, info)
	}
}

// An ext4 slot image with a journal draws the warning; one without, a tree
// payload or a file that is no ext4 image does not. The images are made by
// the real mkfs.ext4.
func TestJournalWarning(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	dir := t.TempDir()
	mk := func(name string, features ...string) string {
		p := filepath.Join(dir, name)
		args := append([]string{"-q", "-F", "-t", "ext4"}, features...)
		if out, err := exec.Command("mkfs.ext4", append(args, p, "8M")...).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v: %s", err, out)
		}
		return p
	}
	journal, none := mk("journal.ext4"), mk("none.ext4", "-O", "^has_journal")
	other := filepath.Join(dir, "other.img")
	if err := os.WriteFile(other, []byte(strings.Repeat("tandem ", 5000)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		kind bundle.Kind
		warn bool
	}{{journal, bundle.KindSlot, true}, {none, bundle.KindSlot, false}, {other, bundle.KindSlot, false}, {journal, bundle.KindTree, false}} {
		s := &Spec{Header: bundle.Header{Compatible: "acme", Version: "2.0.0"},
			Payloads: []Payload{{bundle.PayloadSpec{Name: "system", Kind: tc.kind, Target: "system", ChunkSize: 64 << 10}, tc.file}}}
		if tc.kind == bundle.KindTree {
			s.Payloads[0].Target = ""
		}
		var warnings []string
		_, err := s.Create(filepath.Join(dir, "out.tandem"), nil, func(w string) { warnings = append(warnings, w) })
		if tc.kind == bundle.KindSlot && err != nil {
			t.Fatal(err)
		}
		if got := len(warnings) == 1 && strings.Contains(warnings[0], "payload system is an ext4 image with a journal") &&
			strings.Contains(warnings[0], "tune2fs -O ^has_journal"); got != tc.warn || len(warnings) > 1 {
			t.Errorf("%s (kind %d): warnings %q, want one: %v", filepath.Base(tc.file), tc.kind, warnings, tc.warn)
		}
	}
}
