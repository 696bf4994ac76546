package state

import (
	"os"
	"strings"
	"testing"
)

// TestDocExample parses the configuration example of docs/state.md.
func TestDocExample(t *testing.T) {
	data, err := os.ReadFile("../../docs/state.md")
	if err != nil {
		t.Skipf("documentation not found: %v", err)
	}
	_, rest, ok := strings.Cut(string(data), "```toml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no ```toml example in docs/state.md")
	}
	c, err := Parse([]File{{"state.md", []byte(block)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Paths) != 3 || c.Data.Label != "data" {
		t.Errorf("example: %+v", c)
	}
}

// TestFleetExample: the fleet integrations' state.d example
// (testdata/fleet.toml) parses together with docs/state.md's base example,
// declares only shared paths, appears verbatim in docs/state.md, and every
// part of it that an integration doc shows is a part of it (issue 12, "the
// state parts of the fleet integrations": docs and test cannot drift).
func TestFleetExample(t *testing.T) {
	fleet, err := os.ReadFile("testdata/fleet.toml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/state.md")
	if err != nil {
		t.Skipf("documentation not found: %v", err)
	}
	_, rest, _ := strings.Cut(string(doc), "```toml\n")
	base, _, _ := strings.Cut(rest, "```")
	c, err := Parse([]File{{"10-base.toml", []byte(base)}, {"60-fleet.toml", fleet}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"/var/lib/mender": true, "/etc/tedge": true, "/var/tedge": true, "/media/memfault": true, "/etc/tandem/hawkbit.toml": true}
	for _, p := range c.Paths {
		if p.File != "60-fleet.toml" {
			continue
		}
		if !want[p.Path] || !p.Shared {
			t.Errorf("%s (shared %v): not an expected shared fleet path", p.Path, p.Shared)
		}
		delete(want, p.Path)
	}
	if len(want) != 0 {
		t.Errorf("not declared: %v", want)
	}
	if !strings.Contains(string(doc), "```toml\n"+string(fleet)+"```") {
		t.Error("docs/state.md does not show testdata/fleet.toml verbatim")
	}
	for _, name := range []string{"mender", "thin-edge", "hawkbit", "memfault", "rugix-ctrl"} {
		b, err := os.ReadFile("../../docs/integrations/" + name + ".md")
		if err != nil {
			t.Fatal(err)
		}
		_, rest, ok := strings.Cut(string(b), "```toml\n# /etc/tandem/state.d/60-fleet.toml")
		block, _, ok2 := strings.Cut(rest, "```")
		if !ok || !ok2 {
			t.Errorf("docs/integrations/%s.md: no 60-fleet.toml example", name)
			continue
		}
		for _, part := range strings.Split(strings.TrimSpace(block), "\n\n")[1:] {
			if !strings.Contains(string(fleet), part+"\n") {
				t.Errorf("docs/integrations/%s.md: %q is not in testdata/fleet.toml", name, part)
			}
		}
	}
}
