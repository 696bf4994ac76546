package fetch

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testData returns n pseudo-random bytes.
func testData(n int, seed byte) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// fault may answer request number n (from 1) for the closed range
// [off, end] itself; returning false lets the server answer normally.
type fault func(w http.ResponseWriter, r *http.Request, n, off, end int64, data []byte) bool

// server serves one file with http.ServeContent (which implements Range and
// If-Range), records every request and fails the test on any Range header
// that is not a single closed range.
type server struct {
	*httptest.Server
	t     *testing.T
	fault fault
	delay time.Duration

	mu      sync.Mutex
	data    []byte
	etag    string
	modtime time.Time
	ranges  []string // Range of every request, in arrival order
	ifRange []string

	reqs, inflight, maxInflight atomic.Int64
}

var closedRange = regexp.MustCompile(`^bytes=(\d+)-(\d+)$`)

const testETag = `"v1"`

var testModtime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func newServer(t *testing.T, data []byte, f fault) *server {
	s := &server{t: t, fault: f, data: data, etag: testETag, modtime: testModtime}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

func (s *server) url() string { return s.URL + "/file.bin" }

func (s *server) remote() *Remote {
	return &Remote{URL: s.url(), Size: int64(len(s.data)), ETag: testETag}
}

// replace swaps the file for another version.
func (s *server) replace(data []byte, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.etag, s.modtime = data, etag, s.modtime.Add(time.Hour)
}

func (s *server) requested() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ranges)
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.reqs.Add(1)
	cur := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for {
		if m := s.maxInflight.Load(); cur <= m || s.maxInflight.CompareAndSwap(m, cur) {
			break
		}
	}
	rh := r.Header.Get("Range")
	s.mu.Lock()
	s.ranges = append(s.ranges, rh)
	s.ifRange = append(s.ifRange, r.Header.Get("If-Range"))
	data, etag, modtime := s.data, s.etag, s.modtime
	s.mu.Unlock()
	m := closedRange.FindStringSubmatch(rh)
	if m == nil {
		s.t.Errorf("request %d: Range %q is not one closed range", n, rh)
		http.Error(w, "bad range", http.StatusBadRequest)
		return
	}
	if ae := r.Header.Get("Accept-Encoding"); ae != "identity" {
		s.t.Errorf("request %d: Accept-Encoding %q", n, ae)
	}
	off, _ := strconv.ParseInt(m[1], 10, 64)
	end, _ := strconv.ParseInt(m[2], 10, 64)
	end = min(end, int64(len(data))-1)
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	if s.fault != nil && s.fault(w, r, n, off, end, data) {
		return
	}
	w.Header().Set("ETag", etag)
	http.ServeContent(w, r, "file.bin", modtime, bytes.NewReader(data))
}

// send206 answers with Content-Range cr and body, with a Content-Length
// header of cl (none if cl < 0, so the body is chunked).
func send206(w http.ResponseWriter, cr string, cl int, body []byte) {
	w.Header().Set("Content-Range", cr)
	if cl >= 0 {
		w.Header().Set("Content-Length", strconv.Itoa(cl))
	}
	w.WriteHeader(http.StatusPartialContent)
	_, _ = w.Write(body)
}

func contentRange(off, end int64, size int) string {
	return fmt.Sprintf("bytes %d-%d/%d", off, end, size)
}

// dropMidBody answers a correct 206 header and half the body, then closes
// the connection.
func dropMidBody(w http.ResponseWriter, off, end int64, data []byte) {
	conn, bw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	fmt.Fprintf(bw, "HTTP/1.1 206 Partial Content\r\nContent-Range: %s\r\nContent-Length: %d\r\n\r\n",
		contentRange(off, end, len(data)), end-off+1)
	_, _ = bw.Write(data[off : off+(end-off+1)/2])
	_ = bw.Flush()
}

// stall answers a correct 206 header and one byte, then sends nothing until
// the client goes away.
func stall(w http.ResponseWriter, r *http.Request, off, end int64, data []byte) {
	w.Header().Set("Content-Range", contentRange(off, end, len(data)))
	w.Header().Set("Content-Length", strconv.FormatInt(end-off+1, 10))
	w.WriteHeader(http.StatusPartialContent)
	_, _ = w.Write(data[off : off+1])
	_ = http.NewResponseController(w).Flush()
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// sleeper replaces the retry policy's Sleep and records the waits asked
// for.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
	return context.Cause(ctx)
}

// noSleep is a retry policy's Sleep that does not wait.
func noSleep(ctx context.Context, _ time.Duration) error { return context.Cause(ctx) }

func (s *sleeper) max() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Max(append([]time.Duration{0}, s.waits...))
}

// randomRanges returns sorted, non-overlapping ranges within size.
func randomRanges(seed uint64, size int64, maxLen, maxGap int64) []Range {
	rng := rand.New(rand.NewPCG(seed, 7))
	var rs []Range
	for off := rng.Int64N(maxGap + 1); ; {
		l := 1 + rng.Int64N(maxLen)
		if off+l > size {
			break
		}
		rs = append(rs, Range{off, l})
		off += l + rng.Int64N(maxGap+1)
	}
	return rs
}

// fetchAll runs Fetch, checking that deliver sees every range once, in
// order, with the right length, and returns copies of the data delivered.
func fetchAll(ctx context.Context, c *Client, r *Remote, ranges []Range) ([][]byte, error) {
	var got [][]byte
	err := c.Fetch(ctx, r, ranges, func(i int, data []byte) error {
		if i != len(got) {
			return fmt.Errorf("deliver(%d) after %d ranges", i, len(got))
		}
		if int64(len(data)) != ranges[i].Len {
			return fmt.Errorf("deliver(%d): %d bytes, want %d", i, len(data), ranges[i].Len)
		}
		got = append(got, bytes.Clone(data))
		return nil
	})
	return got, err
}

// checkDelivered fails t unless got holds exactly data's bytes of ranges.
func checkDelivered(t *testing.T, data []byte, ranges []Range, got [][]byte) {
	t.Helper()
	if len(got) != len(ranges) {
		t.Fatalf("%d ranges delivered, want %d", len(got), len(ranges))
	}
	for i, rg := range ranges {
		if !bytes.Equal(got[i], data[rg.Off:rg.Off+rg.Len]) {
			t.Fatalf("range %d (%d+%d): wrong bytes", i, rg.Off, rg.Len)
		}
	}
}

// requestedBytes sums the lengths of the closed ranges requested.
func requestedBytes(t *testing.T, ranges []string) int64 {
	t.Helper()
	var sum int64
	for _, rh := range ranges {
		m := closedRange.FindStringSubmatch(rh)
		if m == nil {
			t.Fatalf("Range %q", rh)
		}
		a, _ := strconv.ParseInt(m[1], 10, 64)
		b, _ := strconv.ParseInt(m[2], 10, 64)
		sum += b - a + 1
	}
	return sum
}
