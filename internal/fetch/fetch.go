// Package fetch reads byte ranges of one file from any plain HTTP(S) server,
// object store or CDN that honours Range requests. It is the transport of
// tandem's delta installs: no server-side component is needed.
//
// # Contract
//
// [Client.Open] probes a URL with "Range: bytes=0-(n-1)". A 206 answer with a
// valid Content-Range yields a [Remote] (size, ETag, Last-Modified) and the
// first bytes of the file. A 200 answer means the server ignores Range: Open
// then returns [ErrNoRange] together with the open body, positioned at offset
// 0, so the caller can fall back to a streaming full install without a second
// request.
//
// [Client.Fetch] gets a sorted list of non-overlapping ranges of that Remote
// and hands each range's exact bytes to a deliver callback, in order. Ranges
// whose gap is at most GapThreshold bytes are coalesced into one request (the
// gap bytes are fetched, counted and discarded); no request asks for more than
// MaxRequestSize bytes; up to Concurrency requests are in flight; at most
// Concurrency request buffers are held at once (a single range longer than
// MaxRequestSize is the exception: it is fetched in MaxRequestSize pieces but
// buffered whole, since it is delivered in one call).
//
// Every request names both ends of its range ("bytes=A-B", never the
// open-ended "bytes=A-"), so a misbehaving server or proxy can never make
// tandem download more than it asked for. Every Fetch request carries
// If-Range with the Remote's strong ETag (or its Last-Modified when there is no
// strong ETag): a file replaced on the server answers 200 and Fetch returns
// [ErrChanged] without retrying; the caller must start over with Open.
//
// Only one range is requested per HTTP request; multipart/byteranges is never
// used. One range per request is simpler to parse, is what CDNs and object
// stores cache and serve best (many reject or mangle multi-range requests,
// or answer them with the whole file), and lets every response be verified
// on its own: its Content-Range must equal the request and its body length
// must match exactly.
//
// # Failures and retries
//
// Requests follow the Client's [retry.Policy] (default [DefaultRetry]: 5
// attempts per request, capped exponential backoff with jitter from 1 s to
// 30 s, Retry-After on 429 and 503 honoured up to 30 s). Transient failures
// are retried: connection errors and resets, a body that ends early or is
// longer than announced, a 206 whose Content-Range does not match the
// request, 408, 429 and 5xx answers, and stalls. A retried request resumes
// after the bytes already received, since nothing of a request is delivered
// before all of it has arrived (progress does not refill a request's retry
// budget). Other answers (404, 403, 416, ...) fail at once with an error
// naming the status.
//
// A stall is a transfer slower than MinRate over a StallWindow (default
// 1 KiB/s over 15 s), measured over all requests of the Client while at
// least one of them waits for its response headers or body bytes; the
// waiting requests are then cancelled with [ErrStalled] and retried. With
// the defaults, a request fails within 105 s of its server stalling: the
// first stall is seen within two windows, each of the 4 retries within one,
// with at most 15 s of backoff in all. Deadline
// (default 4 h) bounds the whole download: once it has passed since the
// Client's first request, every request ends with [ErrDeadline], which is
// not retried.
//
// Headers go only to the host (and scheme) of the URL asked for: a
// redirect to another host or port, or from https to http, is followed
// without them, unless KeepHeadersOnRedirect is set.
//
// Fetch does not verify content: deliver gets exactly the bytes the server
// sent for that range. Callers check each chunk's digest in deliver; if
// deliver returns an error, Fetch stops (cancelling requests in flight) and
// returns that error unchanged. Ranges are delivered strictly in order, so
// after any failure the ranges delivered are a prefix of the list. To retry
// wrong bytes the caller may call Fetch again for the remaining ranges,
// starting with the one that failed (a caching proxy may serve the same wrong
// bytes again, so give up after a few attempts).
//
// A Client is safe for concurrent use and must not be copied after first use.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-ota/tandem/internal/retry"
)

// Defaults for the zero values of Client's fields.
const (
	DefaultConcurrency    = 4
	DefaultGapThreshold   = 16 << 10
	DefaultMaxRequestSize = 8 << 20
	DefaultMinRate        = 1 << 10 // bytes per second
	DefaultStallWindow    = 15 * time.Second
	DefaultDeadline       = 4 * time.Hour

	// Timeouts of the default HTTP client.
	DefaultConnectTimeout = 15 * time.Second
	DefaultHeaderTimeout  = 30 * time.Second
)

// DefaultRetry is the retry policy of a Client that sets none; a Client's
// policy takes each zero field from it.
var DefaultRetry = retry.Policy{Attempts: 5, Min: time.Second, Max: 30 * time.Second, MaxRetryAfter: 30 * time.Second}

