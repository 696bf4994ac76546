package fetch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Get sends a plain GET for url (no Range header) and returns the file's
// Remote (Size from Content-Length, -1 if unknown) and its body as a
// stream, for a caller that reads a whole file front to back (and verifies
// it as it goes).
//
// The stream survives transient failures, stalls included: it asks again
// for the rest, "Range: bytes=N-(Size-1)" with If-Range when the size is
// known, and continues after the N bytes already read. A server that
// ignores Range answers with the whole file again, of which the stream
// skips those N bytes; an answer that shows another file (another ETag,
// Last-Modified or size) fails with ErrChanged. Failed attempts count
// against the retry policy until a window's worth of bytes
// (MinRate·StallWindow) has arrived since the last refill. Deadline ends
// the stream with ErrDeadline. 408, 429 and 5xx answers to the first
// request are retried; any other status is an error naming it.
func (c *Client) Get(ctx context.Context, url string) (*Remote, io.ReadCloser, error) {
	s := &stream{c: c, ctx: ctx, remote: &Remote{URL: url, Size: -1}}
	if err := c.do(ctx, func() error { s.tries++; return s.open() }); err != nil {
		return nil, nil, err
	}
	return s.remote, s, nil
}

// stream reads a file front to back across requests.
type stream struct {
	c      *Client
	ctx    context.Context
	remote *Remote // as the first answer described the file
	opened bool    // remote holds the first answer's size and validators
	b      *body   // the current response body; nil after a failure
	off    int64   // bytes handed to the caller
	failed error   // why the last body went away
	tries  int     // requests sent since mark
	mark   int64   // off when the retry budget was last refilled
	err    error   // sticky: io.EOF or the error that ended the stream
}

// newStream continues the body of an answer 200 to Open.
func (c *Client) newStream(ctx context.Context, r *Remote, b *body) *stream {
	return &stream{c: c, ctx: ctx, remote: r, opened: true, b: b, tries: 1}
}

func (s *stream) Read(p []byte) (int, error) {
	for s.err == nil {
		if s.b == nil {
			s.err = s.resume()
			continue
		}
		n, err := s.b.Read(p)
		s.off += int64(n)
		if err == io.EOF && s.remote.Size >= 0 && s.off < s.remote.Size {
			err = fmt.Errorf("fetch: GET %s: body ended after %d of %d bytes", s.remote.URL, s.off, s.remote.Size)
		}
		switch err {
		case nil:
			return n, nil
		case io.EOF:
			s.err = io.EOF
			return n, io.EOF
		}
		s.failed = s.b.failure(fmt.Errorf("fetch: GET %s: after %d bytes: %w", s.remote.URL, s.off, err))
		s.b.Close()
		s.b = nil
		if n > 0 {
			return n, nil
		}
	}
	return 0, s.err
}

// resume retries the stream after a failure, within what is left of the
// retry budget.
func (s *stream) resume() error {
	if s.off-s.mark >= s.c.meter().need {
		s.tries, s.mark = 1, s.off // the request that failed counts
	}
	p := s.c.policy()
	p.Attempts = max(1, p.Attempts-s.tries+1)
	failed := s.failed
	return s.c.doWith(s.ctx, p, func() error {
		if failed != nil {
			err := failed
			failed = nil
			return err
		}
		s.tries++
		return s.open()
	})
}

// open sends the request that continues the stream at off.
func (s *stream) open() error {
	u := s.remote.URL
	var rng, ifRange string
	if s.off > 0 && s.remote.Size > 0 {
		rng = fmt.Sprintf("bytes=%d-%d", s.off, s.remote.Size-1)
		ifRange = s.remote.LastModified
		if s.remote.ETag != "" && !strings.HasPrefix(s.remote.ETag, "W/") {
			ifRange = s.remote.ETag
		}
	}
	resp, b, err := s.c.get(s.ctx, u, rng, ifRange)
	if err != nil {
		return err
	}
	hdr := resp.Header
	if err := checkEncoding(u, rng, hdr); err != nil {
		b.Close()
		return err
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && rng != "":
		start, end, size, err := parseContentRange(hdr.Get("Content-Range"))
		if err != nil || start != s.off || end != s.remote.Size-1 || size >= 0 && size != s.remote.Size {
			b.drainClose()
			return transient(fmt.Errorf("fetch: %s: 206 with Content-Range %q", what(u, rng), hdr.Get("Content-Range")))
		}
	case resp.StatusCode == http.StatusOK:
		if !s.opened {
			s.opened = true
			s.remote.Size, s.remote.ETag, s.remote.LastModified = resp.ContentLength, hdr.Get("ETag"), hdr.Get("Last-Modified")
		} else if s.changed(resp) {
			b.Close()
			return fmt.Errorf("%w: %s answered %s for another file (ETag %q, Last-Modified %q, %d bytes)",
				ErrChanged, what(u, rng), resp.Status, hdr.Get("ETag"), hdr.Get("Last-Modified"), resp.ContentLength)
		}
		// The whole file again: skip what the caller already has.
		if _, err := io.CopyN(io.Discard, b, s.off); err != nil {
			b.Close()
			return b.failure(fmt.Errorf("fetch: %s: skipping the %d bytes already read: %w", what(u, rng), s.off, err))
		}
	default:
		b.drainClose()
		return statusErr(u, rng, resp)
	}
	s.b = b
	return nil
}

// changed reports whether a 200 answer describes another file than the
// first answer did.
func (s *stream) changed(resp *http.Response) bool {
	r := s.remote
	return r.ETag != "" && resp.Header.Get("ETag") != r.ETag ||
		r.LastModified != "" && resp.Header.Get("Last-Modified") != r.LastModified ||
		r.Size >= 0 && resp.ContentLength >= 0 && resp.ContentLength != r.Size
}

// Close ends the stream and its request.
func (s *stream) Close() error {
	if s.err == nil {
		s.err = fmt.Errorf("fetch: GET %s: read after Close", s.remote.URL)
	}
	if s.b != nil {
		err := s.b.Close()
		s.b = nil
		return err
	}
	return nil
}
