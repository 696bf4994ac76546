package fetch

import (
	"fmt"
	"sync"
	"time"
)

// meter detects the stalls of a Client's transfers as a whole, so that
// requests sharing a slow link are not each judged on their share of it.
// Time counts while at least one request waits (for its response headers or
// in a body read; a caller busy between reads is not a slow server). When a
// StallWindow of such time has brought fewer than MinRate·StallWindow
// bytes, every waiting request is cancelled as stalled; windows follow each
// other, and a transfer that ends within a window is not judged for it.
type meter struct {
	window time.Duration
	need   int64 // bytes a window must bring

	mu      sync.Mutex
	timer   *time.Timer
	waiting map[*request]struct{}
	since   time.Time     // when the current stretch of waiting began
	used    time.Duration // waiting time of the current window before since
	got     int64         // bytes of the current window
}

func newMeter(window time.Duration, rate int64) *meter {
	m := &meter{window: window, need: rate * window.Milliseconds() / 1000, waiting: map[*request]struct{}{}}
	m.timer = time.AfterFunc(time.Hour, m.fire)
	m.timer.Stop()
	return m
}

// wait says that r is about to block; it returns false if r has stalled.
func (m *meter) wait(r *request) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.stalled {
		return false
	}
	if len(m.waiting) == 0 {
		m.since = time.Now()
		m.timer.Reset(m.window - m.used)
	}
	m.waiting[r] = struct{}{}
	return true
}

// done says that r stopped waiting with n bytes; it reports whether r has
// stalled.
func (m *meter) done(r *request, n int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got += int64(n)
	delete(m.waiting, r)
	if len(m.waiting) == 0 {
		m.timer.Stop()
		m.used += time.Since(m.since)
		if m.used >= m.window { // the window ended as r returned
			if m.got < m.need {
				r.stalled = true
				r.cancel()
			}
			m.used, m.got = 0, 0
		}
	}
	return r.stalled
}

// fire ends a window while requests wait.
func (m *meter) fire() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.waiting) == 0 {
		return // done raced with the timer and judged
	}
	now := time.Now()
	m.used += now.Sub(m.since)
	m.since = now
	if m.used < m.window {
		m.timer.Reset(m.window - m.used)
		return
	}
	if m.got < m.need {
		for r := range m.waiting {
			r.stalled = true
			r.cancel()
		}
	}
	m.used, m.got = 0, 0
	m.timer.Reset(m.window)
}

func (c *Client) meter() *meter {
	c.meterOnce.Do(func() { c.m = newMeter(c.stallWindow(), c.minRate()) })
	return c.m
}

func (c *Client) stallErr() error {
	return fmt.Errorf("%w: less than %d bytes/s over %v", ErrStalled, c.minRate(), c.stallWindow())
}
