package watch

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/channel"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/health"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/patch"
	"github.com/tandem-ota/tandem/internal/signature"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// nginxFixture is a release key, a channel key, a factory image v1 and
// bundles v2 (v1 with a small change) and v3, all served by nginx.
type nginxFixture struct {
	dir, www, base, accessLog string
	releasePub, channelPub    string
	release, channel, other   crypto.Signer
	v1, v2                    []byte
	h2, h3                    string
	size2                     int64
}

func writeBundle(t *testing.T, fx *nginxFixture, name, version string, img []byte) (string, int64) {
	t.Helper()
	b, h := fleettest.SignedBundle(t, bundle.Header{Name: "watch test", Version: version, Created: time.Now().Unix()}, img, fx.release)
	if err := os.WriteFile(filepath.Join(fx.www, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return h.String(), int64(len(b))
}

func newNginxFixture(t *testing.T) *nginxFixture {
	fx := &nginxFixture{dir: t.TempDir(), www: t.TempDir()}
	fx.release, fx.releasePub = fleettest.NewKey(t, fx.dir, "release")
	fx.channel, fx.channelPub = fleettest.NewKey(t, fx.dir, "channel")
	fx.other, _ = fleettest.NewKey(t, fx.dir, "other")
	r := rand.NewChaCha8([32]byte{'w', 'a', 't', 'c', 'h'})
	fx.v1 = make([]byte, 4<<20)
	_, _ = r.Read(fx.v1)
	fx.v2 = bytes.Clone(fx.v1)
	_, _ = r.Read(fx.v2[1<<20 : 1<<20+256<<10]) // 256 KiB changed
	v3 := bytes.Clone(fx.v2)
	_, _ = r.Read(v3[2<<20 : 2<<20+64<<10])
	fx.h2, fx.size2 = writeBundle(t, fx, "v2.tandem", "2.0.0", fx.v2)
	fx.h3, _ = writeBundle(t, fx, "v3.tandem", "3.0.0", v3)
	fx.base, fx.accessLog = testutil.StartNginx(t, fx.www)
	return fx
}

// device makes a simulated device running v1 (factory image) that trusts
// the release and channel keys.
func (fx *nginxFixture) device(t *testing.T) (string, func() (*device.Device, error)) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "v1.img")
	if err := os.WriteFile(img, fx.v1, 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "dev")
	return root, fleettest.NewDevice(t, root, sim.Options{BootFlow: "grub", Image: img, SlotSize: 8 << 20, FactoryVersion: "1.0.0",
		Trust: []string{fx.releasePub, fx.channelPub}})
}