var (
	// ErrNoRange is returned by Open when the server ignores Range and
	// answers 200 with the whole file.
	ErrNoRange = errors.New("fetch: server does not support range requests")
	// ErrChanged is returned by Fetch when the file on the server is no
	// longer the one Open saw (If-Range answered with 200, or a 416 for a
	// range inside the size Open reported). It is never retried.
	ErrChanged = errors.New("fetch: file changed on the server")
	// ErrStalled is the cause of a request cancelled because the
	// Client's transfers were slower than MinRate over a StallWindow. It
	// is retried.
	ErrStalled = errors.New("fetch: transfer stalled")
	// ErrDeadline ends every request once Deadline has passed since the
	// Client's first request. It is never retried.
	ErrDeadline = errors.New("fetch: download deadline passed")
)

// Client fetches ranges over HTTP. The zero value is ready to use; every zero
// field takes its default.
type Client struct {
	// HTTP is the client requests go through. Nil: a client with a 15 s
	// connect and TLS handshake timeout and a 30 s response header timeout,
	// and no overall timeout (stall detection and Deadline bound requests
	// instead). Stall detection, Deadline and the redirect rule for Headers
	// apply to any client.
	HTTP *http.Client
	// Headers are added to every request (for example authorization), but
	// not to a redirect target on another host or port, or over http after
	// https, unless KeepHeadersOnRedirect is set. Range, If-Range and
	// Accept-Encoding are always set by the Client.
	Headers               http.Header
	KeepHeadersOnRedirect bool
	// Retry is the retry policy of each request; its zero fields take
	// DefaultRetry's (Attempts 1: no retries).
	Retry retry.Policy
	// Concurrency is the number of requests in flight (default 4).
	Concurrency int
	// GapThreshold coalesces two ranges whose gap is at most this many bytes
	// into one request (default 16 KiB; negative: only adjacent ranges).
	GapThreshold int64
	// MaxRequestSize is the most bytes one request asks for (default 8 MiB).
	MaxRequestSize int64
	// MinRate (bytes per second, default 1 KiB) and StallWindow (default
	// 15 s) define a stall: a StallWindow of waiting for the server that
	// brings fewer than MinRate·StallWindow bytes.
	MinRate     int64
	StallWindow time.Duration
	// Deadline bounds the download: no request runs beyond Deadline after
	// the Client's first request (default 4 h).
	Deadline time.Duration

	received, requests, retries atomic.Int64

	httpOnce  sync.Once
	client    *http.Client
	meterOnce sync.Once
	m         *meter
	startOnce sync.Once
	start     time.Time
}

// Remote describes a file that supports range requests.
type Remote struct {
	URL string
	// Size is the file's length in bytes (from Content-Range; from
	// Content-Length, possibly -1, with ErrNoRange).
	Size         int64
	ETag         string
	LastModified string
}

// Stats are totals since a Client was created.
type Stats struct {
	// BytesReceived counts every response body byte read: coalescing gaps,
	// error bodies and bytes of failed attempts included.
	BytesReceived int64
	// Requests counts HTTP requests sent, retries included.
	Requests int64
	// Retries counts attempts after the first of each request.
	Retries int64
}

// Stats returns the totals since c was created. It is safe for concurrent
// use.
func (c *Client) Stats() Stats {
	return Stats{
		BytesReceived: c.received.Load(),
		Requests:      c.requests.Load(),
		Retries:       c.retries.Load(),
	}
}

// Range is a byte range of a Remote: Len bytes from offset Off.
type Range struct{ Off, Len int64 }

func (c *Client) httpClient() *http.Client {
	c.httpOnce.Do(func() {
		var hc http.Client
		if c.HTTP != nil {
			hc = *c.HTTP
		} else {
			d := &net.Dialer{Timeout: DefaultConnectTimeout, KeepAlive: 30 * time.Second}
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.DialContext = d.DialContext
			t.TLSHandshakeTimeout = DefaultConnectTimeout
			t.ResponseHeaderTimeout = DefaultHeaderTimeout
			t.MaxIdleConnsPerHost = max(c.concurrency(), 2)
			hc.Transport = t
		}
		if !c.KeepHeadersOnRedirect {
			hc.CheckRedirect = CheckRedirect(c.Headers, hc.CheckRedirect)
		}
		c.client = &hc
	})
	return c.client
}

// CloseIdleConnections closes the idle connections of the Client's HTTP
// transport.
func (c *Client) CloseIdleConnections() { c.httpClient().CloseIdleConnections() }

