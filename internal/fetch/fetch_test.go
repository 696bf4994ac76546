package fetch

import (
	"github.com/tandem-ota/tandem/internal/retry"

	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestFetchRandomRanges(t *testing.T) {
	data := testData(10<<20, 3)
	tests := []struct {
		name   string
		client Client
		ranges []Range
	}{
		{name: "defaults", ranges: randomRanges(1, int64(len(data)), 200<<10, 64<<10)},
		{
			name:   "small requests, no gap coalescing",
			client: Client{GapThreshold: -1, MaxRequestSize: 64 << 10, Concurrency: 8},
			ranges: randomRanges(2, int64(len(data)), 100<<10, 32<<10),
		},
		{
			name:   "ranges longer than MaxRequestSize",
			client: Client{MaxRequestSize: 1 << 20, Concurrency: 3},
			ranges: []Range{{0, 10}, {100, 3<<20 + 5}, {3<<20 + 200, 1}, {4 << 20, 6<<20 - 1}},
		},
		{name: "one byte", ranges: []Range{{5 << 20, 1}}},
		{name: "whole file", client: Client{MaxRequestSize: 1 << 20}, ranges: []Range{{0, 10 << 20}}},
		{name: "last byte", ranges: []Range{{10<<20 - 1, 1}}},
	}
	for i := range tests {
		tc := &tests[i]
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, data, nil)
			c := &tc.client
			got, err := fetchAll(context.Background(), c, s.remote(), tc.ranges)
			if err != nil {
				t.Fatal(err)
			}
			checkDelivered(t, data, tc.ranges, got)
			reqs := s.requested()
			maxReq := c.maxRequestSize()
			for _, rh := range reqs {
				if requestedBytes(t, []string{rh}) > maxReq {
					t.Errorf("%s asks for more than %d bytes", rh, maxReq)
				}
			}
			for i, ir := range s.ifRange {
				if ir != testETag {
					t.Errorf("request %d: If-Range %q, want %q", i, ir, testETag)
				}
			}
			st := c.Stats()
			if st.Requests != int64(len(reqs)) || st.Retries != 0 || st.BytesReceived != requestedBytes(t, reqs) {
				t.Errorf("stats %+v; server saw %d requests for %d bytes", st, len(reqs), requestedBytes(t, reqs))
			}
			t.Logf("%d ranges, %d requests, %d bytes", len(tc.ranges), st.Requests, st.BytesReceived)
		})
	}
}

func TestFetchCoalescing(t *testing.T) {
	const K = 1 << 10
	tests := []struct {
		name      string
		client    Client
		ranges    []Range
		want      []string // Range headers, sorted
		wantBytes int64
	}{
		{
			name:   "adjacent ranges make one request",
			ranges: []Range{{0, 1000}, {1000, 500}, {1500, 2000}},
			want:   []string{"bytes=0-3499"}, wantBytes: 3500,
		},
		{
			name:   "20 KiB gap, threshold 16 KiB: two requests",
			client: Client{GapThreshold: 16 * K},
			ranges: []Range{{0, 4 * K}, {24 * K, 4 * K}},
			want:   []string{"bytes=0-4095", "bytes=24576-28671"}, wantBytes: 8 * K,
		},
		{
			name:   "20 KiB gap, default threshold: two requests",
			ranges: []Range{{0, 4 * K}, {24 * K, 4 * K}},
			want:   []string{"bytes=0-4095", "bytes=24576-28671"}, wantBytes: 8 * K,
		},
		{
			name:   "20 KiB gap, threshold 32 KiB: one request, gap counted",
			client: Client{GapThreshold: 32 * K},
			ranges: []Range{{0, 4 * K}, {24 * K, 4 * K}},
			want:   []string{"bytes=0-28671"}, wantBytes: 28 * K,
		},
		{
			name:   "gap equal to the threshold is coalesced",
			client: Client{GapThreshold: 100},
			ranges: []Range{{0, 10}, {110, 10}, {221, 10}},
			want:   []string{"bytes=0-119", "bytes=221-230"}, wantBytes: 130,
		},
		{
			name:   "negative threshold: adjacent only",
			client: Client{GapThreshold: -1},
			ranges: []Range{{0, 10}, {10, 10}, {21, 10}},
			want:   []string{"bytes=0-19", "bytes=21-30"}, wantBytes: 30,
		},
		{
			name:   "MaxRequestSize splits coalesced ranges",
			client: Client{MaxRequestSize: 64 * K},
			ranges: []Range{{0, 16 * K}, {16 * K, 16 * K}, {32 * K, 16 * K}, {48 * K, 16 * K}, {64 * K, 16 * K}, {80 * K, 16 * K}, {96 * K, 16 * K}, {112 * K, 16 * K}, {128 * K, 16 * K}, {144 * K, 16 * K}},
			want:   []string{"bytes=0-65535", "bytes=131072-163839", "bytes=65536-131071"}, wantBytes: 160 * K,
		},
		{
			name:   "a range longer than MaxRequestSize takes several requests",
			client: Client{MaxRequestSize: 64 * K},
			ranges: []Range{{1000, 150000}, {151000, 10}},
			want:   []string{"bytes=1000-66535", "bytes=132072-150999", "bytes=151000-151009", "bytes=66536-132071"}, wantBytes: 150010,
		},
		{
			name:   "coalescing stops before MaxRequestSize",
			client: Client{MaxRequestSize: 100, GapThreshold: 1000},
			ranges: []Range{{0, 40}, {50, 40}, {95, 5}, {100, 40}},
			want:   []string{"bytes=0-99", "bytes=100-139"}, wantBytes: 140,
		},
	}
	data := testData(256*K, 4)
	for i := range tests {
		tc := &tests[i]
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, data, nil)
			c := &tc.client
			got, err := fetchAll(context.Background(), c, s.remote(), tc.ranges)
			if err != nil {
				t.Fatal(err)
			}
			checkDelivered(t, data, tc.ranges, got)
			reqs := s.requested()
			slices.Sort(reqs)
			if !slices.Equal(reqs, tc.want) {
				t.Errorf("requests %q, want %q", reqs, tc.want)
			}
			if st := c.Stats(); st.BytesReceived != tc.wantBytes || st.Requests != int64(len(tc.want)) {
				t.Errorf("stats %+v, want %d bytes in %d requests", st, tc.wantBytes, len(tc.want))
			}
		})
	}
}

