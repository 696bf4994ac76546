package install_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/fetch"
	"github.com/tandem-ota/tandem/internal/install"
)

// installWith installs from url on the device in dir with the [download]
// limits dl (set directly: validation asks for longer windows than a test
// can wait), within a minute.
func installWith(t *testing.T, dir, url string, dl config.Download, o install.Options) error {
	t.Helper()
	d := open(t, dir)
	d.Config.Download = dl
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o.Source = url
	_, err := install.Install(ctx, d, o)
	return err
}

// The --no-delta path (tedge, rugix-ctrl, Mender descriptors) resumes a
// download that stalls (issue 11, hardening 6: it had no stall detection
// and hung, holding the lock).
func TestNoDeltaStallResumes(t *testing.T) {
	dir := deltaDevice(t)
	var n atomic.Int64
	var ranges []string
	var mu sync.Mutex
	url := serve(t, fx.sysV2, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			ranges = append(ranges, r.Header.Get("Range"))
			mu.Unlock()
			if n.Add(1) > 1 {
				h.ServeHTTP(w, r)
				return
			}
			// Half the bundle, then nothing.
			w.Header().Set("Content-Length", strconv.Itoa(len(fx.sysV2)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(fx.sysV2[:len(fx.sysV2)/2])
			_ = http.NewResponseController(w).Flush()
			<-r.Context().Done()
		})
	})
	err := installWith(t, dir, url, config.Download{StallWindow: "1s"}, install.Options{HTTP: install.HTTPOptions{NoDelta: true}})
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, dir, "b", fx.imgV2)
	mu.Lock()
	defer mu.Unlock()
	if want := "bytes=" + strconv.Itoa(len(fx.sysV2)/2) + "-" + strconv.Itoa(len(fx.sysV2)-1); len(ranges) != 2 || ranges[0] != "" || ranges[1] != want {
		t.Errorf("Range headers %q, want none and then %q", ranges, want)
	}
}

// The deadline ends a download that is slow but not stalled; the boot
// configuration is untouched (issue 11, hardening 6).
func TestDownloadDeadline(t *testing.T) {
	for _, noDelta := range []bool{false, true} {
		t.Run("no-delta="+strconv.FormatBool(noDelta), func(t *testing.T) {
			dir := deltaDevice(t)
			url := serve(t, fx.sysV2, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					time.Sleep(100 * time.Millisecond) // every request
					h.ServeHTTP(slowWriter{w}, r)      // fast enough for min-rate 1
				})
			})
			before := snapshot(t, filepath.Join(dir, "boot"))
			start := time.Now()
			err := installWith(t, dir, url, config.Download{MinRate: 1, Deadline: "150ms"}, install.Options{HTTP: install.HTTPOptions{NoDelta: noDelta}})
			if !errors.Is(err, fetch.ErrDeadline) {
				t.Fatalf("err %v, want the download deadline", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the install ended %v after it started", d)
			}
			if after := snapshot(t, filepath.Join(dir, "boot")); !equalSnap(before, after) {
				t.Error("the boot configuration changed")
			}
		})
	}
}

// A custom header (a CDN token) does not follow a redirect to another host
// unless redirect-headers = "any" (issue 11, hardening 7).
func TestHeadersNotForwardedToAnotherHost(t *testing.T) {
	for _, tc := range []struct {
		redirect string
		want     bool
	}{{"", false}, {config.RedirectSameHost, false}, {config.RedirectAnyHost, true}} {
		t.Run("redirect-headers="+tc.redirect, func(t *testing.T) {
			var mu sync.Mutex
			var token string
			cdn := serve(t, fx.sysV2, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					token = r.Header.Get("X-Token")
					mu.Unlock()
					h.ServeHTTP(w, r)
				})
			})
			origin := httptest.NewServer(http.RedirectHandler(cdn, http.StatusFound))
			defer origin.Close()
			dir := deltaDevice(t)
			o := install.Options{HTTP: install.HTTPOptions{NoDelta: true, Headers: []string{"X-Token: secret"}}}
			if err := installWith(t, dir, origin.URL+"/b.tandem", config.Download{RedirectHeaders: tc.redirect}, o); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if got := token == "secret"; got != tc.want {
				t.Errorf("the other host saw the header: %v, want %v", got, tc.want)
			}
		})
	}
}

// slowWriter sends a body 1 KiB every 10 ms.
type slowWriter struct{ http.ResponseWriter }

func (w slowWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 1<<10)
		m, err := w.ResponseWriter.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		_ = http.NewResponseController(w.ResponseWriter).Flush()
		time.Sleep(10 * time.Millisecond)
		p = p[k:]
	}
	return n, nil
}

// The client fleet adapters fetch their own documents with (the watcher's
// channel file) keeps the headers from other hosts too (issue 11,
// hardening 7).
func TestHTTPOptionsClientRedirect(t *testing.T) {
	var got string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("X-Token") }))
	defer other.Close()
	origin := httptest.NewServer(http.RedirectHandler(other.URL+"/stable.json", http.StatusFound))
	defer origin.Close()
	c, h, err := install.HTTPOptions{Headers: []string{"X-Token: secret"}}.Client()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, origin.URL+"/stable.json", nil)
	req.Header = h.Clone()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got != "" {
		t.Errorf("the other host saw X-Token %q", got)
	}
}
