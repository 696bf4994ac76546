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
