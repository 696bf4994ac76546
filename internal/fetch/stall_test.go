package fetch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/retry"
)

// trickle answers like stall but keeps sending one byte every gap, so that
// a no-progress timer never fires.
func trickle(gap time.Duration) fault {
	return func(w http.ResponseWriter, r *http.Request, _, off, end int64, data []byte) bool {
		w.Header().Set("Content-Range", contentRange(off, end, len(data)))
		w.Header().Set("Content-Length", strconv.FormatInt(end-off+1, 10))
		w.WriteHeader(http.StatusPartialContent)
		rc := http.NewResponseController(w)
		for i := off; i <= end; i++ {
			if _, err := w.Write(data[i : i+1]); err != nil {
				return true
			}
			_ = rc.Flush()
			select {
			case <-r.Context().Done():
				return true
			case <-time.After(gap):
			}
		}
		return true
	}
}

// A server that sends a byte every 20 ms (50 B/s) is stalled when the
// minimum is 1 KiB/s, although no read ever waits long (issue 11,
// hardening 6: a 1-byte-per-20-s trickle passed the 30 s no-progress check).
func TestFetchTrickleIsAStall(t *testing.T) {
	data := testData(64<<10, 30)
	s := newServer(t, data, trickle(20*time.Millisecond))
	c := &Client{StallWindow: 200 * time.Millisecond, Retry: retry.Policy{Attempts: 2, Sleep: noSleep}}
	_, err := fetchAll(context.Background(), c, s.remote(), []Range{{0, int64(len(data))}})
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("err %v, want ErrStalled", err)
	}
	if !strings.Contains(err.Error(), "gave up after 2 tries") {
		t.Errorf("err %q: want the retries spent", err)
	}
	if st := c.Stats(); st.Requests != 2 || st.Retries != 1 {
		t.Errorf("stats %+v, want 2 requests (a stall is retried)", st)
	}
}

// A server that never answers the request is stalled too (issue 11,
// hardening 6): waiting for response headers counts.
func TestOpenNoAnswerIsAStall(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer s.Close()
	c := &Client{StallWindow: 250 * time.Millisecond, Retry: retry.Policy{Attempts: 2, Sleep: noSleep}}
	_, _, _, err := c.Open(context.Background(), s.URL, 10)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("err %v, want ErrStalled", err)
	}
	if st := c.Stats(); st.Requests != 2 {
		t.Errorf("%d requests, want 2", st.Requests)
	}
}

// Requests that share a link are judged together: four requests each
// below the minimum rate, but above it together, are not stalled; one of
// them alone is. (The window's end is played by hand: no timing.)
func TestMeterJudgesTheClientAsAWhole(t *testing.T) {
	m := newMeter(time.Hour, 1) // 3600 bytes a window
	defer m.timer.Stop()
	var cancelled int
	endWindow := func(got int64, rs ...*request) {
		m.mu.Lock()
		for _, r := range rs {
			m.waiting[r] = struct{}{}
		}
		m.since, m.used, m.got = time.Now(), m.window, got
		m.mu.Unlock()
		m.fire()
		m.mu.Lock()
		clear(m.waiting)
		m.mu.Unlock()
	}
	var rs []*request
	for range 4 {
		rs = append(rs, &request{cancel: func() { cancelled++ }})
	}
	endWindow(4*1000, rs...) // 1000 bytes each
	if cancelled != 0 {
		t.Errorf("%d requests cancelled", cancelled)
	}
	endWindow(1000, rs[0])
	if !rs[0].stalled || cancelled != 1 {
		t.Errorf("a request at 1000 bytes an hour against 3600: stalled %v", rs[0].stalled)
	}
	if m.wait(rs[0]) {
		t.Error("a stalled request may wait again")
	}
}

// A caller that is slow between reads does not make the server stalled.
func TestStallIgnoresASlowReader(t *testing.T) {
	data := testData(8<<10, 31)
	s := newFileServer(t, data, nil)
	c := &Client{StallWindow: time.Second, MinRate: 100 << 10, Retry: retry.Policy{Attempts: 1}}
	_, rc, err := c.Get(context.Background(), s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got bytes.Buffer
	buf := make([]byte, 1<<10)
	for {
		n, err := rc.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // 8 reads: longer than two windows
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Error("wrong data")
	}
}

// The deadline ends a download that is fast enough not to stall but too
// slow to finish, and it is not retried (issue 11, hardening 6).
func TestDeadline(t *testing.T) {
	data := testData(1<<20, 32)
	t.Run("Fetch", func(t *testing.T) {
		s := newServer(t, data, trickle(time.Millisecond))
		c := &Client{MinRate: 1, Deadline: 300 * time.Millisecond, Retry: retry.Policy{Sleep: noSleep}}
		start := time.Now()
		_, err := fetchAll(context.Background(), c, s.remote(), []Range{{0, int64(len(data))}})
		if !errors.Is(err, ErrDeadline) {
			t.Fatalf("err %v, want ErrDeadline", err)
		}
		if st := c.Stats(); st.Requests != 1 || st.Retries != 0 {
			t.Errorf("stats %+v: the deadline is not retried", st)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Fetch returned after %v", d)
		}
		// Nothing more after the deadline.
		if _, _, _, err := c.Open(context.Background(), s.url(), 10); !errors.Is(err, ErrDeadline) {
			t.Errorf("Open after the deadline: %v", err)
		}
	})
	t.Run("Get", func(t *testing.T) {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			rc := http.NewResponseController(w)
			for i := range data {
				if _, err := w.Write(data[i : i+1]); err != nil {
					return
				}
				_ = rc.Flush()
				time.Sleep(time.Millisecond)
			}
		}))
		defer s.Close()
		c := &Client{MinRate: 1, Deadline: 300 * time.Millisecond, Retry: retry.Policy{Sleep: noSleep}}
		_, rc, err := c.Get(context.Background(), s.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if _, err := io.Copy(io.Discard, rc); !errors.Is(err, ErrDeadline) {
			t.Fatalf("err %v, want ErrDeadline", err)
		}
		if st := c.Stats(); st.Requests != 1 {
			t.Errorf("%d requests: the deadline is not retried", st.Requests)
		}
	})
}
