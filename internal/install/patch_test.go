package install_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/patch"
	"github.com/tandem-ota/tandem/internal/signature"
)

// makePatch writes the patch from fx.imgV1 (version 0.1.0, the factory
// image of deltaDevice) to the bundle fx.sysV2, signed by key, in
// segments of about segSize bytes, and returns its bytes.
func makePatch(t *testing.T, key crypto.Signer, segSize int) []byte {
	t.Helper()
	dir := t.TempDir()
	bundleFile, img := filepath.Join(dir, "b.tandem"), filepath.Join(dir, "v1.img")
	if err := os.WriteFile(bundleFile, fx.sysV2, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, fx.imgV1, 0o644); err != nil {
		t.Fatal(err)
	}
	trust, err := signature.LoadTrust("", []string{fx.pubFile})
	if err != nil {
		t.Fatal(err)
	}
	res, err := patch.Create(patch.Options{Bundle: bundleFile, From: patch.From{Images: map[string]string{"system": img}, Version: "0.1.0"},
		Keys: []signature.SigningKey{{Key: key}}, Trust: trust, SegmentSize: segSize})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Paths) != 1 || filepath.Base(res.Paths[0]) != "version-0.1.0.tpatch" {
		t.Fatalf("patch written as %q", res.Paths)
	}
	return readFile(t, res.Paths[0])
}

// servePatch serves fx.sysV2 at /b.tandem and p (if not nil) at
// /b.tandem.patches/version-0.1.0.tpatch, through wrap.
func servePatch(t *testing.T, p []byte, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/b.tandem":
			http.ServeContent(w, r, "b.tandem", time.Unix(1700000000, 0), bytes.NewReader(fx.sysV2))
		case r.URL.Path == "/b.tandem.patches/version-0.1.0.tpatch" && p != nil:
			http.ServeContent(w, r, "p.tpatch", time.Unix(1700000000, 0), bytes.NewReader(p))
		default:
			http.NotFound(w, r)
		}
	})
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/b.tandem"
}

