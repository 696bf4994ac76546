package install_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/patch"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/signature"
)

// TestPatchPowerCut cuts the power at every cut point of an install by
// patch (every write, fsync, rename and removal of the simulated device:
// journal, state, slot data, slot index), in the modes drop, tear and
// keep, and checks after each cut: the boot configuration is as before
// and the device boots the committed group; the install run again
// completes by patch, and asks for exactly the patch segments whose chunks
// did not survive in the target slot (what was fetched, verified and
// written durably is not fetched again), counted on the HTTP server.
func TestPatchPowerCut(t *testing.T) {
	p := makePatch(t, fx.key, 4<<10)
	head, err := patch.ReadHead(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	sec := &head.Header.Sections[0]
	segStart := head.DataOffset + int64(sec.Segments[0].Offset)
	var asked atomic.Int64 // segment bytes asked for
	url := servePatch(t, p, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var a, b int64
			if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b); err == nil &&
				strings.HasSuffix(r.URL.Path, ".tpatch") && a >= segStart {
				asked.Add(b - a + 1)
			}
			h.ServeHTTP(w, r)
		})
	})
	entries := bundleEntries(t, fx.sysV2)
	// Ranges are merged only when adjacent: the bytes asked are exactly
	// the segments needed.
	opts := install.Options{Source: url, HTTP: install.HTTPOptions{DeltaGap: -1}}
	tmpl := deltaDevice(t)
	hash := bundleHash(t, fx.sysV2)
	modes := []rootfs.CutMode{rootfs.CutDrop, rootfs.CutTear, rootfs.CutKeep}
	if testing.Short() {
		modes = modes[2:]
	}
	if len(filesUnder(t, tmpl, "/boot")) == 0 {
		t.Fatal("the device has no boot configuration under /boot to watch")
	}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			var points, slotPoints, kept int
			for cut := 1; ; cut++ {
				if cut > 500 {
					t.Fatal("500 cut points: the install never completes")
				}
				dir := filepath.Join(t.TempDir(), "dev")
				if out, err := exec.Command("cp", "-a", tmpl, dir).CombinedOutput(); err != nil {
					t.Fatalf("copy the device: %v %s", err, out)
				}
				before := snapshot(t, dir)
				d, err := device.Open(device.Options{Root: dir, CutAt: cut, CutMode: mode})
				if err != nil {
					t.Fatal(err)
				}
				var last install.Event
				o := opts
				o.Progress.Event = func(e install.Event) {
					if e.Event == "method" {
						last = e
					}
				}
				_, err = install.Install(context.Background(), d, o)
				if err == nil {
					points = cut - 1
					if last.Method != install.MethodPatch {
						t.Fatalf("the uncut install: method %q (%s)", last.Method, last.Message)
					}
					break
				}
				if !errors.Is(err, rootfs.ErrPowerCut) {
					t.Fatalf("cut %d: %v, want a power cut", cut, err)
				}
				what := err.Error()
				if strings.Contains(what, "/slots/system-b.img") {
					slotPoints++
				}
				after := snapshot(t, dir)
				if changed := diff(before, after, func(p string) bool { return under(p, "/boot") }); len(changed) > 0 {
					t.Fatalf("cut %d (%s): the boot configuration changed: %v", cut, what, changed)
				}
				if g := reboot(t, dir); g != "a" {
					t.Fatalf("cut %d (%s): booted %s, want the committed a", cut, what, g)
				}
				// What the resumed install must fetch: the segments with a
				// chunk that is not in slot b (all of them when the journal
				// did not survive: nothing says slot b is worth reading).
				want, skipped := needed(t, dir, sec, entries, resumable(t, dir, hash))
				kept += skipped
				asked.Store(0)
				res, err := installURL(t, dir, url, opts, install.RebootSet)
				if err != nil {
					t.Fatalf("cut %d (%s): the install run again: %v", cut, what, err)
				}
				checkSlot(t, dir, "b", fx.imgV2)
				if res.Transfer.Method != install.MethodPatch {
					t.Fatalf("cut %d (%s): the install run again: method %q (%s)", cut, what, res.Transfer.Method, res.Transfer.Reason)
				}
				if asked.Load() != want {
					t.Fatalf("cut %d (%s): the install run again asked for %d bytes of patch segments, want %d (%d of %d segments kept)",
						cut, what, asked.Load(), want, skipped, len(sec.Segments))
				}
				if g := reboot(t, dir); g != "b" {
					t.Fatalf("cut %d (%s): after the install run again the device booted %s", cut, what, g)
				}
			}
			t.Logf("%s: %d cut points, %d in slot data; %d segments not fetched again in all", mode, points, slotPoints, kept)
			if slotPoints < 2 {
				t.Fatalf("%d cut points in slot data", slotPoints)
			}
			if mode == rootfs.CutKeep && kept == 0 {
				t.Fatal("no resumed install kept a segment: the test proves nothing about resume")
			}
		})
	}
}

// filesUnder returns the files of a snapshot of dir under prefix.
func filesUnder(t *testing.T, dir, prefix string) snap {
	s := snap{}
	for p, v := range snapshot(t, dir) {
		if under(p, prefix) && strings.HasPrefix(v, "file") {
			s[p] = v
		}
	}
	return s
}

// resumable reports whether the device in dir has the journal of an
// install of the bundle hash into group b.
func resumable(t *testing.T, dir, hash string) bool {
	t.Helper()
	d := open(t, dir)
	b, err := os.ReadFile(d.FS.Path(filepath.Join(d.Config.DataDir, install.JournalFile)))
	if err != nil {
		return false
	}
	var j struct{ BundleHash, Group string }
	return json.Unmarshal(b, &j) == nil && j.BundleHash == hash && j.Group == "b"
}

// needed returns the stored bytes of the segments a resumed install must
// fetch (those with a chunk that is not at its place in slot b, or all of
// them when !resume) and how many it need not.
func needed(t *testing.T, dir string, sec *patch.Section, entries []bundle.Entry, resume bool) (int64, int) {
	t.Helper()
	slot, err := os.ReadFile(filepath.Join(dir, "slots/system-b.img"))
	if err != nil {
		t.Fatal(err)
	}
	offs := make([]int, len(entries)+1)
	for i, e := range entries {
		offs[i+1] = offs[i] + int(e.Size)
	}
	var want int64
	skipped := 0
	for _, g := range sec.Segments {
		all := resume
		for i := g.FirstChunk; all && i < g.FirstChunk+g.Chunks; i++ {
			all = offs[i+1] <= len(slot) && sha256.Sum256(slot[offs[i]:offs[i+1]]) == entries[i].Digest
		}
		if all {
			skipped++
		} else {
			want += int64(g.StoredSize)
		}
	}
	return want, skipped
}

// bundleEntries returns the chunk table of b's first payload.
func bundleEntries(t *testing.T, b []byte) []bundle.Entry {
	t.Helper()
	br, err := bundle.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := br.Verify(func(*bundle.Header, bundle.Hash, []signature.Signature) error { return nil }); err != nil {
		t.Fatal(err)
	}
	off, _ := br.PayloadOffsets(0)
	tab, err := br.Table(0, b[off:off+int64(br.Header.Payloads[0].TableSize())])
	if err != nil {
		t.Fatal(err)
	}
	return tab.Entries
}

func bundleHash(t *testing.T, b []byte) string {
	t.Helper()
	br, err := bundle.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return br.Hash.String()
}