// CheckRedirect returns an http.Client CheckRedirect function that removes
// headers (the names of a client's custom headers) from a redirected request
// whose host or port is not the first request's, or that goes from https to
// http, and then calls next (nil: net/http's limit of 10 redirects).
// net/http itself removes only Authorization, Cookie and WWW-Authenticate,
// and those only for another domain.
func CheckRedirect(headers http.Header, next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if !sameOrigin(via[0].URL.Scheme, via[0].URL.Host, req.URL.Scheme, req.URL.Host) {
			for k := range headers {
				req.Header.Del(k)
			}
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
}

// sameOrigin reports whether a redirect from scheme1://host1 to
// scheme2://host2 stays on the same host and port (an upgrade from http on
// port 80 to https on port 443 of the same host counts as staying) and
// does not go from https to http.
func sameOrigin(scheme1, host1, scheme2, host2 string) bool {
	if scheme1 == "https" && scheme2 != "https" {
		return false
	}
	a, b := withPort(scheme1, host1), withPort(scheme2, host2)
	if scheme1 == "http" && scheme2 == "https" {
		a = strings.TrimSuffix(a, ":80") + ":443"
	}
	return strings.EqualFold(a, b)
}

// withPort returns host with the scheme's default port if it names none.
func withPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

func (c *Client) policy() retry.Policy {
	p, d := c.Retry, DefaultRetry
	if p.Attempts <= 0 {
		p.Attempts = d.Attempts
	}
	if p.Min <= 0 {
		p.Min = d.Min
	}
	if p.Max <= 0 {
		p.Max = d.Max
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = d.MaxRetryAfter
	}
	return p
}

func (c *Client) concurrency() int {
	if c.Concurrency <= 0 {
		return DefaultConcurrency
	}
	return c.Concurrency
}

func (c *Client) gapThreshold() int64 {
	switch {
	case c.GapThreshold < 0:
		return 0
	case c.GapThreshold == 0:
		return DefaultGapThreshold
	}
	return c.GapThreshold
}

func (c *Client) maxRequestSize() int64 {
	if c.MaxRequestSize <= 0 {
		return DefaultMaxRequestSize
	}
	return c.MaxRequestSize
}

func (c *Client) minRate() int64 {
	if c.MinRate <= 0 {
		return DefaultMinRate
	}
	return c.MinRate
}

func (c *Client) stallWindow() time.Duration {
	if c.StallWindow <= 0 {
		return DefaultStallWindow
	}
	return c.StallWindow
}

func (c *Client) deadline() time.Duration {
	if c.Deadline <= 0 {
		return DefaultDeadline
	}
	return c.Deadline
}

// Open probes url with "Range: bytes=0-(n-1)" (n ≥ 1).
//
// On a 206 answer with a valid Content-Range it returns the Remote (size from
// Content-Range, ETag, Last-Modified) and the first min(n, Size) bytes of the
// file. An empty file (416 with "Content-Range: bytes */0", or 200 with
// "Content-Length: 0") yields a Remote of Size 0, no bytes and no error.
//
// On a 200 answer (Range ignored) it returns ErrNoRange together with a
// Remote (Size from Content-Length, -1 if unknown) and the open response body
// positioned at offset 0, as a stream like Get's; the caller must close it.
// ctx still governs it.
//
// 408, 429 and 5xx answers and transport failures are retried; any other
// status is an error naming it. Remote.URL is url itself, not the target of a
// redirect (signed redirect targets often expire).
func (c *Client) Open(ctx context.Context, url string, n int64) (*Remote, []byte, io.ReadCloser, error) {
	if n < 1 {
		return nil, nil, nil, fmt.Errorf("fetch: Open %s: probe length %d < 1", url, n)
	}
	var (
		remote *Remote
		data   []byte
		body   io.ReadCloser
	)
	rng := fmt.Sprintf("bytes=0-%d", n-1)
	err := c.do(ctx, func() error {
		resp, b, err := c.get(ctx, url, rng, "")
		if err != nil {
			return err
		}
		hdr := resp.Header
		switch resp.StatusCode {
		case http.StatusPartialContent:
			defer b.Close()
			start, end, size, err := parseContentRange(hdr.Get("Content-Range"))
			if err != nil || size < 0 || start != 0 || end != min(n, size)-1 {
				return transient(fmt.Errorf("fetch: %s: 206 with Content-Range %q", what(url, rng), hdr.Get("Content-Range")))
			}
			if err := checkEncoding(url, rng, hdr); err != nil {
				return err
			}
			buf := make([]byte, end+1)
			if _, err := b.readExactly(url, rng, buf, resp.ContentLength, nil); err != nil {
				return err
			}
			remote = &Remote{URL: url, Size: size, ETag: hdr.Get("ETag"), LastModified: hdr.Get("Last-Modified")}
			data = buf
			return nil
		case http.StatusOK:
			if err := checkEncoding(url, rng, hdr); err != nil {
				b.Close()
				return err
			}
			remote = &Remote{URL: url, Size: resp.ContentLength, ETag: hdr.Get("ETag"), LastModified: hdr.Get("Last-Modified")}
			if resp.ContentLength == 0 {
				b.drainClose() // an empty file: no range to serve
				return nil
			}
			body = c.newStream(ctx, remote, b)
			return nil
		case http.StatusRequestedRangeNotSatisfiable:
			b.drainClose()
			if _, _, size, err := parseContentRange(hdr.Get("Content-Range")); err == nil && size == 0 {
				remote = &Remote{URL: url, Size: 0, ETag: hdr.Get("ETag"), LastModified: hdr.Get("Last-Modified")}
				return nil
			}
		default:
			b.drainClose()
		}
		return statusErr(url, rng, resp)
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if body != nil {
		return remote, nil, body, ErrNoRange
	}
	return remote, data, nil, nil
}