func TestFetchConcurrency(t *testing.T) {
	data := testData(1<<20, 5)
	var ranges []Range
	for off := int64(0); off+1000 <= int64(len(data)); off += 20 << 10 {
		ranges = append(ranges, Range{off, 1000})
	}
	for _, conc := range []int{1, 3, 8} {
		t.Run(strconv.Itoa(conc), func(t *testing.T) {
			s := newServer(t, data, nil)
			s.delay = 10 * time.Millisecond
			c := &Client{Concurrency: conc, GapThreshold: -1}
			got, err := fetchAll(context.Background(), c, s.remote(), ranges)
			if err != nil {
				t.Fatal(err)
			}
			checkDelivered(t, data, ranges, got)
			if m := s.maxInflight.Load(); m > int64(conc) || m < int64(min(conc, 2)) {
				t.Errorf("at most %d requests in flight, want %d", m, conc)
			}
		})
	}
}

// With one delivery slow, Fetch does not start requests whose buffers it
// could not hold: at most Concurrency jobs are fetched but not delivered.
func TestFetchBoundsBufferedJobs(t *testing.T) {
	data := testData(1<<20, 6)
	var ranges []Range
	for off := int64(0); off < int64(len(data)); off += 64 << 10 {
		ranges = append(ranges, Range{off, 1000})
	}
	s := newServer(t, data, nil)
	c := &Client{Concurrency: 2, GapThreshold: -1}
	err := c.Fetch(context.Background(), s.remote(), ranges, func(i int, _ []byte) error {
		if i == 0 {
			// Range 1 is fetched meanwhile (however slowly); range 2 must
			// wait until range 0 is delivered.
			for deadline := time.Now().Add(10 * time.Second); s.reqs.Load() < 2 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
			if n := s.reqs.Load(); n != 2 {
				return fmt.Errorf("%d requests sent while range 0 is delivered, want 2", n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFetchFaults(t *testing.T) {
	data := testData(1<<20, 7)
	size := len(data)
	ranges := randomRanges(3, int64(size), 48<<10, 40<<10)
	status := func(code int, retryAfter string, when func(n int64) bool) fault {
		return func(w http.ResponseWriter, _ *http.Request, n, _, _ int64, _ []byte) bool {
			if !when(n) {
				return false
			}
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			http.Error(w, http.StatusText(code), code)
			return true
		}
	}
	upTo := func(k int64) func(int64) bool { return func(n int64) bool { return n <= k } }
	always := func(int64) bool { return true }
	tests := []struct {
		name      string
		client    Client
		fault     fault
		wantErr   error    // errors.Is
		wantMsg   []string // in the error
		minRetr   int64
		wantReqs  int64 // if not 0
		minSleep  time.Duration
		wantSleep time.Duration // longest sleep, if not 0
		stalls    bool          // the server stalls: a short stall window
	}{
		{
			name: "connection dropped mid-body",
			fault: func(w http.ResponseWriter, _ *http.Request, n, off, end int64, data []byte) bool {
				if n%3 != 1 || end == off {
					return false
				}
				dropMidBody(w, off, end, data)
				return true
			},
			minRetr: 1,
		},
		{name: "intermittent 500", fault: status(500, "", func(n int64) bool { return n%3 == 0 }), minRetr: 1},
		{name: "intermittent 502", fault: status(502, "", func(n int64) bool { return n%4 == 0 }), minRetr: 1},
		{
			name: "wrong Content-Range start",
			fault: func(w http.ResponseWriter, _ *http.Request, n, off, end int64, data []byte) bool {
				if n > 2 || end+1 >= int64(size) {
					return false
				}
				send206(w, contentRange(off+1, end+1, size), int(end-off+1), data[off+1:end+2])
				return true
			},
			minRetr: 1,
		},
		{
			name: "Content-Range of another size",
			fault: func(w http.ResponseWriter, _ *http.Request, n, off, end int64, data []byte) bool {
				if n > 1 {
					return false
				}
				send206(w, contentRange(off, end, size+1), int(end-off+1), data[off:end+1])
				return true
			},
			minRetr: 1,
		},
		{
			name: "short chunked body",
			fault: func(w http.ResponseWriter, _ *http.Request, n, off, end int64, data []byte) bool {
				if n > 2 {
					return false
				}
				send206(w, contentRange(off, end, size), -1, data[off:off+(end-off)/2])
				return true
			},
			minRetr: 2,
		},
		{
			name: "long chunked body",
			fault: func(w http.ResponseWriter, _ *http.Request, n, off, end int64, data []byte) bool {
				if n > 2 {
					return false
				}
				send206(w, contentRange(off, end, size), -1, append(slices.Clone(data[off:end+1]), "extra"...))
				return true
			},
			minRetr: 2,
		},
		{
			name: "Content-Length disagrees with Content-Range",
			fault: func(w http.ResponseWriter, _ *http.Request, n, off, end int64, data []byte) bool {
				if n > 1 || end == off {
					return false
				}
				send206(w, contentRange(off, end, size), int(end-off), data[off:end])
				return true
			},
			minRetr: 1,
		},
		{
			name: "stalls then recovers", stalls: true,
			fault: func(w http.ResponseWriter, r *http.Request, n, off, end int64, data []byte) bool {
				if n > 3 {
					return false
				}
				stall(w, r, off, end, data)
				return true
			},
			minRetr: 3,
		},
		{
			name: "stalls forever", stalls: true,
			client: Client{Retry: retry.Policy{Attempts: 3}, Concurrency: 1},
			fault: func(w http.ResponseWriter, r *http.Request, _, off, end int64, data []byte) bool {
				stall(w, r, off, end, data)
				return true
			},
			wantErr: ErrStalled, wantMsg: []string{"stalled", "gave up after 3 tries"}, wantReqs: 3,
		},
		{
			name: "500 forever", client: Client{Retry: retry.Policy{Attempts: 4}, Concurrency: 1}, fault: status(500, "", always),
			wantMsg: []string{"500 Internal Server Error", "gave up after 4 tries"}, wantReqs: 4,
		},
		{name: "404 is not retried", client: Client{Concurrency: 1}, fault: status(404, "", always), wantMsg: []string{"404 Not Found"}, wantReqs: 1},
		{name: "416 means the file shrank", client: Client{Concurrency: 1}, fault: status(416, "", always), wantErr: ErrChanged, wantReqs: 1},
		{
			name: "compressed answer is not retried", client: Client{Concurrency: 1},
			fault: func(w http.ResponseWriter, _ *http.Request, _, off, end int64, data []byte) bool {
				w.Header().Set("Content-Encoding", "gzip")
				send206(w, contentRange(off, end, size), int(end-off+1), data[off:end+1])
				return true
			},
			wantMsg: []string{"Content-Encoding"}, wantReqs: 1,
		},
		{name: "429 Retry-After honoured", fault: status(429, "7", upTo(1)), minRetr: 1, minSleep: 7 * time.Second},
		{
			name: "Retry-After capped at the policy's cap", client: Client{Retry: retry.Policy{MaxRetryAfter: 5 * time.Second}},
			fault: status(503, "120", upTo(1)), minRetr: 1, wantSleep: 5 * time.Second,
		},
	}
	for i := range tests {
		tc := &tests[i]
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, data, tc.fault)
			sl := &sleeper{}
			c := &tc.client
			// A short stall window only where the server stalls: elsewhere a
			// pause of a loaded machine must not count as one.
			c.Retry.Sleep, c.StallWindow, c.MaxRequestSize = sl.sleep, 10*time.Second, 128<<10
			if tc.stalls {
				c.StallWindow = 200 * time.Millisecond
			}
			start := time.Now()
			got, err := fetchAll(context.Background(), c, s.remote(), ranges)
			st := c.Stats()
			t.Logf("%v: stats %+v, sleeps %v, err %v", time.Since(start), st, sl.waits, err)
			if tc.wantErr != nil || tc.wantMsg != nil {
				if err == nil {
					t.Fatal("no error")
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("error %q is not %q", err, tc.wantErr)
				}
				for _, m := range tc.wantMsg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not mention %q", err, m)
					}
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				checkDelivered(t, data, ranges, got)
			}
			if st.Retries < tc.minRetr {
				t.Errorf("%d retries, want ≥ %d", st.Retries, tc.minRetr)
			}
			if tc.wantReqs != 0 && st.Requests != tc.wantReqs {
				t.Errorf("%d requests, want %d", st.Requests, tc.wantReqs)
			}
			if m := sl.max(); m < tc.minSleep || (tc.wantSleep != 0 && m != tc.wantSleep) {
				t.Errorf("longest sleep %v, want ≥ %v (exactly %v if set)", m, tc.minSleep, tc.wantSleep)
			}
		})
	}
}

// A dropped request resumes after the bytes already received.
func TestFetchResumes(t *testing.T) {
	data := testData(100_000, 8)
	s := newServer(t, data, func(w http.ResponseWriter, _ *http.Request, n, off, end int64, data []byte) bool {
		if n != 1 {
			return false
		}
		dropMidBody(w, off, end, data)
		return true
	})
	c := &Client{Retry: retry.Policy{Sleep: noSleep}}
	ranges := []Range{{0, 100_000}}
	got, err := fetchAll(context.Background(), c, s.remote(), ranges)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, data, ranges, got)
	if reqs, want := s.requested(), []string{"bytes=0-99999", "bytes=50000-99999"}; !slices.Equal(reqs, want) {
		t.Errorf("requests %q, want %q", reqs, want)
	}
	if st := c.Stats(); st.BytesReceived != 100_000 || st.Retries != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Fetch delivers what the server sends; the caller's digest check catches
// wrong bytes, stops Fetch and fetches the rest again.
func TestFetchWrongBytesCaughtByCaller(t *testing.T) {
	data := testData(1<<20, 9)
	ranges := randomRanges(4, int64(len(data)), 32<<10, 32<<10)
	bad := len(ranges) / 2
	var corrupted atomic.Bool
	s := newServer(t, data, func(w http.ResponseWriter, _ *http.Request, _, off, end int64, data []byte) bool {
		rg := ranges[bad]
		if off > rg.Off || end < rg.Off || corrupted.Swap(true) {
			return false
		}
		body := slices.Clone(data[off : end+1])
		body[rg.Off-off] ^= 0xff
		send206(w, contentRange(off, end, len(data)), len(body), body)
		return true
	})
	sums := make([][32]byte, len(ranges))
	for i, rg := range ranges {
		sums[i] = sha256.Sum256(data[rg.Off : rg.Off+rg.Len])
	}
	errDigest := errors.New("digest mismatch")
	c := &Client{Concurrency: 2}
	good := 0 // ranges verified so far
	check := func(base int) func(int, []byte) error {
		return func(i int, b []byte) error {
			i += base
			if sha256.Sum256(b) != sums[i] {
				return fmt.Errorf("range %d: %w", i, errDigest)
			}
			good = i + 1
			return nil
		}
	}
	err := c.Fetch(context.Background(), s.remote(), ranges, check(0))
	if !errors.Is(err, errDigest) || good != bad {
		t.Fatalf("err %v after %d good ranges, want the digest error at range %d", err, good, bad)
	}
	if err := c.Fetch(context.Background(), s.remote(), ranges[good:], check(good)); err != nil {
		t.Fatal(err)
	}
	if good != len(ranges) {
		t.Fatalf("%d of %d ranges verified", good, len(ranges))
	}
	if st := c.Stats(); st.Retries != 0 {
		t.Errorf("wrong bytes were retried by Fetch: %+v", st)
	}
}

func TestFetchDeliverErrorStops(t *testing.T) {
	data := testData(1<<20, 10)
	ranges := randomRanges(5, int64(len(data)), 16<<10, 64<<10)
	s := newServer(t, data, nil)
	c := &Client{}
	errStop := errors.New("stop")
	calls := 0
	err := c.Fetch(context.Background(), s.remote(), ranges, func(i int, _ []byte) error {
		calls++
		if i == 3 {
			return errStop
		}
		return nil
	})
	if err != errStop || calls != 4 {
		t.Errorf("err %v after %d calls, want errStop after 4", err, calls)
	}
}

// A file replaced on the server mid-run fails the next request's If-Range:
// the server answers 200 and Fetch returns ErrChanged without retrying.
func TestFetchChangedFile(t *testing.T) {
	data := testData(1<<20, 11)
	ranges := randomRanges(6, int64(len(data)), 16<<10, 64<<10)
	var s *server
	s = newServer(t, data, func(w http.ResponseWriter, r *http.Request, n, _, _ int64, _ []byte) bool {
		if n != 3 {
			return false
		}
		// The file is replaced just before the third request; ServeContent
		// evaluates If-Range against the new version.
		v2 := testData(len(data), 12)
		s.replace(v2, `"v2"`)
		w.Header().Set("ETag", `"v2"`)
		http.ServeContent(w, r, "file.bin", testModtime.Add(time.Hour), bytes.NewReader(v2))
		return true
	})
	c := &Client{Concurrency: 1, GapThreshold: -1}
	got, err := fetchAll(context.Background(), c, s.remote(), ranges)
	if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "200") {
		t.Fatalf("err %v, want ErrChanged naming the 200", err)
	}
	if len(got) != 2 {
		t.Errorf("%d ranges delivered, want 2", len(got))
	}
	checkDelivered(t, data, ranges[:len(got)], got)
	if st := c.Stats(); st.Retries != 0 || st.Requests != 3 {
		t.Errorf("stats %+v, want 3 requests and no retry", st)
	}
	// Last-Modified is the validator when there is no strong ETag.
	for _, etag := range []string{"", `W/"v2"`} {
		r := &Remote{URL: s.url(), Size: int64(len(data)), ETag: etag, LastModified: testModtime.Format(http.TimeFormat)}
		c := &Client{Concurrency: 1}
		_, err := fetchAll(context.Background(), c, r, ranges[:1])
		if !errors.Is(err, ErrChanged) {
			t.Errorf("ETag %q, stale Last-Modified: err %v, want ErrChanged", etag, err)
		}
		if ir := s.ifRange[len(s.ifRange)-1]; ir != r.LastModified {
			t.Errorf("ETag %q: If-Range %q, want Last-Modified %q", etag, ir, r.LastModified)
		}
	}
}

func TestFetchContextCancel(t *testing.T) {
	data := testData(1<<20, 13)
	ranges := randomRanges(7, int64(len(data)), 16<<10, 64<<10)
	tests := []struct {
		name   string
		client Client
		fault  fault
	}{
		{
			name:   "during a stalled body",
			client: Client{StallWindow: time.Minute},
			fault: func(w http.ResponseWriter, r *http.Request, _, off, end int64, data []byte) bool {
				stall(w, r, off, end, data)
				return true
			},
		},
		{
			name:   "during backoff",
			client: Client{Retry: retry.Policy{Min: time.Minute, Max: time.Minute}},
			fault: func(w http.ResponseWriter, _ *http.Request, _, _, _ int64, _ []byte) bool {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return true
			},
		},
	}
	for i := range tests {
		tc := &tests[i]
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, data, tc.fault)
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			_, err := fetchAll(ctx, &tc.client, s.remote(), ranges)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Fetch returned %v after the cancel", d)
			}
		})
	}
	t.Run("Open during backoff", func(t *testing.T) {
		s := newServer(t, data, tests[1].fault)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		c := &Client{Retry: retry.Policy{Min: time.Minute, Max: time.Minute}}
		start := time.Now()
		if _, _, _, err := c.Open(ctx, s.url(), 10); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Open returned after %v", d)
		}
	})
}

