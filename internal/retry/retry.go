// Package retry is tandem's one retry policy, used by every HTTP client
// (bundle fetching, hawkBit, Memfault, update channels) and by the fleet
// adapter loop: which failures are worth another try, how long to wait
// before it (exponential backoff with jitter, or the server's Retry-After
// within a cap), and when to give up.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Policy says how transient failures are retried: up to Attempts tries in
// all, waiting Min, 2·Min, … up to Max between them (each wait drawn from
// its upper half, so that devices that failed together spread out), or
// what the server's Retry-After asks for, capped at MaxRetryAfter.
type Policy struct {
	Attempts      int
	Min, Max      time.Duration
	MaxRetryAfter time.Duration
	// Sleep replaces the wait (tests); it must return early when ctx ends.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Default is the policy of a client that sets none: five tries over about
// a minute, a Retry-After honoured up to 15 minutes.
var Default = Policy{Attempts: 5, Min: time.Second, Max: 30 * time.Second, MaxRetryAfter: 15 * time.Minute}

func (p Policy) withDefaults() Policy {
	if p.Attempts <= 0 {
		p.Attempts = Default.Attempts
	}
	if p.Min <= 0 {
		p.Min = Default.Min
	}
	if p.Max < p.Min {
		p.Max = max(p.Min, Default.Max)
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = Default.MaxRetryAfter
	}
	return p
}

// Wait returns the wait before the n-th retry (n ≥ 1); after is the
// server's Retry-After (0 when it named none).
func (p Policy) Wait(n int, after time.Duration) time.Duration {
	p = p.withDefaults()
	d := p.Min
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	d = d/2 + rand.N(d/2+1)
	if after > 0 {
		return min(after, p.MaxRetryAfter)
	}
	return d
}

// Error marks a failure worth retrying; After is the server's Retry-After.
type Error struct {
	Err   error
	After time.Duration
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Transient marks err as worth retrying (nil stays nil).
func Transient(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err, After: after}
}

// IsTransient reports whether err is worth retrying, and the wait the
// server asked for.
func IsTransient(err error) (time.Duration, bool) {
	var t *Error
	if errors.As(err, &t) {
		return t.After, true
	}
	return 0, false
}

// Do runs attempt until it succeeds, fails with an error that is not
// transient, ctx ends, or the policy's tries are spent; onRetry (optional)
// hears of each retry before its wait.
func (p Policy) Do(ctx context.Context, attempt func() error, onRetry func(n int, wait time.Duration, err error)) error {
	p = p.withDefaults()
	for n := 1; ; n++ {
		err := attempt()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		after, ok := IsTransient(err)
		if !ok {
			return err
		}
		if n >= p.Attempts {
			return fmt.Errorf("%w (gave up after %d tries)", err, n)
		}
		wait := p.Wait(n, after)
		if onRetry != nil {
			onRetry(n, wait, err)
		}
		if err := p.sleep(ctx, wait); err != nil {
			return err
		}
	}
}

func (p Policy) sleep(ctx context.Context, d time.Duration) error {
	if p.Sleep != nil {
		return p.Sleep(ctx, d)
	}
	return Sleep(ctx, d)
}

// Sleep waits d or until ctx ends (then it returns ctx's cause).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// TransientStatus reports whether an HTTP status is worth retrying: 408,
// 429 and 5xx.
func TransientStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// StatusError classes an HTTP answer with status resp.StatusCode: err marked
// transient (with the Retry-After of a 429 or 503) when TransientStatus says
// so, err itself otherwise.
func StatusError(err error, resp *http.Response) error {
	if !TransientStatus(resp.StatusCode) {
		return err
	}
	var after time.Duration
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		after, _ = ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return &Error{Err: err, After: after}
}

// ParseRetryAfter returns the wait a Retry-After value asks for: delay
// seconds (at most a year) or an HTTP date (0 once past), and whether v
// was either.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v != "" && strings.TrimLeft(v, "0123456789") == "" {
		const year = int64(365 * 24 * time.Hour / time.Second)
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > year {
			secs = year
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
