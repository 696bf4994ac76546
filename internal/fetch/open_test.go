package fetch

import (
	"github.com/tandem-ota/tandem/internal/retry"

	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestOpen(t *testing.T) {
	const size = 100_000
	lastModified := testModtime.Format(http.TimeFormat)
	status := func(code int, retryAfter string, upTo int64) fault {
		return func(w http.ResponseWriter, _ *http.Request, n, _, _ int64, _ []byte) bool {
			if n > upTo {
				return false
			}
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			http.Error(w, http.StatusText(code), code)
			return true
		}
	}
	const forever = 1 << 62
	tests := []struct {
		name     string
		size     int
		n        int64
		attempts int
		fault    fault
		wantData int   // first bytes expected (206 path)
		wantErr  error // errors.Is
		wantMsg  []string
		wantReqs int64
		wantRetr int64
		minSleep time.Duration
	}{
		{name: "206", size: size, n: 4096, wantData: 4096, wantReqs: 1},
		{name: "206 file shorter than probe", size: 100, n: 4096, wantData: 100, wantReqs: 1},
		{name: "206 one byte probe", size: size, n: 1, wantData: 1, wantReqs: 1},
		{name: "empty file answered with 200", size: 0, n: 4096, wantData: 0, wantReqs: 1},
		{
			name: "empty file answered with 416 bytes */0", size: 0, n: 4096, wantData: 0, wantReqs: 1,
			fault: func(w http.ResponseWriter, _ *http.Request, _, _, _ int64, _ []byte) bool {
				w.Header().Set("Content-Range", "bytes */0")
				w.Header().Set("ETag", testETag)
				w.Header().Set("Last-Modified", testModtime.Format(http.TimeFormat))
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
				return true
			},
		},
		{
			name: "200 Range ignored", size: size, n: 4096, wantErr: ErrNoRange, wantReqs: 1,
			fault: func(w http.ResponseWriter, r *http.Request, _, _, _ int64, data []byte) bool {
				r.Header.Del("Range")
				w.Header().Set("ETag", testETag)
				http.ServeContent(w, r, "file.bin", testModtime, bytes.NewReader(data))
				return true
			},
		},
		{name: "404", size: size, n: 4096, fault: status(404, "", forever), wantMsg: []string{"404 Not Found"}, wantReqs: 1},
		{name: "403", size: size, n: 4096, fault: status(403, "", forever), wantMsg: []string{"403 Forbidden"}, wantReqs: 1},
		{name: "500 twice then 206", size: size, n: 4096, fault: status(500, "", 2), wantData: 4096, wantReqs: 3, wantRetr: 2},
		{name: "429 Retry-After 2", size: size, n: 4096, fault: status(429, "2", 1), wantData: 4096, wantReqs: 2, wantRetr: 1, minSleep: 2 * time.Second},
		{
			name: "503 Retry-After HTTP date", size: size, n: 4096, wantData: 4096, wantReqs: 2, wantRetr: 1, minSleep: 3 * time.Second,
			fault: status(503, time.Now().Add(5*time.Second).UTC().Format(http.TimeFormat), 1),
		},
		{
			name: "503 forever", size: size, n: 4096, attempts: 4, fault: status(503, "", forever),
			wantMsg: []string{"503 Service Unavailable", "gave up after 4 tries"}, wantReqs: 4, wantRetr: 3,
		},
		{
			name: "bad Content-Range retried then reported", size: size, n: 4096, attempts: 3,
			fault: func(w http.ResponseWriter, _ *http.Request, _, _, _ int64, data []byte) bool {
				send206(w, "bytes 1-4096/100000", 4096, data[1:4097])
				return true
			},
			wantMsg: []string{"Content-Range", "gave up after 3 tries"}, wantReqs: 3, wantRetr: 2,
		},
		{
			name: "compressed answer refused", size: size, n: 4096,
			fault: func(w http.ResponseWriter, _ *http.Request, _, _, _ int64, data []byte) bool {
				w.Header().Set("Content-Encoding", "gzip")
				send206(w, contentRange(0, 4095, len(data)), 4096, data[:4096])
				return true
			},
			wantMsg: []string{"Content-Encoding"}, wantReqs: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := testData(tc.size, 1)
			s := newServer(t, data, tc.fault)
			sl := &sleeper{}
			c := &Client{Retry: retry.Policy{Sleep: sl.sleep, Attempts: tc.attempts}}
			remote, first, body, err := c.Open(context.Background(), s.url(), tc.n)
			if body != nil {
				defer body.Close()
			}
			st := c.Stats()
			if st.Requests != tc.wantReqs || st.Retries != tc.wantRetr {
				t.Errorf("stats %+v, want %d requests and %d retries", st, tc.wantReqs, tc.wantRetr)
			}
			if got := sl.max(); got < tc.minSleep {
				t.Errorf("longest sleep %v, want ≥ %v", got, tc.minSleep)
			}
			switch {
			case len(tc.wantMsg) > 0:
				if err == nil {
					t.Fatal("no error")
				}
				for _, m := range tc.wantMsg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not mention %q", err, m)
					}
				}
				return
			case tc.wantErr == ErrNoRange:
				if !errors.Is(err, ErrNoRange) || body == nil || first != nil {
					t.Fatalf("err %v, body %v, first %d bytes; want ErrNoRange and a body", err, body, len(first))
				}
				all, err := io.ReadAll(body)
				if err != nil || !bytes.Equal(all, data) {
					t.Fatalf("body: %d bytes (err %v), want the whole %d-byte file", len(all), err, len(data))
				}
				if remote.Size != int64(len(data)) || remote.ETag != testETag {
					t.Errorf("remote %+v", remote)
				}
				if got := c.Stats().BytesReceived; got != int64(len(data)) {
					t.Errorf("BytesReceived %d, want %d", got, len(data))
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if body != nil {
				t.Error("body returned on success")
			}
			want := Remote{URL: s.url(), Size: int64(tc.size), ETag: testETag, LastModified: lastModified}
			if *remote != want {
				t.Errorf("remote %+v, want %+v", *remote, want)
			}
			if !bytes.Equal(first, data[:tc.wantData]) {
				t.Errorf("first bytes: %d, want data[:%d]", len(first), tc.wantData)
			}
		})
	}
}

