package install_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/fetch"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// deltaDevice is a device whose group a holds v1 as a factory image tandem
// never wrote (so it has no recorded index).
func deltaDevice(t *testing.T) string {
	t.Helper()
	dir := newDevice(t, devOpts{})
	f, err := os.OpenFile(filepath.Join(dir, "slots/system-a.img"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(fx.imgV1, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return dir
}

// serve serves bundle b at /b.tandem through wrap (nil: plain, with Range).
func serve(t *testing.T, b []byte, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "b.tandem", time.Unix(1700000000, 0), bytes.NewReader(b))
	})
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/b.tandem"
}

func installURL(t *testing.T, dir, url string, o install.Options, reboot ...install.Reboot) (*install.Result, error) {
	t.Helper()
	o.Source = url
	return installActivate(t, dir, o, reboot)
}

func TestDeltaInstall(t *testing.T) {
	dir := deltaDevice(t)
	res, err := installURL(t, dir, serve(t, fx.sysV2, nil), install.Options{}, install.RebootSet)
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, dir, "b", fx.imgV2)
	tr := res.Transfer
	t.Logf("delta: %d of %d bundle bytes downloaded in %d requests, %d bytes reused, %d chunks fetched",
		tr.BytesDownloaded, len(fx.sysV2), tr.Requests, tr.BytesReused, tr.ChunksFetched)
	if tr.BytesReused == 0 || tr.BytesDownloaded >= int64(len(fx.sysV2))/2 {
		t.Fatalf("delta saved too little: %+v of %d", tr, len(fx.sysV2))
	}
	if g := reboot(t, dir); g != "b" {
		t.Fatalf("booted %s", g)
	}
	// The full path for comparison, on another device.
	dir2 := deltaDevice(t)
	full, err := installURL(t, dir2, serve(t, fx.sysV2, nil), install.Options{HTTP: install.HTTPOptions{NoDelta: true}})
	if err != nil {
		t.Fatal(err)
	}
	if full.Transfer.BytesDownloaded != int64(len(fx.sysV2)) || full.Transfer.Requests != 1 {
		t.Fatalf("--no-delta: %+v", full.Transfer)
	}
	checkSlot(t, dir2, "b", fx.imgV2)
}

// A server that ignores Range gets a streaming full install.
func TestDeltaFallbackWithoutRange(t *testing.T) {
	dir := deltaDevice(t)
	url := serve(t, fx.sysV2, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Range")
			h.ServeHTTP(w, r)
		})
	})
	res, err := installURL(t, dir, url, install.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, dir, "b", fx.imgV2)
	if res.Transfer.Requests != 1 || res.Transfer.BytesDownloaded != int64(len(fx.sysV2)) {
		t.Fatalf("fallback: %+v", res.Transfer)
	}
}

// Wrong bytes from the server are caught by the chunk digest and fetched
// again; transient 500s are retried; the slot ends byte-identical.
func TestDeltaServerFaults(t *testing.T) {
	var n atomic.Int64
	for _, tc := range []struct {
		name string
		wrap func(http.Handler) http.Handler
	}{
		{"wrong bytes once", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 4 { // a chunk request, not the probe or a table
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, r)
					body := rec.Body.Bytes()
					if len(body) > 10 {
						body[len(body)/2] ^= 0xff
					}
					for k, v := range rec.Header() {
						w.Header()[k] = v
					}
					w.WriteHeader(rec.Code)
					w.Write(body)
					return
				}
				h.ServeHTTP(w, r)
			})
		}},
		{"intermittent 500", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1)%3 == 0 {
					http.Error(w, "busy", http.StatusInternalServerError)
					return
				}
				h.ServeHTTP(w, r)
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.Store(0)
			dir := deltaDevice(t)
			o := install.Options{}
			if _, err := installURL(t, dir, serve(t, fx.sysV2, tc.wrap), o); err != nil {
				t.Fatal(err)
			}
			checkSlot(t, dir, "b", fx.imgV2)
		})
	}
}

