package mender_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// fixture is one device, its keys, a v2 image and its bundle.
type fixture struct {
	tmp, key, otherKey string
	dev                string
	img                []byte
	imgPath            string
	bundle, hash       string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{tmp: t.TempDir()}
	f.key, f.otherKey = keys(t, f.tmp)
	f.dev = newDevice(t, f.key)
	f.imgPath, f.img = image(t, f.tmp, "v2.img", 700<<10)
	f.bundle, f.hash = makeBundle(t, f.tmp, "v2.tandem", "2.0.0", f.imgPath, f.key)
	return f
}

func TestInstallRebootCommit(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev)
	art := artifact(t, f.bundle, "release-2")
	c.must(0, "install", art)
	if !strings.Contains(c.lastOut, "At least one payload requested a reboot") {
		t.Errorf("mender install did not say that a reboot is needed:\n%s", c.lastCombined)
	}
	checkSlot(t, f.dev, "b", f.img)
	checkBoot(t, f.dev, boot{Active: "a", Default: "a", Trial: "b"})
	// The module consumed the stream: the client kept no copy of the payload.
	if n := treeSize(t, filepath.Join(c.dir, "data")); n > int64(len(f.img))/4 {
		t.Errorf("the client's data directory holds %d bytes after the install of a %d-byte image", n, len(f.img))
	}

	simReboot(t, f.dev)
	checkBoot(t, f.dev, boot{Active: "b", Default: "a", Pending: true})
	c.must(0, "commit")
	checkBoot(t, f.dev, boot{Active: "b", Default: "b"})
	checkSlot(t, f.dev, "b", f.img)
	checkNoJob(t, f.dev)
	c.must(2, "commit") // nothing to commit
}

func TestRollbackBeforeReboot(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev)
	c.must(0, "install", artifact(t, f.bundle, "release-2"))
	checkBoot(t, f.dev, boot{Active: "a", Default: "a", Trial: "b"})
	c.must(0, "rollback")
	checkBoot(t, f.dev, boot{Active: "a", Default: "a"})
	checkNoJob(t, f.dev)
	simReboot(t, f.dev)
	checkBoot(t, f.dev, boot{Active: "a", Default: "a"})
}

func TestRollbackOnTrial(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev)
	c.must(0, "install", artifact(t, f.bundle, "release-2"))
	simReboot(t, f.dev)
	c.must(0, "rollback")
	checkBoot(t, f.dev, boot{Active: "b", Default: "a", Pending: true})
	checkNoJob(t, f.dev)
	// The health service, when it runs before the reboot, does not commit
	// the abandoned group: it reboots into the committed one.
	if r := tandem(t, "--root", f.dev, "health"); r.code != 7 || !strings.Contains(r.stdout, "rolled back by mender") {
		t.Fatalf("tandem health after mender rollback: exit %d, want 7 (rolled back)\n%s%s", r.code, r.stdout, r.stderr)
	}
	simReboot(t, f.dev)
	checkBoot(t, f.dev, boot{Active: "a", Default: "a"})
}

// A commit whose health check fails rolls back: the client exits non-zero
// and the device reboots into the committed group.
func TestCommitUnhealthy(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev, "--health-deadline", "0")
	c.must(0, "install", artifact(t, f.bundle, "release-2"))
	simReboot(t, f.dev)
	testutil.WriteScript(t, filepath.Join(f.dev, "etc/tandem/hooks/health/check/10-service"), "echo 'service x is down' >&2\nexit 1\n")
	if code := c.run("commit"); code == 0 {
		t.Fatalf("mender commit with a failing health check: exit 0\n%s", c.lastCombined)
	}
	if !strings.Contains(c.lastCombined, "service x is down") {
		t.Errorf("the client's log does not name the failed check:\n%s", c.lastCombined)
	}
	checkBoot(t, f.dev, boot{Active: "b", Default: "a", Pending: true})
	simReboot(t, f.dev)
	checkBoot(t, f.dev, boot{Active: "a", Default: "a"})
	checkNoJob(t, f.dev)
}

