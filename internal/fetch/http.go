package fetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// transientError marks a failure worth retrying; retryAfter is the server's
// Retry-After, if any.
type transientError struct {
	err        error
	retryAfter time.Duration
}

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func transient(err error) error { return &transientError{err: err} }

// retry runs attempt until it succeeds, fails with an error that is not
// transient, ctx ends, or the retry budget is spent, sleeping with backoff
// between attempts.
func (c *Client) retry(ctx context.Context, attempt func() error) error {
	limit := c.retryLimit()
	for n := 0; ; n++ {
		err := attempt()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		var t *transientError
		if !errors.As(err, &t) {
			return err
		}
		if n >= limit {
			return fmt.Errorf("%w (gave up after %d attempts)", t.err, n+1)
		}
		c.retries.Add(1)
		if err := c.sleep(ctx, c.backoff(n+1, t.retryAfter)); err != nil {
			return err
		}
	}
}

// backoff returns the wait before the n-th retry (n ≥ 1).
func (c *Client) backoff(n int, retryAfter time.Duration) time.Duration {
	lo, hi := c.backoffBounds()
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	d = d/2 + rand.N(d/2+1)
	if retryAfter > d {
		d = min(retryAfter, hi)
	}
	return d
}

func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		c.Sleep(d)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// get sends one GET with the given Range (and If-Range, if not empty). The
// returned body must be closed; closing it also ends the request's context.
func (c *Client) get(ctx context.Context, u, rng, ifRange string) (*http.Response, *body, error) {
	actx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("fetch: %w", err)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		cancel()
		return nil, nil, fmt.Errorf("fetch: %s: not an http or https URL", u)
	}
	for k, vs := range c.Headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Range", rng)
	// Explicit identity: bytes must be the file's, never a compressed form.
	req.Header.Set("Accept-Encoding", "identity")
	if ifRange != "" {
		req.Header.Set("If-Range", ifRange)
	}
	c.requests.Add(1)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		cancel()
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		err = fmt.Errorf("fetch: GET %s (%s): %w", u, rng, err)
		// TLS failures (our check of the server, or the server's TLS alert,
		// e.g. a missing client certificate) do not heal by retrying.
		var cv *tls.CertificateVerificationError
		var alert tls.AlertError
		var op *net.OpError // crypto/tls reports a received alert as a "remote error"
		if errors.As(err, &cv) || errors.As(err, &alert) || errors.As(err, &op) && op.Op == "remote error" {
			return nil, nil, err
		}
		return nil, nil, transient(err)
	}
	return resp, newBody(resp.Body, c, cancel), nil
}

// TransientStatus reports whether an HTTP status is worth retrying: 408,
// 429 and 5xx.
func TransientStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// statusErr describes an unexpected status; 408, 429 and 5xx are transient.
func statusErr(u, rng string, resp *http.Response) error {
	err := fmt.Errorf("fetch: GET %s (%s): server answered %s", u, rng, resp.Status)
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return &transientError{err: err, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case code == http.StatusRequestTimeout || code >= 500:
		return transient(err)
	}
	return err
}

func checkEncoding(u, rng string, h http.Header) error {
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fmt.Errorf("fetch: GET %s (%s): server answered with Content-Encoding %q to Accept-Encoding: identity", u, rng, ce)
	}
	return nil
}

// body counts the bytes read from a response body and fails a Read that
// makes no progress for the stall timeout by cancelling the request.
type body struct {
	rc      io.ReadCloser
	c       *Client
	stall   time.Duration
	timer   *time.Timer
	stalled chan struct{} // closed when the timer fires
	once    sync.Once     // the timer may fire more than once: close once
	cancel  context.CancelFunc
}

func newBody(rc io.ReadCloser, c *Client, cancel context.CancelFunc) *body {
	b := &body{rc: rc, c: c, stall: c.stallTimeout(), cancel: cancel, stalled: make(chan struct{})}
	// The timer runs only while a Read is blocked, so a slow consumer is
	// not mistaken for a stalled server.
	b.timer = time.AfterFunc(time.Hour, func() {
		b.once.Do(func() {
			close(b.stalled)
			cancel()
		})
	})
	b.timer.Stop()
	return b
}

