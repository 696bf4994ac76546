package config

import (
	"os"
	"strings"
	"testing"
)

// TestDocExamples parses every complete example of docs/configuration.md:
// the blocks marked ```toml (fragments are marked ```toml fragment).
func TestDocExamples(t *testing.T) {
	data, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Skipf("documentation not found: %v", err)
	}
	var block []string
	in, n := false, 0
	for i, line := range strings.Split(string(data), "\n") {
		switch {
		case !in && line == "```toml":
			in, block = true, nil
		case in && line == "```":
			in, n = false, n+1
			cfg, err := Parse("configuration.md", []byte(strings.Join(block, "\n")))
			if err != nil {
				t.Errorf("example ending on line %d: %v", i+1, err)
				continue
			}
			checkRoundTrip(t, cfg)
		case in:
			block = append(block, line)
		}
	}
	if n < 7 {
		t.Errorf("found %d complete examples, want at least 7", n)
	}
}