// resign replaces p's header by edit(header), signed by key.
func resign(t *testing.T, p []byte, key crypto.Signer, edit func(*patch.Header)) []byte {
	t.Helper()
	head, err := patch.ReadHead(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	edit(head.Header)
	var out bytes.Buffer
	_, err = patch.Write(&out, head.Header, [][]byte{p[head.DataOffset:]}, func(h patch.Hash) ([]signature.Signature, error) {
		return patch.Sign([]signature.SigningKey{{Key: key}}, h)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// installPatched installs fx.sysV2 from url on the device in dir and
// checks that the install is complete and verified (the slot holds v2, a
// trial of it boots), whichever method it took; it returns the result and
// the method events.
func installPatched(t *testing.T, dir, url string) (*install.Result, []install.Event) {
	t.Helper()
	var events []install.Event
	res, err := installURL(t, dir, url, install.Options{Progress: install.Progress{Event: func(e install.Event) {
		if e.Event == "method" {
			events = append(events, e)
		}
	}}}, install.RebootSet)
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, dir, "b", fx.imgV2)
	if g := reboot(t, dir); g != "b" {
		t.Fatalf("booted %s", g)
	}
	return res, events
}

func TestPatchInstall(t *testing.T) {
	p := makePatch(t, fx.key, 0)
	dir := deltaDevice(t)
	res, events := installPatched(t, dir, servePatch(t, p, nil))
	tr := res.Transfer
	t.Logf("patch of %d bytes; downloaded %d in %d requests; %s", len(p), tr.BytesDownloaded, tr.Requests, tr.Reason)
	if tr.Method != install.MethodPatch || tr.ChunksPatched == 0 || tr.ChunksFetched != 0 || len(events) != 1 {
		t.Fatalf("method %q (%s), %d chunks patched, %d fetched, events %+v", tr.Method, tr.Reason, tr.ChunksPatched, tr.ChunksFetched, events)
	}
	if ev := res.Event(); ev.Method != "patch" || ev.BytesDownloaded != tr.BytesDownloaded {
		t.Errorf("done event %+v", ev)
	}
	// The same update by chunk reuse downloads more.
	dyn, err := installURL(t, deltaDevice(t), servePatch(t, p, nil), install.Options{HTTP: install.HTTPOptions{NoPatch: true}})
	if err != nil {
		t.Fatal(err)
	}
	if dyn.Transfer.Method != install.MethodDelta || dyn.Transfer.BytesDownloaded <= tr.BytesDownloaded {
		t.Errorf("--no-patch: %+v; the patch downloaded %d", dyn.Transfer, tr.BytesDownloaded)
	}
}

// Each case ends in a verified install by chunk reuse, saying why the
// patch was not used (or was abandoned).
func TestPatchFallback(t *testing.T) {
	good := makePatch(t, fx.key, 4<<10)
	head, err := patch.ReadHead(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		patch  func() []byte
		device func(t *testing.T, dir string)
		why    string
	}{
		{"no patch", func() []byte { return nil }, nil, "no patch at"},
		{"untrusted key", func() []byte { return makePatch(t, fx.otherKey, 0) }, nil, "no signature by a trusted key"},
		{"tampered header", func() []byte {
			b := bytes.Clone(good)
			b[40] ^= 1 // the bundle hash: the patch hash changes
			return b
		}, nil, "signature"},
		{"tampered segment", func() []byte {
			b := bytes.Clone(good)
			b[head.DataOffset+int64(head.Header.DataSize())/2] ^= 1
			return b
		}, nil, "abandoned: patch: digest mismatch"},
		{"another bundle", func() []byte {
			return resign(t, good, fx.key, func(h *patch.Header) { h.BundleHash[0] ^= 1 })
		}, nil, "makes bundle"},
		{"wrong source", func() []byte {
			// A patch that claims another source: the device's slot is not it.
			return resign(t, good, fx.key, func(h *patch.Header) { h.Sections[0].SourceDigest[0] ^= 1 })
		}, nil, "does not hold the patch's source"},
		{"modified active slot", func() []byte { return good }, func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, "slots/system-a.img"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{'!'}, int64(len(fx.imgV1)/3)); err != nil {
				t.Fatal(err)
			}
		}, "does not hold the patch's source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := deltaDevice(t)
			if tc.device != nil {
				tc.device(t, dir)
			}
			res, events := installPatched(t, dir, servePatch(t, tc.patch(), nil))
			tr := res.Transfer
			last := events[len(events)-1]
			if tr.Method != install.MethodDelta || last.Method != install.MethodDelta || !strings.Contains(tr.Reason, tc.why) {
				t.Fatalf("method %q, reason %q (events %+v), want delta because %q", tr.Method, tr.Reason, events, tc.why)
			}
		})
	}
}

// A patch whose output is wrong (a valid signature on a patch made from
// another source, which still claims the device's): the first bad chunk
// is caught by the bundle's chunk table before it is written, the patch is
// abandoned and chunk reuse finishes the install.
func TestPatchWrongChunk(t *testing.T) {
	// The patch is made from a source that differs from v1 in one byte
	// past its first segment, then relabelled as v1's.
	dir := t.TempDir()
	other := bytes.Clone(fx.imgV1)
	other[len(other)*2/3] ^= 0x55
	bundleFile, img := filepath.Join(dir, "b.tandem"), filepath.Join(dir, "other.img")
	os.WriteFile(bundleFile, fx.sysV2, 0o644)
	os.WriteFile(img, other, 0o644)
	trust, _ := signature.LoadTrust("", []string{fx.pubFile})
	res, err := patch.Create(patch.Options{Bundle: bundleFile, From: patch.From{Images: map[string]string{"system": img}, Version: "0.1.0"},
		Keys: []signature.SigningKey{{Key: fx.key}}, Trust: trust, SegmentSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	v1 := makePatch(t, fx.key, 4<<10)
	v1Head, _ := patch.ReadHead(bytes.NewReader(v1))
	bad := resign(t, readFile(t, res.Paths[0]), fx.key, func(h *patch.Header) {
		h.Sections[0].SourceDigest = v1Head.Header.Sections[0].SourceDigest
	})
	dev := deltaDevice(t)
	r, events := installPatched(t, dev, servePatch(t, bad, nil))
	if len(events) != 2 || events[0].Method != install.MethodPatch || events[1].Method != install.MethodDelta ||
		!strings.Contains(events[1].Message, "abandoned") || !strings.Contains(events[1].Message, "digest mismatch") {
		t.Fatalf("events %+v, want patch, then delta after a chunk's digest mismatch", events)
	}
	if r.Transfer.Method != install.MethodDelta {
		t.Errorf("method %q", r.Transfer.Method)
	}
}

// serveHalf sends the headers of h's answer to r and the first half of its
// body, flushed.
func serveHalf(w http.ResponseWriter, r *http.Request, h http.Handler) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes()[:rec.Body.Len()/2])
	w.(http.Flusher).Flush()
}