func TestOpenBadArguments(t *testing.T) {
	c := &Client{}
	for _, tc := range []struct {
		url string
		n   int64
	}{{"http://127.0.0.1:1/x", 0}, {"ftp://example.com/x", 10}, {"http://[::1", 10}} {
		if _, _, _, err := c.Open(context.Background(), tc.url, tc.n); err == nil {
			t.Errorf("Open(%q, %d): no error", tc.url, tc.n)
		}
	}
	if st := c.Stats(); st.Requests != 0 {
		t.Errorf("%d requests sent", st.Requests)
	}
}

// The body Open returns with ErrNoRange has the stall detector too, but a
// slow reader is not a stalled server.
func TestOpenNoRangeBody(t *testing.T) {
	data := testData(64<<10, 2)
	release := make(chan struct{})
	s := newServer(t, data, func(w http.ResponseWriter, r *http.Request, _, _, _ int64, _ []byte) bool {
		w.Header().Set("Content-Length", "65536")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data[:32<<10])
		_ = http.NewResponseController(w).Flush()
		select {
		case <-release:
			_, _ = w.Write(data[32<<10:])
		case <-r.Context().Done():
		}
		return true
	})
	c := &Client{StallWindow: time.Second, Retry: retry.Policy{Attempts: 1}}
	_, _, body, err := c.Open(context.Background(), s.url(), 100)
	if !errors.Is(err, ErrNoRange) {
		t.Fatal(err)
	}
	defer body.Close()
	buf := make([]byte, 16<<10)
	if _, err := io.ReadFull(body, buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // a slow consumer
	if _, err := io.ReadFull(body, buf); err != nil {
		t.Fatalf("read after a slow consumer: %v", err)
	}
	start := time.Now()
	_, err = io.ReadFull(body, buf)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("read from a stalled server: %v, want ErrStalled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stall detected after %v", d)
	}
	close(release)
}