// publish writes a channel file to the web root at name.
func (fx *nginxFixture) publish(t *testing.T, name string, key crypto.Signer, edit func(c *channel.Channel)) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	c := &channel.Channel{Format: channel.Format, Channel: "stable", Compatible: "tandem-sim", Sequence: 10,
		Issued: now.Add(-time.Hour), Expires: now.Add(30 * 24 * time.Hour),
		Release: channel.Release{Version: "2.0.0", Bundle: "../v2.tandem", BundleHash: fx.h2}}
	if edit != nil {
		edit(c)
	}
	b, err := channel.Sign(c, []channel.Signer{{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(fx.www, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// A new modification time, as an upload gives: nginx's ETag and
	// Last-Modified are made of the time and size, in whole seconds.
	publishes++
	mt := time.Now().Add(time.Duration(publishes) * time.Minute)
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
}

var publishes int

// tree hashes every file of the device except those under skip.
func tree(t *testing.T, root string, skip ...string) map[string][32]byte {
	t.Helper()
	m := map[string][32]byte{}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		for _, s := range skip {
			if strings.HasPrefix(rel, s) {
				return nil
			}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		m[rel] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameTree(t *testing.T, before, after map[string][32]byte) {
	t.Helper()
	for p, h := range after {
		if b, ok := before[p]; !ok {
			t.Errorf("%s was written", p)
		} else if b != h {
			t.Errorf("%s changed", p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s was removed", p)
		}
	}
}

// TestNginx runs the watcher against real nginx on loopback: a published
// channel installs by delta, trial-boots, commits and is recorded; then
// every bad channel is refused with a clear error, writing nothing.
func TestNginx(t *testing.T) {
	fx := newNginxFixture(t)
	ctx := context.Background()
	watcher := func(t *testing.T, open func() (*device.Device, error), path, id string) *Watcher {
		t.Helper()
		w, err := New(&Config{URL: fx.base + "/" + path, Channel: "stable", DeviceID: id}, open, fleettest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		return w
	}

	t.Run("delta-install", func(t *testing.T) {
		root, open := fx.device(t)
		fx.publish(t, "ok/stable.json", fx.channel, nil)
		w := watcher(t, open, "ok/stable.json", "dev-1")
		st, err := w.Step(ctx)
		if err != nil || st.Activity != fleet.ActRebooting {
			t.Fatalf("first poll: %+v, %v", st, err)
		}
		downloaded, _ := strconv.ParseInt(attr(st, "downloaded"), 10, 64)
		if downloaded == 0 || downloaded > fx.size2/3 {
			t.Fatalf("downloaded %d bytes of a %d-byte bundle: not a delta", downloaded, fx.size2)
		}
		t.Logf("delta: %d of %d bytes downloaded, %s reused", downloaded, fx.size2, attr(st, "reused"))
		if g, _, err := sim.Reboot(root, false); err != nil || g != "b" {
			t.Fatalf("trial boot: %s, %v", g, err)
		}
		if res, err := health.Check(health.Options{Open: open}); err != nil || res.Verdict != health.Committed {
			t.Fatalf("health: %+v, %v", res, err)
		}
		st, err = w.Step(ctx)
		d, _ := open()
		state, _ := LoadState(d, "stable")
		if err != nil || st.Activity != fleet.ActIdle || len(state.History) != 1 {
			t.Fatalf("after the commit: %+v, %v, %+v", st, err, state)
		}
		if o := state.History[0]; !o.Success || o.Version != "2.0.0" || o.Sequence != 10 {
			t.Fatalf("recorded %+v", o)
		}
		b, err := os.ReadFile(filepath.Join(root, "slots/system-b.img"))
		if err != nil || !bytes.Equal(b[:len(fx.v2)], fx.v2) {
			t.Fatalf("slot b does not hold v2 (%v)", err)
		}
		// Unchanged channel: a conditional GET answered 304, nothing to do.
		st, err = w.Step(ctx)
		if err != nil || attr(st, "event") != "checked" {
			t.Fatalf("third poll: %+v, %v", st, err)
		}
		waitLog(t, fx.accessLog, "304 ")
	})

	t.Run("bundle-uploaded-late", func(t *testing.T) {
		// The channel is up before its bundle: the file at the bundle URL
		// is another bundle. Refused, not held against the release, and
		// installed once the right file is there.
		root, open := fx.device(t)
		late := filepath.Join(fx.www, "late.tandem")
		copyFile(t, filepath.Join(fx.www, "v3.tandem"), late)
		fx.publish(t, "late/stable.json", fx.channel, func(c *channel.Channel) { c.Release.Bundle = "../late.tandem" })
		w := watcher(t, open, "late/stable.json", "dev-1")
		if _, err := w.Step(ctx); err == nil || !strings.Contains(err.Error(), "is not the pinned") {
			t.Fatalf("a bundle that is not the pinned one: %v", err)
		}
		copyFile(t, filepath.Join(fx.www, "v2.tandem"), late)
		st, err := w.Step(ctx)
		if err != nil || st.Activity != fleet.ActRebooting {
			t.Fatalf("after the upload: %+v, %v", st, err)
		}
		if g, _, err := sim.Reboot(root, false); err != nil || g != "b" {
			t.Fatalf("trial boot: %s, %v", g, err)
		}
	})

	t.Run("superseded", func(t *testing.T) {
		// An install of v3 was interrupted; meanwhile the channel names v2.
		_, open := fx.device(t)
		fx.publish(t, "superseded/stable.json", fx.channel, nil)
		w := watcher(t, open, "superseded/stable.json", "dev-1")
		if _, err := w.Agent().Begin(fleet.Job{ID: "stable-9", Source: fx.base + "/v3.tandem", BundleHash: fx.h3, Version: "3.0.0"}); err != nil {
			t.Fatal(err)
		}
		st, err := w.Step(ctx)
		if err != nil || st.Activity != fleet.ActRebooting || attr(st, "version") != "2.0.0" {
			t.Fatalf("after the channel moved on: %+v, %v", st, err)
		}
		d, _ := open()
		if st, _ := LoadState(d, "stable"); len(st.Failed) != 0 {
			t.Fatalf("the dropped install was recorded as failed: %+v", st.Failed)
		}
	})

	refusals := []struct {
		name    string
		prepare func(t *testing.T, w *Watcher) // before the refused poll
		file    func(t *testing.T, path string)
		want    string
		skip    bool // refused by a decision (Once returns no error)
		state   bool // the channel was accepted: the watch state may change
	}{
		{name: "corrupted", want: "malformed channel file", file: func(t *testing.T, p string) {
			fx.publish(t, p, fx.channel, nil)
			b, _ := os.ReadFile(filepath.Join(fx.www, p))
			if err := os.WriteFile(filepath.Join(fx.www, p), b[:len(b)/2], 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "tampered", want: "invalid signature by a trusted key", file: func(t *testing.T, p string) {
			fx.publish(t, p, fx.channel, nil)
			f, _ := os.ReadFile(filepath.Join(fx.www, p))
			good, _ := channel.Parse(f)
			fx.publish(t, p, fx.channel, func(c *channel.Channel) { c.Release.BundleHash = fx.h3 })
			g, _ := os.ReadFile(filepath.Join(fx.www, p))
			bad, _ := channel.Parse(g)
			// The v3 document under the v2 file's signature.
			forged := strings.Replace(string(f), b64(good.Signed), b64(bad.Signed), 1)
			if err := os.WriteFile(filepath.Join(fx.www, p), []byte(forged), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "untrusted-key", want: "no signature by a trusted key", file: func(t *testing.T, p string) {
			fx.publish(t, p, fx.other, nil)
		}},
		{name: "expired", want: "channel file has expired", file: func(t *testing.T, p string) {
			fx.publish(t, p, fx.channel, func(c *channel.Channel) {
				c.Issued, c.Expires = c.Issued.Add(-48*time.Hour), c.Issued.Add(-24*time.Hour)
			})
		}},
		{name: "wrong-channel", want: `it is for channel "beta"`, file: func(t *testing.T, p string) {
			fx.publish(t, p, fx.channel, func(c *channel.Channel) { c.Channel = "beta" })
		}},
		{name: "replayed-sequence", want: "sequence 9, this device has seen 10",
			prepare: func(t *testing.T, w *Watcher) {
				// Sequence 10 names the running version: accepted, nothing to do.
				fx.publish(t, "replayed-sequence/stable.json", fx.channel, func(c *channel.Channel) { c.Release.Version = "1.0.0" })
				if st, err := w.Step(ctx); err != nil || attr(st, "event") != "checked" {
					t.Fatalf("sequence 10: %+v, %v", st, err)
				}
			},
			file: func(t *testing.T, p string) {
				fx.publish(t, p, fx.channel, func(c *channel.Channel) { c.Sequence = 9 })
			}},
		{name: "outside-rollout", want: "outside the rollout", skip: true, state: true, file: func(t *testing.T, p string) {
			fx.publish(t, p, fx.channel, func(c *channel.Channel) { r := channel.Percent(5000); c.Release.Rollout = &r })
		}},
		{name: "not-selected", want: "not selected", skip: true, state: true, file: func(t *testing.T, p string) {
			fx.publish(t, p, fx.channel, func(c *channel.Channel) {
				c.Release.Select = &channel.Selector{Labels: map[string]string{"ring": "canary"}}
			})
		}},
		{name: "bundle-not-pinned", want: "is not the pinned", state: true, file: func(t *testing.T, p string) {
			fx.publish(t, p, fx.channel, func(c *channel.Channel) { c.Release.Bundle = "../v3.tandem" })
		}},
	}
	// A device id outside a 50% rollout of 2.0.0 on "stable".
	outside := ""
	for i := 0; outside == ""; i++ {
		if id := fmt.Sprintf("dev-%d", i); channel.Bucket(id, "stable", "2.0.0") >= 5000 {
			outside = id
		}
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			root, open := fx.device(t)
			p := tc.name + "/stable.json"
			w := watcher(t, open, p, outside)
			if tc.prepare != nil {
				tc.prepare(t, w)
			}
			tc.file(t, p)
			skip := []string{"run/"} // locks, on a tmpfs
			if tc.state {
				skip = append(skip, "var/lib/tandem/watch/") // the accepted channel file
			}
			before := tree(t, root, skip...)
			st, err := w.Step(ctx)
			if tc.skip {
				if err != nil || attr(st, "event") != "skip" || !strings.Contains(st.Message, tc.want) {
					t.Fatalf("got %+v, %v; want a skip saying %q", st, err, tc.want)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %+v, %v; want an error saying %q", st, err, tc.want)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
			}
			t.Logf("refused: %v%s", err, st.Message)
			sameTree(t, before, tree(t, root, skip...))
			d, _ := open()
			state, err := LoadState(d, "stable")
			if err != nil || len(state.Failed) != 0 || len(state.History) != 0 {
				t.Errorf("state records a failure: %+v, %v", state, err)
			}
		})
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// waitLog waits until nginx's access log has a line starting with prefix.
func waitLog(t *testing.T, log, prefix string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(log)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, prefix) {
				return
			}
		}
	}
	b, _ := os.ReadFile(log)
	t.Fatalf("nginx access log has no %q line:\n%s", prefix, b)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNginxPatch: `channel publish` lists the patches made by `bundle
// delta` next to the bundle in the signed channel file; a device running
// the patch's source installs by the patch, through nginx. With a list,
// the device uses only the list: a patch replaced after publishing (another
// valid patch for the same source) is not used, and a device whose source
// has no listed patch does not look for one next to the bundle.
func TestNginxPatch(t *testing.T) {
	fx := newNginxFixture(t)
	ctx := context.Background()
	bundleFile := filepath.Join(fx.www, "v2.tandem")
	img := filepath.Join(t.TempDir(), "v1.img")
	if err := os.WriteFile(img, fx.v1, 0o644); err != nil {
		t.Fatal(err)
	}
	trust, err := signature.LoadTrust("", []string{fx.releasePub})
	if err != nil {
		t.Fatal(err)
	}
	makePatch := func(t *testing.T, version, out string) {
		t.Helper()
		if _, err := patch.Create(patch.Options{Bundle: bundleFile, From: patch.From{Images: map[string]string{"system": img}, Version: version},
			Keys: []signature.SigningKey{{Key: fx.release}}, OutDir: out, SegmentSize: 256 << 10}); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(t *testing.T, dir, patches string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(fx.www, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := channel.Publish(channel.Publication{Out: filepath.Join(fx.www, dir, "stable.json"), Channel: "stable", BundleFile: bundleFile,
			Release: channel.Release{Bundle: "../v2.tandem"}, Validity: 24 * time.Hour, Signers: []channel.Signer{{Key: fx.channel}},
			Trust: trust, PatchDir: patches})
		if err != nil {
			t.Fatal(err)
		}
	}
	run := func(t *testing.T, dir string) (string, []install.Event) {
		t.Helper()
		root, open := fx.device(t)
		w, err := New(&Config{URL: fx.base + "/" + dir + "/stable.json", Channel: "stable", DeviceID: "dev-1"}, open, fleettest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		var events []install.Event
		w.Install.Progress.Event = func(e install.Event) {
			if e.Event == "method" {
				events = append(events, e)
			}
		}
		if st, err := w.Step(ctx); err != nil || st.Activity != fleet.ActRebooting {
			t.Fatalf("poll: %+v, %v", st, err)
		}
		if b, err := os.ReadFile(filepath.Join(root, "slots/system-b.img")); err != nil || !bytes.Equal(b[:len(fx.v2)], fx.v2) {
			t.Fatalf("slot b does not hold v2 (%v)", err)
		}
		return root, events
	}
	makePatch(t, "1.0.0", "")
	publish(t, "patched", "")

	t.Run("by-patch", func(t *testing.T) {
		b, _ := os.ReadFile(filepath.Join(fx.www, "patched/stable.json"))
		f, err := channel.Parse(b)
		if err != nil || len(f.Channel.Release.Patches) != 1 {
			t.Fatalf("published %s (%v)", b, err)
		}
		if p := f.Channel.Release.Patches[0]; p.URL != "../v2.tandem.patches/version-1.0.0.tpatch" || p.FromVersion != "1.0.0" {
			t.Fatalf("listed %+v", p)
		}
		root, events := run(t, "patched")
		if len(events) != 1 || events[0].Method != install.MethodPatch {
			t.Fatalf("methods %+v, want patch", events)
		}
		if g, _, err := sim.Reboot(root, false); err != nil || g != "b" {
			t.Fatalf("trial boot: %s, %v", g, err)
		}
	})
	t.Run("replaced-patch", func(t *testing.T) {
		// Another valid patch for the same source, uploaded over the
		// listed one: its hash is not the listed one.
		other := t.TempDir()
		listed := filepath.Join(fx.www, "v2.tandem.patches/version-1.0.0.tpatch")
		saved := t.TempDir() + "/saved"
		copyFile(t, listed, saved)
		defer copyFile(t, saved, listed)
		// A patch for the same source made for another version label:
		// validly signed, it makes the same bundle, but its header differs.
		makePatch(t, "1.0.1", other)
		copyFile(t, filepath.Join(other, "version-1.0.1.tpatch"), listed)
		_, events := run(t, "patched")
		if len(events) != 1 || events[0].Method != install.MethodDelta || !strings.Contains(events[0].Message, "the offer names") {
			t.Fatalf("methods %+v, want delta because the patch is not the listed one", events)
		}
	})
	t.Run("no-listed-patch-for-this-source", func(t *testing.T) {
		only := t.TempDir()
		makePatch(t, "0.9.0", only)
		publish(t, "other", only)
		_, events := run(t, "other")
		if len(events) != 1 || events[0].Method != install.MethodDelta || !strings.Contains(events[0].Message, "none of the 1 patches offered") {
			t.Fatalf("methods %+v, want delta without looking next to the bundle", events)
		}
	})
}