// A bundle replaced on the server during the install fails cleanly.
func TestDeltaBundleReplaced(t *testing.T) {
	dir := deltaDevice(t)
	var n atomic.Int64
	other := append(bytes.Clone(fx.sysV2[:len(fx.sysV2)-1]), fx.sysV2[len(fx.sysV2)-1]^1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		content, mod := fx.sysV2, time.Unix(1700000000, 0)
		if n.Add(1) > 3 {
			content, mod = other, time.Unix(1800000000, 0)
		}
		w.Header().Set("ETag", `"`+mod.Format("20060102150405")+`"`)
		http.ServeContent(w, r, "b.tandem", mod, bytes.NewReader(content))
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	before := snapshot(t, filepath.Join(dir, "boot"))
	_, err := installURL(t, dir, srv.URL+"/b.tandem", install.Options{}, install.RebootSet)
	if !errors.Is(err, fetch.ErrChanged) {
		t.Fatalf("got %v, want ErrChanged", err)
	}
	if after := snapshot(t, filepath.Join(dir, "boot")); !equalSnap(before, after) {
		t.Fatal("the boot configuration changed")
	}
	if st := state(t, dir); st.Groups["b"].Version != "" {
		t.Fatal("a version was recorded for the half-written group")
	}
}

// A remote file longer or shorter than its header says is refused before writing.
func TestDeltaSizeMismatch(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want error
	}{
		{append(bytes.Clone(fx.sysV2), 0), bundle.ErrTrailing},
		{fx.sysV2[:len(fx.sysV2)-1], bundle.ErrTruncated},
	} {
		dir := deltaDevice(t)
		if _, err := installURL(t, dir, serve(t, tc.b, nil), install.Options{}); !errors.Is(err, tc.want) {
			t.Errorf("got %v, want %v", err, tc.want)
		}
	}
}

func equalSnap(a, b snap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// An interrupted delta install resumes: the next install of the same bundle
// keeps the chunks already written and fetches only the rest.
func TestDeltaResume(t *testing.T) {
	dir := deltaDevice(t)
	// A bundle whose system payload shares nothing with v1: everything is fetched.
	fresh := make([]byte, 600<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range fresh {
		fresh[i] = byte(rng.Uint32())
	}
	b, _ := mkBundle(t, spec{version: "3.0.0", payloads: []pl{sysPayload(fresh)}})
	var served atomic.Int64
	cut := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The server goes away after the first 300 KiB of the first attempt.
			if served.Load() > 300<<10 {
				http.Error(w, "gone", http.StatusNotFound)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			served.Add(int64(rec.Body.Len()))
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
		})
	}
	url := serve(t, b, cut)
	small := install.Options{HTTP: install.HTTPOptions{MaxRequest: 64 << 10}}
	if _, err := installURL(t, dir, url, small); err == nil {
		t.Fatal("the first attempt should fail")
	}
	res, err := installURL(t, dir, serve(t, b, nil), small)
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, dir, "b", fresh)
	if res.Transfer.BytesReused == 0 || res.Transfer.BytesDownloaded >= int64(len(b)) {
		t.Fatalf("resume kept nothing: %+v (bundle %d bytes)", res.Transfer, len(b))
	}
	t.Logf("resumed: %+v of a %d-byte bundle", res.Transfer, len(b))
}

// Against real nginx: the slot ends byte-identical and what tandem counts
// as downloaded is what nginx says it sent.
func TestDeltaNginx(t *testing.T) {
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "v2.tandem"), fx.sysV2, 0o644); err != nil {
		t.Fatal(err)
	}
	base, accessLog := testutil.StartNginx(t, www)
	dir := deltaDevice(t)
	res, err := installURL(t, dir, base+"/v2.tandem", install.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, dir, "b", fx.imgV2)
	var sent, requests int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(accessLog)
		sent, requests = 0, 0
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var status, n int64
			if _, err := fmt.Sscan(line, &status, &n); err == nil {
				sent += n
				requests++
			}
		}
		if requests >= res.Transfer.Requests {
			break
		}
	}
	if sent != res.Transfer.BytesDownloaded || requests != res.Transfer.Requests {
		t.Fatalf("nginx sent %d bytes in %d requests; tandem counted %+v", sent, requests, res.Transfer)
	}
	if sent >= int64(len(fx.sysV2))/2 {
		t.Fatalf("delta through nginx downloaded %d of %d bytes", sent, len(fx.sysV2))
	}
}

// A local slot that changed after it was indexed costs coalesced requests,
// not one request per chunk, and the install is still exact.
func TestDeltaStaleLocalIndex(t *testing.T) {
	dir := deltaDevice(t)
	url := serve(t, fx.sysV2, nil)
	// Index slot a as it is, then change it behind tandem's back, keeping its mtime.
	d := open(t, dir)
	x, err := install.ScanSlot(d, "system-a", bundle.ChunkerBuzhash, chunkAvg/4, chunkAvg, chunkAvg*4)
	if err != nil || len(x.Entries) == 0 {
		t.Fatalf("scan: %v", err)
	}
	p := filepath.Join(dir, "slots/system-a.img")
	fi, _ := os.Stat(p)
	garbage := bytes.Repeat([]byte{0x5a}, len(fx.imgV1))
	if err := os.WriteFile(p, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, fi.ModTime(), fi.ModTime().Add(-time.Hour))
	res, err := installURL(t, dir, url, install.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, dir, "b", fx.imgV2)
	if res.Transfer.Requests > 6 {
		t.Fatalf("a stale index cost %d requests: %+v", res.Transfer.Requests, res.Transfer)
	}
}