func (b *body) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	select {
	case <-b.stalled:
		return 0, fmt.Errorf("%w: no data for %v", ErrStalled, b.stall)
	default:
	}
	b.timer.Reset(b.stall)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if n > 0 {
		b.c.received.Add(int64(n))
	}
	if err != nil && err != io.EOF {
		select {
		case <-b.stalled:
			err = fmt.Errorf("%w: no data for %v", ErrStalled, b.stall)
		default:
		}
	}
	return n, err
}

func (b *body) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}

// drainClose reads a little of an unwanted body, so that a short error page
// does not cost the connection, and closes it.
func (b *body) drainClose() {
	_, _ = io.CopyN(io.Discard, b, 4<<10)
	b.Close()
}

// readExactly fills dst from the body, which must hold exactly len(dst)
// bytes (contentLength is the response's, -1 if unknown), telling progress
// (if not nil) how many bytes are in after every read. It returns how many
// bytes of dst are valid, also on error.
func (b *body) readExactly(u, rng string, dst []byte, contentLength int64, progress func(int)) (int, error) {
	want := len(dst)
	if contentLength >= 0 && contentLength != int64(want) {
		return 0, transient(fmt.Errorf("fetch: GET %s (%s): Content-Length %d, want %d", u, rng, contentLength, want))
	}
	n := 0
	var err error
	for n < want && err == nil {
		var m int
		m, err = b.Read(dst[n:])
		n += m
		if m > 0 && progress != nil {
			progress(n)
		}
	}
	if n == want {
		err = nil
	} else if err == io.EOF && n > 0 {
		err = io.ErrUnexpectedEOF
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrStalled):
		return n, transient(fmt.Errorf("fetch: GET %s (%s): after %d of %d bytes: %w", u, rng, n, want, err))
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return n, transient(fmt.Errorf("fetch: GET %s (%s): body ended after %d of %d bytes", u, rng, n, want))
	default:
		return n, transient(fmt.Errorf("fetch: GET %s (%s): reading body after %d of %d bytes: %w", u, rng, n, want, err))
	}
	// Reading on to EOF also returns the connection to the pool.
	var one [1]byte
	if m, _ := io.ReadFull(b, one[:]); m > 0 {
		// The bytes asked for are in (and were reported); the retry only
		// has to see that nothing more is missing. Digests judge them.
		return n, transient(fmt.Errorf("fetch: GET %s (%s): body longer than %d bytes", u, rng, want))
	}
	return n, nil
}

// parseContentRange parses "bytes A-B/T", "bytes A-B/*" (size -1) and
// "bytes */T" (start and end -1).
func parseContentRange(s string) (start, end, size int64, err error) {
	bad := fmt.Errorf("fetch: bad Content-Range %q", s)
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	rng, total, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	size = -1
	if total != "*" {
		if size, ok = parseUint(total); !ok {
			return 0, 0, 0, bad
		}
	}
	if rng == "*" {
		if size < 0 {
			return 0, 0, 0, bad
		}
		return -1, -1, size, nil
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	if start, ok = parseUint(a); !ok {
		return 0, 0, 0, bad
	}
	if end, ok = parseUint(b); !ok || end < start || (size >= 0 && end >= size) {
		return 0, 0, 0, bad
	}
	return start, end, size, nil
}

func parseUint(s string) (int64, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// parseRetryAfter returns the wait a Retry-After value asks for; invalid
// and past values give 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	d, _ := ParseRetryAfter(v, now)
	return d
}

// ParseRetryAfter returns the wait a Retry-After value asks for: delay
// seconds (at most a year) or an HTTP date (0 once past), and whether v
// was either.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if secs, ok := parseUint(v); ok {
		if secs > int64(365*24*time.Hour/time.Second) {
			secs = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