// failedInstall checks that a refused install left nothing behind that
// changes what boots: the boot partition and the state database are as
// before, slot b was not touched or is forgotten, no job file.
func failedInstall(t *testing.T, f *fixture, c *client, art, why string, slotUntouched bool) {
	t.Helper()
	bootBefore := snapshot(t, filepath.Join(f.dev, "boot"))
	slotBefore := slot(t, f.dev, "b")
	versionBefore := groupVersion(t, f.dev, "b")
	if code := c.run("install", art); code != 1 {
		t.Fatalf("mender install: exit %d, want 1\n%s", code, c.lastCombined)
	}
	if !strings.Contains(c.lastCombined, why) {
		t.Errorf("the client's log does not say %q:\n%s", why, c.lastCombined)
	}
	if after := snapshot(t, filepath.Join(f.dev, "boot")); !equalMaps(bootBefore, after) {
		t.Errorf("the boot partition changed")
	}
	if slotUntouched && !bytes.Equal(slotBefore, slot(t, f.dev, "b")) {
		t.Errorf("slot b was written although the signature was refused")
	}
	checkBoot(t, f.dev, boot{Active: "a", Default: "a"})
	checkNoJob(t, f.dev)
	if after := groupVersion(t, f.dev, "b"); after != versionBefore {
		t.Errorf("group b is recorded as holding %q after a failed install, was %q", after, versionBefore)
	}
	// The device still takes a good update.
	c.must(0, "install", artifact(t, f.bundle, "release-2-good"))
	checkSlot(t, f.dev, "b", f.img)
	checkBoot(t, f.dev, boot{Active: "a", Default: "a", Trial: "b"})
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestUntrustedKey(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev)
	bad, _ := makeBundle(t, f.tmp, "v2-other.tandem", "2.0.0", f.imgPath, f.otherKey)
	failedInstall(t, f, c, artifact(t, bad, "release-2-other-key"), "no signature by a trusted key", true)
}

func TestCorruptArtifact(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev)
	art := artifact(t, f.bundle, "release-2")
	b, err := os.ReadFile(art)
	if err != nil {
		t.Fatal(err)
	}
	// The payload's gzip stream is the artifact's last and largest part:
	// change a byte in its middle.
	b[len(b)*3/4] ^= 0x55
	bad := filepath.Join(t.TempDir(), "corrupt.mender")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	failedInstall(t, f, c, bad, "", false)
}

func TestCorruptBundle(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev)
	b, err := os.ReadFile(f.bundle)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x55 // in a chunk: the artifact's checksums are right, the bundle's are not
	bad := filepath.Join(f.tmp, "corrupt.tandem")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	failedInstall(t, f, c, artifact(t, bad, "release-2-corrupt"), "chunk", false)
}

func TestDescriptor(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev)
	www := t.TempDir()
	if err := os.Link(f.bundle, filepath.Join(www, "v2.tandem")); err != nil {
		t.Fatal(err)
	}
	base, accessLog := testutil.StartNginx(t, www)
	url := base + "/v2.tandem"

	// A wrong hash or version is refused before anything is written.
	other, otherHash := makeBundle(t, f.tmp, "v3.tandem", "3.0.0", f.imgPath, f.key)
	_ = other
	failedInstall(t, f, c, artifact(t, descriptor(t, url, otherHash, "2.0.0"), "wrong-hash"), "is not the pinned", true)
	c.must(0, "rollback")
	c.must(0, "install", artifact(t, descriptor(t, url, f.hash, "2.0.0"), "release-2-delta"))
	checkSlot(t, f.dev, "b", f.img)
	checkBoot(t, f.dev, boot{Active: "a", Default: "a", Trial: "b"})
	log, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "206 ") {
		t.Errorf("no range request in nginx's log:\n%s", log)
	}
	simReboot(t, f.dev)
	c.must(0, "commit")
	checkBoot(t, f.dev, boot{Active: "b", Default: "b"})
	checkNoJob(t, f.dev)
}

// TestCommandLine: the module's answers and its silence on unknown states.
func TestCommandLine(t *testing.T) {
	for _, c := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"NeedsArtifactReboot", "/nonexistent"}, 0, "Yes\n", ""},
		{[]string{"SupportsRollback", "/nonexistent"}, 0, "Yes\n", ""},
		{[]string{"ProvidePayloadFileSizes", "/nonexistent"}, 0, "", ""},
		{[]string{"SupportsAugmentedArtifacts", "/nonexistent"}, 0, "", ""},
		{[]string{"SomeFutureState", "/nonexistent"}, 0, "", ""},
		{[]string{"Download"}, 2, "", "the Download state needs the module TREE"},
		{[]string{}, 2, "", "want STATE TREE"},
		{[]string{"a", "b", "c"}, 2, "", "want STATE TREE"},
	} {
		r := tandem(t, append([]string{"mender-module"}, c.args...)...)
		if r.code != c.code || r.stdout != c.out || !strings.Contains(r.stderr, c.err) || (c.err == "" && r.stderr != "") {
			t.Errorf("mender-module %q: exit %d, stdout %q, stderr %q; want %d, %q, %q", c.args, r.code, r.stdout, r.stderr, c.code, c.out, c.err)
		}
	}
}