// A cached scan in the slot index format of bundle format 1 (80-byte
// entries) is ignored and made again, never misparsed.
func TestDeltaOldIndexVersion(t *testing.T) {
	dir := deltaDevice(t)
	d := open(t, dir)
	if _, err := install.ScanSlot(d, "system-a", bundle.ChunkerBuzhash, chunkAvg/4, chunkAvg, chunkAvg*4); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "var/lib/tandem", install.IndexDir, "system-a.scan.tidx")
	v2, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	const head = 32
	if binary.LittleEndian.Uint16(v2[4:]) != 2 || (len(v2)-head)%bundle.EntrySize != 0 {
		t.Fatalf("scan file: version %d, %d bytes", binary.LittleEndian.Uint16(v2[4:]), len(v2))
	}
	// The same index as version 1 wrote it: digest, stored digest, size,
	// stored size, compression, 7 reserved bytes.
	v1 := slices.Clone(v2[:head])
	binary.LittleEndian.PutUint16(v1[4:], 1)
	for raw := v2[head:]; len(raw) > 0; raw = raw[bundle.EntrySize:] {
		v1 = append(v1, raw[:32]...)
		v1 = append(v1, make([]byte, 32)...)
		v1 = append(v1, raw[32:40]...)
		v1 = append(v1, make([]byte, 8)...)
	}
	if err := os.WriteFile(p, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	os.Chtimes(p, future, future) // newer than the slot: not stale
	res, err := installURL(t, dir, serve(t, fx.sysV2, nil), install.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, dir, "b", fx.imgV2)
	again, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(again, v2) {
		t.Fatalf("the version 1 scan was not replaced by a new scan: %v", err)
	}
	fresh, err := installURL(t, deltaDevice(t), serve(t, fx.sysV2, nil), install.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Transfer.BytesReused == 0 || res.Transfer.BytesReused != fresh.Transfer.BytesReused {
		t.Fatalf("reused %d bytes, a fresh device %d", res.Transfer.BytesReused, fresh.Transfer.BytesReused)
	}
}

// A URL install that fetches at least half of the chunks fetches the
// payload's stored table too (format 3), so that the chunks are checked by
// their stored bytes; a stored table that does not match the header is not
// used, and the chunks are then checked by their content.
func TestURLInstallStoredTable(t *testing.T) {
	s := split(t, fx.sysV1)
	storedOff := len(s.hb) + len(s.sb) + len(s.tables[0])
	if len(s.stored[0]) == 0 {
		t.Fatal("fx.sysV1 has no stored table")
	}
	for _, bad := range []bool{false, true} {
		b := fx.sysV1
		if bad {
			b = flip(b, storedOff+3)
		}
		var asked atomic.Bool
		url := serve(t, b, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.Header.Get("Range"), fmt.Sprintf("bytes=%d-", storedOff)) {
					asked.Store(true)
				}
				h.ServeHTTP(w, r)
			})
		})
		dir := newDevice(t, devOpts{})
		if _, err := installURL(t, dir, url, install.Options{}); err != nil {
			t.Fatalf("stored table changed %v: %v", bad, err)
		}
		checkSlot(t, dir, "b", fx.imgV1)
		if !asked.Load() {
			t.Fatalf("stored table changed %v: the stored table was not fetched", bad)
		}
	}
}

// A chunk that occurs several times in the new image and nowhere on the
// device is downloaded once: its later occurrences take the kept bytes
// (each checked again by the reader). The new image repeats one
// incompressible 192 KiB block three times over the old image.
func TestDeltaRepeatedChunksFetchedOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	v1 := make([]byte, 1<<20)
	for i := range v1 {
		v1[i] = "tandem repeats "[rng.IntN(15)] // compressible, but its chunks are v1's own
	}
	block := make([]byte, 192<<10)
	for i := range block {
		block[i] = byte(rng.Uint32())
	}
	v2 := slices.Clone(v1)
	for _, off := range []int{100 << 10, 420 << 10, 760 << 10} {
		copy(v2[off:], block)
	}
	b, _, err := buildBundle(spec{version: "2.0.0", payloads: []pl{sysPayload(v2)}})
	if err != nil {
		t.Fatal(err)
	}
	dir := newDevice(t, devOpts{})
	f, err := os.OpenFile(filepath.Join(dir, "slots/system-a.img"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(v1, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	res, err := installURL(t, dir, serve(t, b, nil), install.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, dir, "b", v2)
	tr := res.Transfer
	t.Logf("%d of %d bundle bytes downloaded in %d requests, %d chunks from the bundle", tr.BytesDownloaded, len(b), tr.Requests, tr.ChunksFetched)
	// The block once (192 KiB, incompressible), the chunks around its three
	// copies, the header and the table: well under two copies of the block.
	if tr.BytesDownloaded >= 2*int64(len(block)) {
		t.Fatalf("downloaded %d bytes: the repeated block was fetched more than once", tr.BytesDownloaded)
	}
}