// An interrupted patch download: connections dropped in the middle of the
// patch are resumed by range; an install cancelled half-way is resumed by
// the next one, which does not fetch again the segments whose chunks it
// already wrote.
func TestPatchInterrupted(t *testing.T) {
	p := makePatch(t, fx.key, 4<<10)
	head, _ := patch.ReadHead(bytes.NewReader(p))
	t.Run("dropped connections", func(t *testing.T) {
		var drops atomic.Int64
		url := servePatch(t, p, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, ".tpatch") && r.Header.Get("Range") != "bytes=0-4095" && drops.Add(1) <= 2 {
					// Half of what was asked, then the connection drops.
					serveHalf(w, r, h)
					panic(http.ErrAbortHandler)
				}
				h.ServeHTTP(w, r)
			})
		})
		res, _ := installPatched(t, deltaDevice(t), url)
		if res.Transfer.Method != install.MethodPatch || drops.Load() < 2 {
			t.Fatalf("method %q (%s), %d drops", res.Transfer.Method, res.Transfer.Reason, drops.Load())
		}
	})
	// Cancelled half-way (the server holds back the second half of the
	// segments until then), the next install fetches only what was not
	// written; cancelled at the last byte, the install records nothing
	// either (the group stays incomplete), and the next fetches nothing.
	sec := head.Header.Sections[0]
	if len(sec.Segments) < 4 {
		t.Fatalf("%d segments: too few to test a resume", len(sec.Segments))
	}
	table := head.DataOffset + int64(sec.Table.Offset)
	for _, tc := range []struct {
		name string
		hold bool
	}{{"cancelled half-way", true}, {"cancelled at the last byte", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := deltaDevice(t)
			ctx, cancel := context.WithCancel(context.Background())
			var written, total uint64
			wrote, once := make(chan struct{}), sync.Once{}
			var segBytes atomic.Int64 // segments asked for (not the chunk table)
			url := servePatch(t, p, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					var a, b int64
					if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b); err != nil ||
						!strings.HasSuffix(r.URL.Path, ".tpatch") || a < head.DataOffset || a == table {
						h.ServeHTTP(w, r)
						return
					}
					segBytes.Add(b - a + 1)
					if !tc.hold || ctx.Err() != nil {
						h.ServeHTTP(w, r)
						return
					}
					serveHalf(w, r, h)
					select {
					case <-wrote:
					case <-time.After(10 * time.Second):
						t.Error("nothing written from the first half of the segments")
					}
					cancel()
					panic(http.ErrAbortHandler)
				})
			})
			d := open(t, dir)
			_, err := install.Install(ctx, d, install.Options{Source: url, Progress: install.Progress{Event: func(e install.Event) {
				if e.Event != "progress" || ctx.Err() != nil {
					return
				}
				written, total = e.Bytes, e.Total
				switch {
				case tc.hold && written > 0 && written < total:
					once.Do(func() { close(wrote) })
				case !tc.hold && written == total:
					cancel()
				}
			}}})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("the cancelled install returned %v", err)
			}
			// Nothing recorded: the group is incomplete and cannot be tried.
			if db, err := d.LoadState(); err != nil || db.Groups["b"].Incomplete == nil {
				t.Fatalf("after a cancelled install group b is %+v (%v)", db.Groups["b"], err)
			}
			if err := d.TryNext("b"); !errors.Is(err, device.ErrIncomplete) {
				t.Fatalf("trying the group of a cancelled install: %v", err)
			}
			if g := reboot(t, dir); g != "a" {
				t.Fatalf("after an interrupted install the device booted %s", g)
			}
			segBytes.Store(0)
			res, err := install.Install(context.Background(), open(t, dir), install.Options{Source: url})
			if err != nil {
				t.Fatal(err)
			}
			checkSlot(t, dir, "b", fx.imgV2)
			data, again := int64(head.Header.DataSize()-uint64(sec.Table.StoredSize)), segBytes.Load()
			if res.Transfer.Method != install.MethodPatch || again >= data || (again == 0) == tc.hold {
				t.Fatalf("resumed: method %q (%s), %d bytes of the %d bytes of segments asked again", res.Transfer.Method, res.Transfer.Reason,
					again, data)
			}
			t.Logf("cancelled with %d of %d bytes written; resumed asking %d of %d bytes of segments", written, total, again, data)
		})
	}
}

