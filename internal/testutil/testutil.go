// Package testutil holds small helpers shared by tandem's tests.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// NeedTool returns the path of the external program name. When it is missing the
// test is skipped on a developer machine but fails under CI (CI set), because
// `make test` installs every tool the tests use and a silent skip there would
// hide a broken install step.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (make test installs it): %v", name, err)
	}
	t.Skipf("%s is not installed; run make test to install it", name)
	return ""
}

// WriteScript writes an executable shell script, "#!/bin/sh" and body, at
// path, making its directory: a hook or a handler for a test device.
func WriteScript(t testing.TB, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}
