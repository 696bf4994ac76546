package memfault_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/fleet/memfault"
)

// TestLoadDDIConfig checks memfault ddi's configuration: the hawkBit
// client's settings from memfault.toml; errors name the file.
func TestLoadDDIConfig(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.toml"), filepath.Join(dir, "bad.toml")
	base := "project-key = \"pk\"\ndevice-serial = \"SN1\"\nhardware-version = \"evt\"\nsoftware-type = \"linux\"\n"
	if err := os.WriteFile(good, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(base+"key = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := memfault.LoadDDIConfig(good)
	if err != nil || h.ControllerID != "SN1" || h.Authorization() != "GatewayToken pk" {
		t.Fatalf("got %+v, %v", h, err)
	}
	if _, err := memfault.LoadDDIConfig(bad); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad file: %v", err)
	}
	if _, err := memfault.LoadDDIConfig(filepath.Join(dir, "missing.toml")); err == nil {
		t.Error("missing file: no error")
	}
}