func TestFetchBadArguments(t *testing.T) {
	s := newServer(t, testData(1000, 14), nil)
	for _, tc := range []struct {
		name   string
		size   int64
		ranges []Range
	}{
		{"empty range", 1000, []Range{{0, 0}}},
		{"negative offset", 1000, []Range{{-1, 10}}},
		{"unsorted", 1000, []Range{{10, 10}, {0, 5}}},
		{"overlapping", 1000, []Range{{0, 10}, {9, 5}}},
		{"beyond the end", 1000, []Range{{990, 11}}},
		{"huge", 1000, []Range{{1, 1<<63 - 1}}},
		{"unknown size", -1, []Range{{0, 1}}},
	} {
		r := &Remote{URL: s.url(), Size: tc.size}
		if err := (&Client{}).Fetch(context.Background(), r, tc.ranges, func(int, []byte) error { return nil }); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if err := (&Client{}).Fetch(context.Background(), &Remote{URL: s.url(), Size: 1000}, nil, nil); err != nil {
		t.Errorf("no ranges: %v", err)
	}
	if n := s.reqs.Load(); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in               string
		start, end, size int64
		ok               bool
	}{
		{"bytes 0-99/100", 0, 99, 100, true},
		{"bytes 5-5/6", 5, 5, 6, true},
		{"bytes 5-9/*", 5, 9, -1, true},
		{"bytes */100", -1, -1, 100, true},
		{"bytes 0-100/100", 0, 0, 0, false},
		{"bytes 9-5/100", 0, 0, 0, false},
		{"bytes -5-9/100", 0, 0, 0, false},
		{"bytes +5-9/100", 0, 0, 0, false},
		{"bytes 5-/100", 0, 0, 0, false},
		{"bytes */*", 0, 0, 0, false},
		{"bytes 0-9", 0, 0, 0, false},
		{"items 0-9/10", 0, 0, 0, false},
		{"", 0, 0, 0, false},
		{"bytes 0-99999999999999999999/1", 0, 0, 0, false},
	} {
		s, e, n, err := parseContentRange(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (s != tc.start || e != tc.end || n != tc.size)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %d, %v", tc.in, s, e, n, err)
		}
	}
}