// Patches offered with the bundle (install.Options.Patches): the device
// uses the one that claims its source, wherever it is, and does not look
// next to the bundle; an offer without its source, or whose pinned hash
// is not the patch's, ends in chunk reuse.
func TestPatchOffered(t *testing.T) {
	p := makePatch(t, fx.key, 0)
	head, _ := patch.ReadHead(bytes.NewReader(p))
	for _, tc := range []struct {
		name   string
		offer  func(base string) []install.PatchRef
		method string
		why    string
	}{
		{"claimed by version", func(base string) []install.PatchRef {
			return []install.PatchRef{{URL: base + "/elsewhere/other.bin", FromVersion: "0.0.9"},
				{URL: base + "/elsewhere/p.bin", FromVersion: "0.1.0", Hash: head.Hash.String()}}
		}, install.MethodPatch, "holds the patch's source"},
		{"claimed by its name", func(base string) []install.PatchRef {
			return []install.PatchRef{{URL: base + "/elsewhere/version-0.1.0.tpatch"}}
		}, install.MethodPatch, "holds the patch's source"},
		{"not for this source", func(base string) []install.PatchRef {
			return []install.PatchRef{{URL: base + "/elsewhere/p.bin", FromVersion: "0.0.9"}}
		}, install.MethodDelta, "none of the 1 patches offered"},
		{"another hash", func(base string) []install.PatchRef {
			return []install.PatchRef{{URL: base + "/elsewhere/p.bin", FromVersion: "0.1.0", Hash: fx.hashV1.String()}}
		}, install.MethodDelta, "the offer names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var paths []string
			url := servePatch(t, p, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					paths = append(paths, r.URL.Path)
					mu.Unlock()
					if strings.HasPrefix(r.URL.Path, "/elsewhere/") {
						r.URL.Path = "/b.tandem.patches/version-0.1.0.tpatch"
					}
					h.ServeHTTP(w, r)
				})
			})
			dir := deltaDevice(t)
			res, err := installURL(t, dir, url, install.Options{Patches: tc.offer(strings.TrimSuffix(url, "/b.tandem"))})
			if err != nil {
				t.Fatal(err)
			}
			checkSlot(t, dir, "b", fx.imgV2)
			if res.Transfer.Method != tc.method || !strings.Contains(res.Transfer.Reason, tc.why) {
				t.Fatalf("method %q (%s), want %s because %q", res.Transfer.Method, res.Transfer.Reason, tc.method, tc.why)
			}
			for _, p := range paths {
				if strings.Contains(p, ".patches/") || p == "/elsewhere/other.bin" {
					t.Errorf("asked for %s", p)
				}
			}
		})
	}
}
