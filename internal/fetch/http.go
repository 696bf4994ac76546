package fetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/retry"
)

func transient(err error) error { return retry.Transient(err, 0) }

// do runs attempt under the Client's retry policy and deadline.
func (c *Client) do(ctx context.Context, attempt func() error) error {
	return c.doWith(ctx, c.policy(), attempt)
}

// doWith runs attempt under the retry policy p and the Client's deadline.
func (c *Client) doWith(ctx context.Context, p retry.Policy, attempt func() error) error {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	err := p.Do(ctx, attempt, func(int, time.Duration, error) { c.retries.Add(1) })
	if err != nil && errors.Is(context.Cause(ctx), ErrDeadline) {
		return context.Cause(ctx)
	}
	return err
}

// withDeadline bounds ctx by the Client's deadline; the cause of its end is
// then ErrDeadline, wrapped.
func (c *Client) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	c.startOnce.Do(func() { c.start = time.Now() })
	d := c.deadline()
	return context.WithDeadlineCause(ctx, c.start.Add(d), fmt.Errorf("%w: the download took longer than %v", ErrDeadline, d))
}

// request is one HTTP request in flight and its part in stall detection.
type request struct {
	cancel  context.CancelFunc
	stalled bool // set by the meter, under its lock
}

// get sends one GET, with the given Range unless rng is empty (and
// If-Range, if not empty). The returned body must be closed; closing it
// also ends the request's context.
func (c *Client) get(ctx context.Context, u, rng, ifRange string) (*http.Response, *body, error) {
	dctx, dcancel := c.withDeadline(ctx)
	actx, acancel := context.WithCancel(dctx)
	cancel := func() { acancel(); dcancel() }
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
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	// Explicit identity: bytes must be the file's, never a compressed form.
	req.Header.Set("Accept-Encoding", "identity")
	if ifRange != "" {
		req.Header.Set("If-Range", ifRange)
	}
	c.requests.Add(1)
	r := &request{cancel: acancel}
	m := c.meter()
	// Waiting for the response headers counts towards a stall, as a body
	// read does: a server that never answers is stalled too.
	m.wait(r)
	resp, err := c.httpClient().Do(req)
	stalled := m.done(r, 0)
	if err != nil {
		cancel()
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		switch {
		case errors.Is(context.Cause(dctx), ErrDeadline):
			return nil, nil, fmt.Errorf("fetch: %s: %w", what(u, rng), context.Cause(dctx))
		case stalled:
			return nil, nil, transient(fmt.Errorf("fetch: %s: %w: no answer", what(u, rng), c.stallErr()))
		}
		err = fmt.Errorf("fetch: %s: %w", what(u, rng), err)
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
	return resp, &body{rc: resp.Body, c: c, r: r, ctx: dctx, cancel: cancel}, nil
}

// what names a request in errors: "GET URL (bytes=A-B)".
func what(u, rng string) string {
	if rng == "" {
		return "GET " + u
	}
	return "GET " + u + " (" + rng + ")"
}

// statusErr describes an unexpected status; 408, 429 and 5xx are transient
// (with the Retry-After of a 429 or 503).
func statusErr(u, rng string, resp *http.Response) error {
	return retry.StatusError(fmt.Errorf("fetch: %s: server answered %s", what(u, rng), resp.Status), resp)
}

func checkEncoding(u, rng string, h http.Header) error {
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fmt.Errorf("fetch: %s: server answered with Content-Encoding %q to Accept-Encoding: identity", what(u, rng), ce)
	}
	return nil
}

// body counts the bytes read from a response body and takes part in the
// Client's stall detection: a stall cancels the request.
type body struct {
	rc     io.ReadCloser
	c      *Client
	r      *request
	ctx    context.Context // ends at the deadline
	cancel context.CancelFunc
}

func (b *body) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	m := b.c.meter()
	if !m.wait(b.r) {
		return 0, b.c.stallErr()
	}
	n, err := b.rc.Read(p)
	stalled := m.done(b.r, n)
	if n > 0 {
		b.c.received.Add(int64(n))
	}
	if err != nil && err != io.EOF {
		switch {
		case errors.Is(context.Cause(b.ctx), ErrDeadline):
			err = context.Cause(b.ctx)
		case stalled:
			err = b.c.stallErr()
		}
	}
	return n, err
}

func (b *body) Close() error {
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

// failure classes an error of a body read: the deadline ends the
// download, anything else is worth another try (a cancelled context is
// seen by the retry loop).
func (b *body) failure(err error) error {
	if errors.Is(err, ErrDeadline) {
		return err
	}
	return transient(err)
}

// readExactly fills dst from the body, which must hold exactly len(dst)
// bytes (contentLength is the response's, -1 if unknown), telling progress
// (if not nil) how many bytes are in after every read. It returns how many
// bytes of dst are valid, also on error.
func (b *body) readExactly(u, rng string, dst []byte, contentLength int64, progress func(int)) (int, error) {
	want := len(dst)
	if contentLength >= 0 && contentLength != int64(want) {
		return 0, transient(fmt.Errorf("fetch: %s: Content-Length %d, want %d", what(u, rng), contentLength, want))
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
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return n, transient(fmt.Errorf("fetch: %s: body ended after %d of %d bytes", what(u, rng), n, want))
	default:
		return n, b.failure(fmt.Errorf("fetch: %s: after %d of %d bytes: %w", what(u, rng), n, want, err))
	}
	// Reading on to EOF also returns the connection to the pool.
	var one [1]byte
	if m, _ := io.ReadFull(b, one[:]); m > 0 {
		// The bytes asked for are in (and were reported); the retry only
		// has to see that nothing more is missing. Digests judge them.
		return n, transient(fmt.Errorf("fetch: %s: body longer than %d bytes", what(u, rng), want))
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