func TestDefaultHTTPClient(t *testing.T) {
	c := &Client{}
	hc := c.httpClient()
	tr, ok := hc.Transport.(*http.Transport)
	if !ok || hc.Timeout != 0 || tr.ResponseHeaderTimeout != DefaultHeaderTimeout || tr.TLSHandshakeTimeout != DefaultConnectTimeout {
		t.Errorf("default client: timeout %v, transport %T", hc.Timeout, hc.Transport)
	}
	if c.httpClient() != hc {
		t.Error("default client made twice")
	}
	if p := c.policy(); p.Attempts != 5 || p.Min != time.Second || p.Max != 30*time.Second || p.MaxRetryAfter != 30*time.Second {
		t.Errorf("default retry policy %+v", p)
	}
	if c.concurrency() != 4 || c.gapThreshold() != 16<<10 || c.maxRequestSize() != 8<<20 || c.stallWindow() != 15*time.Second || c.minRate() != 1024 || c.deadline() != 4*time.Hour {
		t.Error("wrong defaults")
	}
}

// FetchLimited narrows one call below the Client's settings: one request in
// flight, none longer than the limit, and the same bytes delivered.
func TestFetchLimited(t *testing.T) {
	data := testData(3<<20, 9)
	s := newServer(t, data, nil)
	s.delay = 5 * time.Millisecond
	ranges := []Range{{Off: 0, Len: 1 << 20}, {Off: 1 << 20, Len: 1 << 20}, {Off: 2 << 20, Len: 1 << 20}}
	c := &Client{}
	var got []byte
	err := c.FetchLimited(context.Background(), s.remote(), ranges, Limits{Concurrency: 1, MaxRequestSize: 512 << 10}, func(_ int, b []byte) error {
		got = append(got, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("delivered bytes differ from the file")
	}
	if m := s.maxInflight.Load(); m != 1 {
		t.Errorf("%d requests in flight at once, want 1", m)
	}
	for _, rh := range s.requested() {
		m := closedRange.FindStringSubmatch(rh)
		off, _ := strconv.ParseInt(m[1], 10, 64)
		end, _ := strconv.ParseInt(m[2], 10, 64)
		if end-off+1 > 512<<10 {
			t.Errorf("request %s is longer than 512 KiB", rh)
		}
	}
	if n := len(s.requested()); n != 6 {
		t.Errorf("%d requests, want 6 of 512 KiB", n)
	}
}
