package systemd_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/testutil"
	"github.com/tandem-ota/tandem/systemd"
)

// TestUnitsVerify runs every shipped unit through systemd-analyze verify,
// with /usr/bin/tandem pointing at a real executable.
func TestUnitsVerify(t *testing.T) {
	testutil.NeedTool(t, "systemd-analyze")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	names, err := fs.Glob(systemd.Units, "*")
	if err != nil || len(names) == 0 {
		t.Fatalf("no units embedded: %v", err)
	}
	var paths []string
	for _, n := range names {
		b, err := fs.ReadFile(systemd.Units, n)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(n, ".service") && !strings.Contains(string(b), "ExecStart=/usr/bin/tandem ") {
			t.Errorf("%s: ExecStart does not run /usr/bin/tandem", n)
		}
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/bin/tandem", self)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	cmd := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, paths...)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=warning")
	out, err := cmd.CombinedOutput()
	// systemd-analyze also reports problems of the host's own units; keep ours.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, dir) || strings.Contains(l, "tandem") {
			ours = append(ours, l)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
