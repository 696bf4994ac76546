package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bundle delta writes a patch from a previous bundle, and a device whose
// active slot holds that release installs the new bundle by it.
func TestBundleDeltaInstall(t *testing.T) {
	dir, image := bundleFixture(t)
	key, pub := filepath.Join(dir, "release.key"), filepath.Join(dir, "release.pub")
	v1img := filepath.Join(dir, "v1.img")
	old := bytes.Clone(readFile(t, image))
	for i := 1000; i < len(old); i += 4096 {
		old[i] ^= 1
	}
	if err := os.WriteFile(v1img, old, 0o644); err != nil {
		t.Fatal(err)
	}
	www := filepath.Join(dir, "www")
	os.Mkdir(www, 0o755)
	v1, v2 := filepath.Join(dir, "v1.tandem"), filepath.Join(www, "v2.tandem")
	if r := run(t, nil, "bundle", "create", v1, "--compatible", "tandem-sim", "--version", "1.0.0", "--slot", "system="+v1img, "--key", key); r.code != 0 {
		t.Fatalf("bundle create: %+v", r)
	}
	createBundle(t, nil, v2, image, "--key", key)
	r := run(t, nil, "bundle", "delta", v2, "--from", v1, "--key", key)
	if r.code != 0 || !strings.Contains(r.stdout, "version-1.0.0.tpatch") {
		t.Fatalf("bundle delta: %+v", r)
	}
	if r := run(t, nil, "bundle", "delta", v2, "--from", v1); r.code == 0 {
		t.Fatalf("bundle delta without --key: %+v", r)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(www)))
	defer srv.Close()
	dev := filepath.Join(dir, "dev")
	if r := run(t, nil, "sim", "new", dev, "--boot-flow", "grub", "--slot-size", "512K", "--image", v1img, "--trust", pub); r.code != 0 {
		t.Fatalf("sim new: %+v", r)
	}
	r = run(t, nil, "--root", dev, "update", "install", srv.URL+"/v2.tandem", "--json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var done struct {
		Event, Method   string
		BytesDownloaded int64
	}
	if r.code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &done) != nil || done.Event != "done" || done.Method != "patch" {
		t.Fatalf("install: %+v", r)
	}
	if !strings.Contains(r.stdout, `"event":"method"`) {
		t.Errorf("no method event: %s", r.stdout)
	}
	got := readFile(t, filepath.Join(dev, "slots/system-b.img"))
	if !bytes.Equal(got[:len(readFile(t, image))], readFile(t, image)) {
		t.Fatal("slot b does not hold v2")
	}
}
