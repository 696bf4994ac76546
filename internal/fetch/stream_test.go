package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/retry"
)

// fileServer serves data like a static web server (Range, If-Range, ETag)
// unless answer handles request n (from 1) itself, and records each
// request's Range and If-Range.
type fileServer struct {
	*httptest.Server
	mu     sync.Mutex
	data   []byte
	etag   string
	ranges []string
	ifs    []string
}

func newFileServer(t *testing.T, data []byte, answer func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool) *fileServer {
	fs := &fileServer{data: data, etag: `"v1"`}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		fs.ranges = append(fs.ranges, r.Header.Get("Range"))
		fs.ifs = append(fs.ifs, r.Header.Get("If-Range"))
		n, data, etag := len(fs.ranges), fs.data, fs.etag
		fs.mu.Unlock()
		if answer != nil && answer(w, r, n, data) {
			return
		}
		w.Header().Set("ETag", etag)
		http.ServeContent(w, r, "f", testModtime, bytes.NewReader(data))
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fileServer) requests() ([]string, []string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return slices.Clone(fs.ranges), slices.Clone(fs.ifs)
}

// cut sends the first k bytes of a whole-file answer and then stalls.
func cut(w http.ResponseWriter, r *http.Request, data []byte, k int, etag string) {
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data[:k])
	_ = http.NewResponseController(w).Flush()
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

func readAll(t *testing.T, c *Client, url string) ([]byte, error) {
	t.Helper()
	remote, rc, err := c.Get(context.Background(), url)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err == nil && remote.Size != int64(len(got)) {
		t.Errorf("Remote.Size %d, read %d bytes", remote.Size, len(got))
	}
	return got, err
}

// The --no-delta path: a plain GET whose stall is retried and resumed after
// the bytes already read (issue 11, hardening 6: it had no stall detection).
func TestGetResumesAfterAStall(t *testing.T) {
	data := testData(200_000, 40)
	fs := newFileServer(t, data, func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
		if n == 1 {
			cut(w, r, data, 70_000, `"v1"`)
			return true
		}
		return false
	})
	c := &Client{StallWindow: time.Second, Retry: retry.Policy{Sleep: noSleep}}
	got, err := readAll(t, c, fs.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("wrong data")
	}
	ranges, ifs := fs.requests()
	if want := []string{"", "bytes=70000-199999"}; !slices.Equal(ranges, want) {
		t.Errorf("Range headers %q, want %q", ranges, want)
	}
	if ifs[1] != `"v1"` {
		t.Errorf("If-Range %q, want the ETag", ifs[1])
	}
	if st := c.Stats(); st.Requests != 2 || st.Retries != 1 || st.BytesReceived != int64(len(data)) {
		t.Errorf("stats %+v", st)
	}
}

func TestGetFaults(t *testing.T) {
	data := testData(100_000, 41)
	whole := func(etag string) func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
		return func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
			if n == 1 {
				cut(w, r, data, 30_000, `"v1"`)
				return true
			}
			// Range ignored: the whole file, from the server's version etag.
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			_, _ = w.Write(data)
			return true
		}
	}
	tests := []struct {
		name     string
		answer   func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool
		attempts int
		wantErr  error
		wantReqs int
	}{
		{name: "server ignores Range on the resume", answer: whole(`"v1"`), wantReqs: 2},
		{name: "file replaced before the resume", answer: whole(`"v2"`), wantErr: ErrChanged, wantReqs: 2},
		{
			name: "stalls forever", attempts: 3, wantErr: ErrStalled, wantReqs: 3,
			answer: func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
				if n == 1 {
					cut(w, r, data, 10, `"v1"`)
				} else {
					w.Header().Set("Content-Range", fmt.Sprintf("bytes 10-%d/%d", len(data)-1, len(data)))
					w.Header().Set("Content-Length", strconv.Itoa(len(data)-10))
					w.WriteHeader(http.StatusPartialContent)
					<-r.Context().Done()
				}
				return true
			},
		},
		{
			// Each attempt brings more than a window's minimum: progress
			// refills the budget, so two tries per stretch are enough.
			name: "connection dropped every 10000 bytes", attempts: 2, wantReqs: 10,
			answer: func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
				off := (n - 1) * 10_000
				conn, bw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					panic(err)
				}
				defer conn.Close()
				if off == 0 {
					fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: %d\r\n\r\n", len(data))
				} else {
					fmt.Fprintf(bw, "HTTP/1.1 206 Partial Content\r\nETag: \"v1\"\r\nContent-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n\r\n",
						off, len(data)-1, len(data), len(data)-off)
				}
				_, _ = bw.Write(data[off:min(off+10_000, len(data))])
				_ = bw.Flush()
				return true
			},
		},
		{
			name: "404", wantReqs: 1,
			answer: func(w http.ResponseWriter, _ *http.Request, _ int, _ []byte) bool {
				http.NotFound(w, nil)
				return true
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFileServer(t, data, tc.answer)
			c := &Client{StallWindow: time.Second, Retry: retry.Policy{Attempts: tc.attempts, Sleep: noSleep}}
			got, err := readAll(t, c, fs.URL)
			ranges, _ := fs.requests()
			switch {
			case tc.name == "404":
				if err == nil {
					t.Fatal("no error")
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case !bytes.Equal(got, data):
				t.Fatal("wrong data")
			}
			if len(ranges) != tc.wantReqs {
				t.Errorf("%d requests (%q), want %d", len(ranges), ranges, tc.wantReqs)
			}
		})
	}
}

// Open's body for a server without Range support resumes like Get's.
func TestOpenNoRangeBodyResumes(t *testing.T) {
	data := testData(100_000, 42)
	fs := newFileServer(t, data, func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
		if n == 1 {
			cut(w, r, data, 50_000, `"v1"`)
		} else {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			_, _ = w.Write(data)
		}
		return true
	})
	c := &Client{StallWindow: time.Second, Retry: retry.Policy{Sleep: noSleep}}
	remote, _, body, err := c.Open(context.Background(), fs.URL, 4096)
	if !errors.Is(err, ErrNoRange) {
		t.Fatal(err)
	}
	defer body.Close()
	got, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) || remote.Size != int64(len(data)) {
		t.Fatal("wrong data")
	}
}
