package install

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fetch"
)

// bundleSource gives the installer a bundle's header and its payloads as
// verified streams, whether it reads the bundle as one stream or by ranges.
type bundleSource interface {
	reader() *bundle.Reader
	// check runs after verification and before anything is written.
	check() error
	// payload returns payload i (in order); done releases it.
	payload(i int) (s payloadStream, done func(), err error)
	// finish runs after the last payload.
	finish() error
	stats() DeltaStats
	// resuming says an earlier install of this bundle was interrupted.
	resuming(bool)
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
func openSource(ctx context.Context, d *device.Device, target string, o Options) (bundleSource, error) {
	if !isURL(o.Source) || o.NoDelta {
		rc, err := openStream(ctx, o)
		if err != nil {
			return nil, err
		}
		return newStreamSource(rc, isURL(o.Source))
	}
	client, headers, err := httpClient(o.HTTP)
	if err != nil {
		return nil, err
	}
	gap := o.DeltaGap
	if gap == 0 {
		gap = DefaultDeltaGap
	}
	fc := &fetch.Client{HTTP: client, Headers: headers, GapThreshold: gap, MaxRequestSize: o.MaxRequest}
	remote, first, body, err := fc.Open(ctx, o.Source, probeSize)
	if errors.Is(err, fetch.ErrNoRange) {
		// The server ignores Range: install from the body it sent.
		ss, err := newStreamSource(body, true)
		if ss != nil {
			ss.fc = fc
		}
		return ss, err
	}
	if err != nil {
		return nil, err
	}
	rr := &remoteReader{ctx: ctx, c: fc, remote: remote, off: int64(len(first))}
	br, err := bundle.NewReader(io.MultiReader(bytes.NewReader(first), rr))
	if err != nil {
		return nil, err
	}
	return &deltaSource{ctx: ctx, d: d, target: target, c: fc, remote: remote, br: br, first: first, scanned: map[string]bool{}}, nil
}

// streamSource reads the bundle front to back.
type streamSource struct {
	rc     io.ReadCloser
	count  *countingReader
	br     *bundle.Reader
	remote bool
	fc     *fetch.Client // set when a range probe fell back to this stream
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
func (s *streamSource) check() error           { return nil }
func (s *streamSource) resuming(bool)          {}
func (s *streamSource) close()                 { s.rc.Close() }

func (s *streamSource) payload(int) (payloadStream, func(), error) {
	pr, err := s.br.NextPayload()
	return pr, func() {}, err
}

func (s *streamSource) finish() error {
	if _, err := s.br.NextPayload(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = fmt.Errorf("%w: more payloads than the header lists", bundle.ErrFormat)
		}
		return err
	}
	return nil
}

func (s *streamSource) stats() DeltaStats {
	switch {
	case s.fc != nil:
		st := s.fc.Stats()
		return DeltaStats{BytesDownloaded: st.BytesReceived, Requests: st.Requests}
	case s.remote:
		return DeltaStats{BytesDownloaded: s.count.n, Requests: 1}
	}
	return DeltaStats{}
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

func (s *deltaSource) reader() *bundle.Reader { return s.br }
func (s *deltaSource) close()                 { s.c.HTTP.CloseIdleConnections() }
func (s *deltaSource) finish() error          { return nil }
func (s *deltaSource) resuming(r bool)        { s.resume = r }

// check compares the remote size with the size the header describes.
func (s *deltaSource) check() error {
	switch want := s.br.BundleSize(); {
	case s.remote.Size < want:
		return fmt.Errorf("%w: the server has %d bytes, the bundle needs %d", bundle.ErrTruncated, s.remote.Size, want)
	case s.remote.Size > want:
		return fmt.Errorf("%w: the server has %d bytes, the bundle ends at %d", bundle.ErrTrailing, s.remote.Size, want)
	}
	return nil
}

func (s *deltaSource) payload(i int) (payloadStream, func(), error) {
	st, err := s.deltaPayload(i)
	if err != nil {
		return nil, nil, err
	}
	return st, st.Close, nil
}

func (s *deltaSource) stats() DeltaStats {
	st := s.stats0
	fs := s.c.Stats()
	st.BytesDownloaded, st.Requests = fs.BytesReceived, fs.Requests
	return st
}
