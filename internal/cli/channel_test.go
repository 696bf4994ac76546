package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestChannelPublishAndWatch: CI publishes a channel, a device follows it
// with `tandem watch --once` through install, trial, health and record.
func TestChannelPublishAndWatch(t *testing.T) {
	dir, image := bundleFixture(t)
	key, pub := filepath.Join(dir, "release.key"), filepath.Join(dir, "release.pub")
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(filepath.Join(www, "fleet"), 0o755); err != nil {
		t.Fatal(err)
	}
	hash := createBundle(t, nil, filepath.Join(www, "v2.tandem"), image, "--key", key)
	out := filepath.Join(www, "fleet/stable.json")

	// Usage errors and a bundle the key does not verify.
	if r := run(t, nil, "channel", "publish", "--channel", "stable", "-o", out); r.code != ExitUsage {
		t.Fatalf("publish without --bundle: %+v", r)
	}
	if r := run(t, nil, "key", "generate", filepath.Join(dir, "other")); r.code != 0 {
		t.Fatal(r)
	}
	r := run(t, nil, "channel", "publish", "--channel", "stable", "--bundle", filepath.Join(www, "v2.tandem"),
		"--key", filepath.Join(dir, "other.key"), "-o", out)
	if r.code != ExitBundle || !strings.Contains(r.stderr, "no signature by a trusted key") {
		t.Fatalf("publish with a key that did not sign the bundle: %+v", r)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused publish wrote %s", out)
	}

	r = run(t, nil, "channel", "publish", "--channel", "stable", "--bundle", filepath.Join(www, "v2.tandem"),
		"--relative", "../v2.tandem", "--key", key, "--sequence", "5", "-o", out)
	if r.code != 0 || !strings.Contains(r.stdout, "sequence 5") {
		t.Fatalf("publish: %+v", r)
	}
	// Automatic sequence: above the existing file's.
	r = run(t, nil, "channel", "publish", "--channel", "stable", "--bundle", filepath.Join(www, "v2.tandem"),
		"--relative", "../v2.tandem", "--key", key, "--rollout", "100", "-o", out, "--json")
	var info ChannelInfo
	if err := json.Unmarshal([]byte(r.stdout), &info); r.code != 0 || err != nil || info.Sequence <= 5 ||
		info.Release.BundleHash != hash || info.Release.Version != "2.0.0" || info.Compatible != "tandem-sim" {
		t.Fatalf("publish --json: %+v (%v)", r, err)
	}
	if r := run(t, nil, "channel", "publish", "--channel", "stable", "--bundle", filepath.Join(www, "v2.tandem"),
		"--key", key, "--sequence", "3", "-o", out); r.code != ExitBundle || !strings.Contains(r.stderr, "not above") {
		t.Fatalf("publish with a lower sequence: %+v", r)
	}

	if r := run(t, nil, "channel", "inspect", out); r.code != 0 || !strings.Contains(r.stdout, "bundle hash: "+hash) {
		t.Fatalf("inspect: %+v", r)
	}
	if r := run(t, nil, "channel", "verify", out, "--trust", pub, "--channel", "stable", "--bundle", filepath.Join(www, "v2.tandem")); r.code != 0 || !strings.Contains(r.stdout, "verified:") {
		t.Fatalf("verify: %+v", r)
	}
	if r := run(t, nil, "channel", "verify", out, "--trust", filepath.Join(dir, "other.pub")); r.code != ExitBundle {
		t.Fatalf("verify with another key: %+v", r)
	}
	if r := run(t, nil, "channel", "verify", out, "--trust", pub, "--channel", "beta"); r.code != ExitBundle || !strings.Contains(r.stderr, "not for this channel") {
		t.Fatalf("verify as another channel: %+v", r)
	}

	srv := httptest.NewServer(http.FileServer(http.Dir(www)))
	defer srv.Close()
	url := srv.URL + "/fleet/stable.json"
	if r := run(t, nil, "channel", "inspect", url, "--json"); r.code != 0 || !strings.Contains(r.stdout, hash) {
		t.Fatalf("inspect URL: %+v", r)
	}

	dev := newSim(t, "grub", "--trust", pub, "--slot-size", "1M")
	if err := os.WriteFile(filepath.Join(dev, "etc/machine-id"), []byte("0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, nil, "--root", dev, "watch", url, "--once", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"event":"reboot"`) {
		t.Fatalf("watch: %+v", r)
	}
	if r := run(t, nil, "sim", "reboot", dev); lastLine(r.stdout) != "b" {
		t.Fatalf("sim reboot: %+v", r)
	}
	if r := run(t, nil, "--root", dev, "health"); r.code != 0 {
		t.Fatalf("health: %+v", r)
	}
	r = run(t, nil, "--root", dev, "watch", url, "--once", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"event":"outcome"`) || !strings.Contains(r.stdout, `"success":true`) {
		t.Fatalf("watch after the commit: %+v", r)
	}
	state := readFile(t, filepath.Join(dev, "var/lib/tandem/watch/stable.json"))
	if !strings.Contains(string(state), `"success": true`) {
		t.Fatalf("state: %s", state)
	}

	// A channel signed by an untrusted key: exit 6, one line, nothing written.
	if r := run(t, nil, "channel", "publish", "--channel", "stable", "--bundle", filepath.Join(www, "v2.tandem"),
		"--key", filepath.Join(dir, "other.key"), "--trust", pub, "--relative", "../v2.tandem", "-o", out); r.code != 0 {
		t.Fatalf("publish with another key: %+v", r)
	}
	// An upload gives a new modification time (Last-Modified has seconds).
	if err := os.Chtimes(out, time.Now().Add(time.Minute), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dev)
	r = run(t, nil, "--root", dev, "watch", url, "--once")
	if r.code != ExitBundle || !strings.Contains(r.stderr, "no signature by a trusted key") {
		t.Fatalf("watch an untrusted channel: %+v", r)
	}
	if after := snapshot(t, dev); len(after) != len(before) {
		t.Fatalf("a refused channel changed the device")
	} else {
		for k, v := range before {
			if after[k] != v && !strings.HasPrefix(k, "run/") {
				t.Fatalf("a refused channel changed %s", k)
			}
		}
	}

	// Configuration file and usage errors.
	if r := run(t, nil, "--root", dev, "watch", "--once"); r.code != ExitUsage {
		t.Fatalf("watch without a URL: %+v", r)
	}
	write(t, dev, "etc/tandem/watch.toml", "url = \""+url+"\"\nbogus = 1\n")
	if r := run(t, nil, "--root", dev, "watch", "--once"); r.code != ExitConfig || !strings.Contains(r.stderr, "bogus") {
		t.Fatalf("watch with an unknown config key: %+v", r)
	}
	write(t, dev, "etc/tandem/watch.toml", "url = \""+url+"\"\ninterval = \"10m\"\n[labels]\nring = \"beta\"\n")
	if r := run(t, nil, "--root", dev, "watch", "--once"); r.code != ExitBundle {
		t.Fatalf("watch from the config file: %+v", r)
	}
}
