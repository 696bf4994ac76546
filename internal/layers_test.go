// Package internal_test checks the direction of imports between tandem's
// packages (docs/design.md, "Layers"): a package imports only packages of
// lower layers, so that nothing below the fleet adapters knows fleet
// managers exist and nothing below the CLI knows about flags or output.
package internal_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tandem-ota/tandem/"

// layers lists every package by layer, lowest first. A package may import
// packages of lower layers only; a new package must be added here.
var layers = [][]string{
	{"internal/filetrust", "internal/bounded", "internal/gpt", "internal/wire"},
	{"internal/cmdout", "internal/retry", "internal/rootfs", "internal/chunker", "internal/signature",
		"internal/bootenv/autoboot", "internal/bootenv/bls", "internal/bootenv/efivar", "internal/bootenv/grubenv", "internal/bootenv/ubootenv",
		"internal/testutil", "internal/e2e/qemu", "bootloader", "systemd"},
	{"internal/config", "internal/fetch", "internal/bundle"},
	{"internal/bootflow", "internal/hooks", "internal/bundle/spec", "internal/state", "internal/patch"},
	{"internal/device", "internal/adopt", "internal/channel", "internal/image"},
	{"internal/install", "internal/health", "internal/sim", "internal/state/initsys", "internal/e2e/image"},
	{"internal/fleet"},
	{"internal/fleet/fleettest", "internal/fleet/hawkbit/ddiserver"},
	{"internal/fleet/hawkbit", "internal/fleet/mender", "internal/fleet/tedge", "internal/fleet/watch", "internal/fleet/rugix"},
	{"internal/fleet/memfault"},
	{"internal/api"},
	{"internal/cli"},
	{"cmd/tandem"},
	{"bench", "e2e", "internal", "tools/debpkg", "tools/yoctomods", "tools/demoqemu", "integrations"},
}

func TestImportDirection(t *testing.T) {
	layer := map[string]int{}
	for i, pkgs := range layers {
		for _, p := range pkgs {
			layer[p] = i
		}
	}
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", "github.com/tandem-ota/tandem/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(p.ImportPath, module)
		l, ok := layer[name]
		if !ok {
			t.Errorf("package %s has no layer: add it to layers in internal/layers_test.go and to docs/design.md", name)
			continue
		}
		for _, imp := range p.Imports {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			if dl, known := layer[dep]; known && dl >= l {
				t.Errorf("%s (layer %d) imports %s (layer %d): imports go downwards only", name, l, dep, dl)
			}
		}
	}
}
