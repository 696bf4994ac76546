package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Client calls a server on its Unix socket.
type Client struct {
	Socket string // host path of the socket
	http   *http.Client
}

var _ Ops = (*Client)(nil)

// NewClient returns a client of the server at the host path socket.
func NewClient(socket string) *Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	return &Client{Socket: socket, http: &http.Client{Transport: &http.Transport{DialContext: dial, DisableCompression: true}}}
}

// Connect returns the operations of the device under root: a Client when a
// server answers on its socket, else local (in process). A socket that is
// missing, refuses connections (a stale file) or that this user may not open
// means no server for this caller.
func Connect(root string, local Local) Ops {
	p := rootfs.Join(root, SocketPath)
	c, err := net.DialTimeout("unix", p, 2*time.Second)
	if err != nil {
		return local
	}
	c.Close()
	return NewClient(p)
}

const base = "http://tandem" + Version

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if f, ok := body.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			req.ContentLength = fi.Size()
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("tandem API at %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	return decodeAnswer(resp, out)
}

// decodeAnswer decodes a 2xx answer into out, or returns the *Error of
// another one.
func decodeAnswer(resp *http.Response, out any) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxJSON+1<<20))
	if err != nil {
		return fmt.Errorf("tandem API: read the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			return fmt.Errorf("tandem API: %s: %s", resp.Status, oneLine(string(b)))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("tandem API: the answer: %w", err)
	}
	return nil
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path, bytes.NewReader(b), "application/json", out)
}

// Info implements Ops.
func (c *Client) Info(ctx context.Context) (*device.Info, error) {
	var info device.Info
	if err := c.do(ctx, http.MethodGet, "/info", nil, "", &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Last returns the server's last operation and the device's last update.
func (c *Client) Last(ctx context.Context) (*Last, error) {
	var l Last
	return &l, c.do(ctx, http.MethodGet, "/last", nil, "", &l)
}

// Cancel cancels the install in flight.
func (c *Client) Cancel(ctx context.Context) error { return c.post(ctx, "/cancel", struct{}{}, nil) }

// Commit implements Ops.
func (c *Client) Commit(ctx context.Context, r CommitRequest) (*CommitResult, error) {
	var res CommitResult
	return &res, c.post(ctx, "/commit", r, &res)
}

// Reboot implements Ops.
func (c *Client) Reboot(ctx context.Context, r RebootRequest) (*RebootResult, error) {
	var res RebootResult
	return &res, c.post(ctx, "/reboot", r, &res)
}

// MarkBad implements Ops.
func (c *Client) MarkBad(ctx context.Context, r MarkBadRequest) error {
	return c.post(ctx, "/mark-bad", r, nil)
}

// ResetState implements Ops.
func (c *Client) ResetState(ctx context.Context, r ResetRequest) error {
	return c.post(ctx, "/state-reset", r, nil)
}

// Install implements Ops: a URL is sent for the server to fetch; a path or
// "-" is read here and uploaded (so the caller needs only read access to
// the file). Host paths in the options are made absolute first.
func (c *Client) Install(ctx context.Context, r InstallRequest, progress func(install.Event)) (*install.Result, error) {
	o := r.Options
	w := toWire(r)
	for i, f := range w.Trust {
		w.Trust[i] = abs(f)
	}
	w.CAFile, w.CertFile, w.KeyFile = abs(w.CAFile), abs(w.CertFile), abs(w.KeyFile)
	var body io.Reader
	path, contentType := "/install", "application/json"
	switch {
	case w.URL != "":
		b, err := json.Marshal(w)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	case o.Source == "-":
		body, contentType = o.Stdin, "application/octet-stream"
	default:
		f, err := install.OpenFile(o.Source)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		body, contentType = f, "application/octet-stream"
	}
	if contentType != "application/json" {
		if q := w.query().Encode(); q != "" {
			path += "?" + q
		}
	}
	var final install.Event
	var events *eventStream
	if progress != nil {
		var err error
		if events, err = c.subscribe(ctx, progress); err != nil {
			return nil, err
		}
		defer events.close()
	}
	err := c.do(ctx, http.MethodPost, path, body, contentType, &final)
	if events != nil {
		events.drain(ctx, err == nil)
	}
	if err != nil {
		return nil, err
	}
	return &install.Result{BundleHash: final.BundleHash, Group: final.Group, Version: final.Version, BytesWritten: final.Bytes,
		Transfer: install.DeltaStats{BytesDownloaded: final.BytesDownloaded, BytesReused: final.BytesReused,
			ChunksFetched: final.ChunksFetched, Requests: final.Requests}}, nil
}

func abs(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// eventStream forwards an event stream's progress events until its final
// one (done or error) or close.
type eventStream struct {
	cancel context.CancelFunc
	final  chan struct{}
}

// subscribe opens the event stream and returns once the server accepted
// it, so that no event of an install posted afterwards is missed.
func (c *Client) subscribe(ctx context.Context, progress func(install.Event)) (*eventStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events", nil)
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("tandem API at %s: %w", c.Socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		cancel()
		return nil, decodeAnswer(resp, nil)
	}
	s := &eventStream{cancel: cancel, final: make(chan struct{})}
	go func() {
		defer resp.Body.Close()
		defer close(s.final)
		_ = ReadEvents(resp.Body, func(e install.Event) bool {
			if e.Event == "progress" {
				progress(e)
			}
			return e.Event == "progress"
		})
	}()
	return s, nil
}

// drain waits for the stream's final event, so that every progress event
// is delivered before the caller prints the end. After a successful install
// the server queued that event before it answered: it comes, however busy
// the machine (30 s bounds a broken server). A refusal has none: 2 s.
func (s *eventStream) drain(ctx context.Context, succeeded bool) {
	wait := 2 * time.Second
	if succeeded {
		wait = 30 * time.Second
	}
	select {
	case <-s.final:
	case <-ctx.Done():
	case <-time.After(wait):
	}
}

func (s *eventStream) close() { s.cancel(); <-s.final }

// ReadEvents reads a server-sent event stream of install events from r and
// calls fn with each until fn returns false or the stream ends. Lines are
// bounded (64 KiB); comments and unknown fields are skipped.
func ReadEvents(r io.Reader, fn func(install.Event) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var e install.Event
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		if !fn(e) {
			return nil
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, syscall.ECONNRESET) {
		return err
	}
	return nil
}
