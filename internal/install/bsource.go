package install

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fetch"
)

// bundleSource is an opened bundle: its reader, with the header and the
// signatures read but not yet verified, and, once they are, its payloads in
// order. Either way a payload is a bundle.PayloadReader, which checks every
// chunk it hands out; a source only decides where the bytes come from.
type bundleSource interface {
	reader() *bundle.Reader
	// payload returns payload i's reader (i = 0, 1, ... in order), which
	// the caller closes. resume: an earlier install of this bundle into the
	// target group was interrupted.
	payload(i int, resume bool) (*bundle.PayloadReader, error)
	stats() DeltaStats
	close()
}

// DefaultDeltaGap is the default --delta-gap: measured on real ext4 images
// (docs/benchmarks.md), 4 KiB wastes almost nothing and saves most requests.
const DefaultDeltaGap = 4 << 10

// probeSize is what a delta install asks for first: the header of most
// bundles; the rest of the header and the signatures follow by exact ranges.
const probeSize = 4 << 10

// openSource opens the bundle: by ranges when it is on an HTTP server that
// supports them (and delta is not disabled), else as one stream.
func openSource(ctx context.Context, d *device.Device, active, target string, o Options) (bundleSource, error) {
	if !isURL(o.Source) {
		rc, err := openStream(ctx, o)
		if err != nil {
			return nil, err
		}
		return newStreamSource(rc, false)
	}
	fc, err := fetchClient(d, o.HTTP)
	if err != nil {
		return nil, err
	}
	var body io.ReadCloser
	if o.HTTP.NoDelta {
		_, body, err = fc.Get(ctx, o.Source)
		if err != nil {
			return nil, err
		}
		return fetchedStream(body, fc, "--no-delta")
	}
	remote, first, body, err := fc.Open(ctx, o.Source, probeSize)
	if errors.Is(err, fetch.ErrNoRange) {
		// The server ignores Range: install from the body it sent.
		return fetchedStream(body, fc, "the server ignores Range requests")
	}
	if err != nil {
		return nil, err
	}
	rr := &remoteReader{ctx: ctx, c: fc, remote: remote, off: int64(len(first))}
	br, err := bundle.NewReader(io.MultiReader(bytes.NewReader(first), rr))
	if err != nil {
		return nil, err
	}
	// The file must be the bundle the header describes, no more, no less.
	switch want := br.BundleSize(); {
	case remote.Size < want:
		return nil, fmt.Errorf("%w: the server has %d bytes, the bundle needs %d", bundle.ErrTruncated, remote.Size, want)
	case remote.Size > want:
		return nil, fmt.Errorf("%w: the server has %d bytes, the bundle ends at %d", bundle.ErrTrailing, remote.Size, want)
	}
	return &deltaSource{ctx: ctx, d: d, target: target, c: fc, remote: remote, br: br, first: first, scanned: map[string]bool{},
		active: active, o: o}, nil
}

// fetchClient is the HTTP client of one install's download: the TLS
// settings, headers and range options of o, the [download] limits of the
// device.
func fetchClient(d *device.Device, o HTTPOptions) (*fetch.Client, error) {
	client, headers, err := httpClient(o)
	if err != nil {
		return nil, err
	}
	gap := o.DeltaGap
	if gap == 0 {
		gap = DefaultDeltaGap
	}
	dl := d.Config.Download
	window, deadline := dl.Windows()
	return &fetch.Client{HTTP: client, Headers: headers, GapThreshold: gap, MaxRequestSize: o.MaxRequest,
		MinRate: int64(dl.MinRate), StallWindow: window, Deadline: deadline,
		KeepHeadersOnRedirect: dl.RedirectHeaders == config.RedirectAnyHost}, nil
}

// fetchedStream reads a bundle streamed by fc (which resumes it after a
// stall or a dropped connection).
func fetchedStream(body io.ReadCloser, fc *fetch.Client, why string) (*streamSource, error) {
	ss, err := newStreamSource(body, true)
	if ss != nil {
		ss.fc, ss.why = fc, why
	}
	return ss, err
}

// streamSource reads the bundle front to back: each payload's chunks come
// from the bundle stream itself.
type streamSource struct {
	rc     io.ReadCloser
	count  *countingReader
	br     *bundle.Reader
	remote bool
	fc     *fetch.Client // set for a URL
	why    string        // why the whole bundle is read
}

func newStreamSource(rc io.ReadCloser, remote bool) (*streamSource, error) {
	cr := &countingReader{r: rc}
	br, err := bundle.NewReader(bufio.NewReaderSize(cr, 1<<20))
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &streamSource{rc: rc, count: cr, br: br, remote: remote}, nil
}

func (s *streamSource) reader() *bundle.Reader { return s.br }

func (s *streamSource) close() {
	s.br.Close()
	s.rc.Close()
}

// payload reads the next payload from the stream; the last one's reader
// also checks that the stream ends after it.
func (s *streamSource) payload(int, bool) (*bundle.PayloadReader, error) {
	return s.br.NextPayload()
}

func (s *streamSource) stats() DeltaStats {
	switch {
	case s.fc != nil:
		st := s.fc.Stats()
		return DeltaStats{BytesDownloaded: st.BytesReceived, Requests: st.Requests, Method: MethodFull, Reason: s.why}
	case s.remote:
		return DeltaStats{BytesDownloaded: s.count.n, Requests: 1, Method: MethodFull, Reason: s.why}
	}
	return DeltaStats{Method: MethodFull, Reason: "a bundle file or stream: nothing to download"}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