// TestBadArtifacts: artifacts the module refuses before writing anything.
func TestBadArtifacts(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev)
	junk, junkData := image(t, f.tmp, "junk.bin", 4096)
	// Random bytes that start like JSON (1 run in about 50) would be read as
	// a descriptor: junk starts with a byte that is neither.
	junkData[0] = 'J'
	if err := os.WriteFile(junk, junkData, 0o644); err != nil {
		t.Fatal(err)
	}
	badJSON := filepath.Join(f.tmp, "bad.json")
	if err := os.WriteFile(badJSON, []byte(`{"url": "http://127.0.0.1:1/v2.tandem", "bundleHash": "`+f.hash+`", "size": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	desc := descriptor(t, "http://127.0.0.1:1/v2.tandem", f.hash, "2.0.0")
	for _, tc := range []struct {
		name  string
		files []string
		why   string
	}{
		{"junk", []string{junk}, "is neither a tandem bundle nor a descriptor"},
		{"unknown-field", []string{badJSON}, "unknown field"},
		{"two-files", []string{desc, junk}, "carries a second file streams/junk.bin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failedInstall(t, f, c, artifactOf(t, tc.name, tc.files...), tc.why, true)
			c.must(0, "rollback")
		})
	}
}

// artifactOf wraps several files into one module-image artifact.
func artifactOf(t testing.TB, name string, files ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".mender")
	args := []string{"write", "module-image", "-T", "tandem", "-t", "tandem-sim", "-n", name, "-o", out}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	if b, err := exec.Command(testutil.NeedTool(t, "mender-artifact"), args...).CombinedOutput(); err != nil {
		t.Fatalf("mender-artifact: %v\n%s", err, b)
	}
	return out
}

// groupVersion is the version system info reports for group g.
func groupVersion(t testing.TB, dev, g string) string {
	t.Helper()
	var doc struct {
		Boot struct {
			Groups map[string]struct {
				Version string `json:"version"`
			} `json:"groups"`
		} `json:"boot"`
	}
	out := mustTandem(t, "--root", dev, "system", "info", "--json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Boot.Groups[g].Version
}

// treeSize is the total size of the regular files under dir.
func treeSize(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestInstallFromURL: the client downloads the artifact from a real nginx
// and the module streams it into the slot while it arrives.
func TestInstallFromURL(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev)
	www := t.TempDir()
	art := artifact(t, f.bundle, "release-2")
	if err := os.Rename(art, filepath.Join(www, "release-2.mender")); err != nil {
		t.Fatal(err)
	}
	base, _ := testutil.StartNginx(t, www)
	c.must(0, "install", base+"/release-2.mender")
	checkSlot(t, f.dev, "b", f.img)
	checkBoot(t, f.dev, boot{Active: "a", Default: "a", Trial: "b"})
	if n := treeSize(t, filepath.Join(c.dir, "data")); n > int64(len(f.img))/4 {
		t.Errorf("the client's data directory holds %d bytes after the install of a %d-byte image", n, len(f.img))
	}
	simReboot(t, f.dev)
	c.must(0, "commit")
	checkBoot(t, f.dev, boot{Active: "b", Default: "b"})
}

// TestInstallReplacesPending: a second install before the reboot replaces
// the first (its trial is withdrawn first); the device boots the second.
func TestInstallReplacesPending(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev)
	c.must(0, "install", artifact(t, f.bundle, "release-2"))
	imgPath, img := image(t, f.tmp, "v3.img", 600<<10)
	v3, _ := makeBundle(t, f.tmp, "v3.tandem", "3.0.0", imgPath, f.key)
	c.must(0, "install", artifact(t, v3, "release-3"))
	if !strings.Contains(c.lastCombined, "forgetting the earlier update release-2") {
		t.Errorf("the module did not say that it replaced release-2:\n%s", c.lastCombined)
	}
	checkSlot(t, f.dev, "b", img)
	checkBoot(t, f.dev, boot{Active: "a", Default: "a", Trial: "b"})
	simReboot(t, f.dev)
	c.must(0, "commit")
	checkBoot(t, f.dev, boot{Active: "b", Default: "b"})
	if v := groupVersion(t, f.dev, "b"); v != "3.0.0" {
		t.Errorf("group b holds %q, want 3.0.0", v)
	}
}

// TestManifestMismatch: the bundle is intact but the artifact's manifest
// names another checksum for it. tandem's checks pass; the client's fail
// once the stream ended. The install fails and nothing boots differently.
func TestManifestMismatch(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev)
	art := artifact(t, f.bundle, "release-2")
	b, err := os.ReadFile(art)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(mustRead(t, f.bundle))
	line := []byte(hex.EncodeToString(sum[:]) + "  data/0000/v2.tandem")
	i := bytes.Index(b, line)
	if i < 0 {
		t.Fatalf("the artifact's manifest has no line %q", line)
	}
	b[i] ^= 0x01 // another hex digit
	bad := filepath.Join(t.TempDir(), "manifest.mender")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	failedInstall(t, f, c, bad, "checksum", false)
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// issue 11, hardening 10: docs/integrations/mender.md says the module
// exits 4 for a refusal; states run without an update under way exited 1,
// and so did a Download refused because another update's trial runs.
func TestRefusalExitCode(t *testing.T) {
	tmp := t.TempDir()
	key, _ := keys(t, tmp)
	dev := newDevice(t, key)
	for _, state := range []string{"ArtifactInstall", "ArtifactReboot", "ArtifactVerifyReboot", "ArtifactCommit"} {
		r := tandem(t, "--root", dev, "mender-module", state, "/nonexistent")
		if r.code != 4 || !strings.Contains(r.stderr, "refused: no ") {
			t.Errorf("mender-module %s without an update: exit %d, stderr %q; want 4", state, r.code, r.stderr)
		}
	}

	// Another update (not Mender's) runs on trial: Download is refused.
	imgPath, _ := image(t, tmp, "v2.img", 64<<10)
	www := t.TempDir()
	bundlePath, hash := makeBundle(t, www, "v2.tandem", "2.0.0", imgPath, key)
	mustTandem(t, "--root", dev, "update", "install", "--reboot", "set", bundlePath)
	simReboot(t, dev)
	srv := httptest.NewServer(http.FileServer(http.Dir(www)))
	defer srv.Close()
	env := &fleettest.Env{Root: dev, Open: func() (*device.Device, error) { return device.Open(device.Options{Root: dev}) }}
	d := newDaemon(env)
	d.cur = &deployment{offer: fleettest.Offer{ID: "release-3", URL: srv.URL + "/v2.tandem", BundleHash: hash, Version: "2.0.0"}, state: "download"}
	if err := d.download(context.Background(), t); !errors.Is(err, device.ErrRefused) || !strings.Contains(err.Error(), "on trial") {
		t.Fatalf("Download while another update's trial runs: %v, want a refusal (exit 4)", err)
	}
}

// TestDescriptorPatch: the real mender-client installs v1 (a bundle
// artifact), then a descriptor of v2 that lists v2's patch for v1 at a URL
// of its own: the module installs by that patch (the request log shows
// it) and never looks for patches next to the bundle.
func TestDescriptorPatch(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.dev)
	v1 := bytes.Clone(f.img)
	for i := 1000; i < len(v1); i += 64 << 10 {
		v1[i] ^= 0xff
	}
	v1Path := filepath.Join(f.tmp, "v1.img")
	if err := os.WriteFile(v1Path, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	v1Bundle, v1Hash := makeBundle(t, f.tmp, "v1.tandem", "1.0.0", v1Path, f.key)
	c.must(0, "install", artifact(t, v1Bundle, "release-1"))
	simReboot(t, f.dev)
	c.must(0, "commit")
	mustTandem(t, "bundle", "delta", f.bundle, "--from", v1Bundle, "--key", f.key+".key")
	p, err := os.ReadFile(f.bundle + ".patches/" + v1Hash + ".tpatch")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.bundle)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reqs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reqs = append(reqs, r.URL.Path)
		mu.Unlock()
		switch r.URL.Path {
		case "/v2.tandem":
			http.ServeContent(w, r, "", time.Unix(1700000000, 0), bytes.NewReader(b))
		case "/patches/from-v1.bin":
			http.ServeContent(w, r, "", time.Unix(1700000000, 0), bytes.NewReader(p))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	desc := filepath.Join(t.TempDir(), "v2.json")
	doc := fmt.Sprintf(`{"url": %q, "bundleHash": %q, "version": "2.0.0", "patches": [{"url": %q, "fromBundle": %q}]}`,
		srv.URL+"/v2.tandem", f.hash, srv.URL+"/patches/from-v1.bin", v1Hash)
	if err := os.WriteFile(desc, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	c.must(0, "install", artifact(t, desc, "release-2-patch"))
	checkSlot(t, f.dev, "a", f.img)
	if !strings.Contains(c.lastCombined, "into group a by patch:") {
		t.Errorf("the module did not install by patch:\n%s", c.lastCombined)
	}
	mu.Lock()
	got := strings.Join(reqs, " ")
	mu.Unlock()
	if !strings.Contains(got, "/patches/from-v1.bin") || strings.Contains(got, ".patches/") {
		t.Fatalf("requests %s: want the listed patch, and no look next to the bundle", got)
	}
	simReboot(t, f.dev)
	c.must(0, "commit")
	checkBoot(t, f.dev, boot{Active: "a", Default: "a"})
}
