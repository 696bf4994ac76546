package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/tandem-ota/tandem/internal/install"
)

// Limits of what a caller may send.
const (
	// MaxJSON bounds a JSON request body.
	MaxJSON = 64 << 10
	// MaxSubscribers bounds the event streams open at once.
	MaxSubscribers = 32
	// UploadStall is how long an upload may send nothing before it fails
	// (and releases the device).
	UploadStall = 60 * time.Second
	// lastFile is where the last operation's outcome is kept, relative to
	// the data directory.
	lastFile = "api/last.json"
)

// Caller is who calls and which call classes they may use: Read (info,
// events, the last outcome) and Change (everything that changes the
// device). Root may also name host files (trust keys, TLS files) and skip
// verification in an install, as the CLI may.
type Caller struct {
	Name               string
	Read, Change, Root bool
}

type callerKey struct{}

// WithCaller returns ctx carrying c; Server.Handler reads it from each
// request's context (the socket's ConnContext or the web page's session).
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerOf(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// Server serves the API over Local: one operation at a time, the install's
// events to every subscriber, the last outcome. Its Handler is mounted on
// the Unix socket and, behind the web page's session, on the network.
type Server struct {
	ops Local
	log *slog.Logger

	mu     sync.Mutex
	op     *Operation
	cancel context.CancelCauseFunc
	subs   map[*subscriber]struct{}
	last   *Outcome
}

// NewServer returns a server running the operations of ops, logging to log
// (nil: discarded).
func NewServer(ops Local, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{ops: ops, log: log, subs: map[*subscriber]struct{}{}}
	if d, err := ops.Open(); err == nil {
		var o Outcome
		if found, err := d.ReadJSON(path.Join(d.Config.DataDir, lastFile), MaxJSON, &o); err == nil && found {
			s.last = &o
		}
	}
	return s
}

type route struct {
	method string
	change bool // the Change class; else Read
	serve  func(s *Server, w http.ResponseWriter, r *http.Request)
}

var routes = map[string]route{
	"/info":        {http.MethodGet, false, (*Server).info},
	"/events":      {http.MethodGet, false, (*Server).events},
	"/last":        {http.MethodGet, false, (*Server).lastOutcome},
	"/operation":   {http.MethodGet, false, (*Server).operation},
	"/install":     {http.MethodPost, true, (*Server).install},
	"/cancel":      {http.MethodPost, true, (*Server).cancelOp},
	"/reboot":      {http.MethodPost, true, (*Server).reboot},
	"/commit":      {http.MethodPost, true, (*Server).commit},
	"/mark-bad":    {http.MethodPost, true, (*Server).markBad},
	"/state-reset": {http.MethodPost, true, (*Server).resetState},
}

// Handler serves the API under /v1 (docs/api.md) to the caller in each
// request's context (WithCaller).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, Version)
		rt, known := routes[name]
		switch c := callerOf(r.Context()); {
		case !ok || !known:
			writeError(w, &Error{Status: http.StatusNotFound, Kind: KindNotFound, Message: fmt.Sprintf("no endpoint %s; see docs/api.md", r.URL.Path)})
		case r.Method != rt.method:
			w.Header().Set("Allow", rt.method)
			writeError(w, &Error{Status: http.StatusMethodNotAllowed, Kind: KindMethod, Message: fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, rt.method)})
		case rt.change && !c.Change, !rt.change && !c.Read:
			class := "read"
			if rt.change {
				class = "change"
			}
			writeError(w, &Error{Status: http.StatusForbidden, Kind: KindForbidden,
				Message: fmt.Sprintf("%s may not call %s (the %s class); see docs/api.md, \"Who may call\"", c.name(), r.URL.Path, class)})
		default:
			rt.serve(s, w, r)
		}
	})
}

func (c Caller) name() string {
	if c.Name == "" {
		return "an unknown caller"
	}
	return c.Name
}

// begin starts operation op unless another one runs (ErrBusy); end, which
// the caller must call, records how it ended and frees the server.
func (s *Server) begin(parent context.Context, op Operation) (ctx context.Context, end func(*install.Event, error), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.op != nil {
		busy := *s.op
		return nil, nil, &Error{Status: http.StatusConflict, Kind: KindBusy, Busy: &busy, err: ErrBusy,
			Message: fmt.Sprintf("busy: %s is running (since %s, asked by %s); try again when it ends", busy.describe(), busy.Started.Format(time.RFC3339), busy.Caller)}
	}
	op.Started = time.Now().UTC().Truncate(time.Second)
	s.op = &op
	ctx, s.cancel = context.WithCancelCause(parent)
	return ctx, func(res *install.Event, err error) { s.end(res, err) }, nil
}

func (o Operation) describe() string {
	d := o.Name
	if o.Source != "" {
		d += " from " + o.Source
	}
	if p := o.Progress; p != nil && p.Total > 0 {
		d += fmt.Sprintf(" (%d %%)", 100*p.Bytes/p.Total)
	}
	return d
}

func (s *Server) end(res *install.Event, err error) {
	s.mu.Lock()
	op := *s.op
	s.cancel(nil)
	s.op, s.cancel = nil, nil
	out := &Outcome{Operation: op, Ended: time.Now().UTC().Truncate(time.Second), Status: "ok", Result: res}
	out.Progress = nil
	if err != nil {
		e := asError(err)
		out.Status, out.Error, out.Kind = "failed", e.Message, e.Kind
		if e.Kind == KindCancelled {
			out.Status = "cancelled"
		}
	}
	s.last = out
	if op.Name == "install" {
		final := install.Event{Event: "error", Message: out.Error}
		if res != nil {
			final = *res
		}
		s.publishLocked(final)
	}
	s.mu.Unlock()
	s.log.Info("operation ended", "operation", op.Name, "caller", op.Caller, "status", out.Status, "error", out.Error)
	if d, oerr := s.ops.Open(); oerr == nil {
		if werr := d.WriteJSON(path.Join(d.Config.DataDir, lastFile), out); werr != nil {
			s.log.Warn("cannot keep the last outcome", "error", werr)
		}
	}
}

// progress is an install's event: the operation's progress, to every subscriber.
func (s *Server) progress(e install.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.op != nil {
		s.op.Progress = &e
	}
	s.publishLocked(e)
}

func (s *Server) publishLocked(e install.Event) {
	for sub := range s.subs {
		sub.push(e)
	}
}

// subscriber is one event stream: progress events coalesce (a slow reader
// sees the latest), final ones queue (at most maxQueue).
type subscriber struct {
	mu   sync.Mutex
	q    []install.Event
	wake chan struct{}
}

const maxQueue = 64

func (sub *subscriber) push(e install.Event) {
	sub.mu.Lock()
	if n := len(sub.q); n > 0 && e.Event == "progress" && sub.q[n-1].Event == "progress" {
		sub.q[n-1] = e
	} else if n < maxQueue {
		sub.q = append(sub.q, e)
	}
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

func (sub *subscriber) take() []install.Event {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	q := sub.q
	sub.q = nil
	return q
}

// events streams install events as server-sent events: "event: <kind>"
// and "data: <the CLI's JSON event>", starting with the install in flight.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	sub := &subscriber{wake: make(chan struct{}, 1)}
	s.mu.Lock()
	if len(s.subs) >= MaxSubscribers {
		s.mu.Unlock()
		writeError(w, &Error{Status: http.StatusServiceUnavailable, Kind: KindBusy, Message: fmt.Sprintf("too many event streams (%d); close one", MaxSubscribers)})
		return
	}
	s.subs[sub] = struct{}{}
	if s.op != nil && s.op.Progress != nil {
		sub.push(*s.op.Progress)
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, ": tandem install events (docs/api.md)\n\n"); err != nil || rc.Flush() != nil {
		return
	}
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepAlive.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case <-sub.wake:
			for _, e := range sub.take() {
				b, _ := json.Marshal(e)
				if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Event, b); err != nil {
					return
				}
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	info, err := s.ops.Info(r.Context())
	if err != nil {
		writeError(w, asError(err))
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) lastOutcome(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	l := Last{Operation: s.last}
	s.mu.Unlock()
	if info, err := s.ops.Info(r.Context()); err == nil {
		l.LastUpdate = info.LastUpdate
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) operation(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	var op *Operation
	if s.op != nil {
		c := *s.op
		op = &c
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Running *Operation `json:"running"`
	}{op})
}

func (s *Server) install(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r.Context())
	req, source, err := parseInstall(r, c)
	if err != nil {
		abandonBody(w, r.Body)
		writeError(w, asError(err))
		return
	}
	ctx, end, err := s.begin(r.Context(), Operation{Name: "install", Source: source, Caller: c.Name})
	if err != nil {
		abandonBody(w, r.Body)
		writeError(w, asError(err))
		return
	}
	var up *uploadReader
	if req.Options.Source == "-" {
		up = &uploadReader{ctx: ctx, r: r.Body, rc: http.NewResponseController(w)}
		req.Options.Stdin = up
	}
	s.log.Info("install", "source", source, "caller", c.Name)
	res, err := s.ops.Install(ctx, req, s.progress)
	if up != nil && up.stop != nil {
		up.stop()
	}
	// Whether the install was cancelled is read before abandonBody: moving
	// the read deadline ends the server's background read of the connection,
	// and that cancels the request's context too.
	if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
	}
	var final *install.Event
	if err == nil {
		e := res.Event()
		final = &e
	}
	end(final, err) // the device is free while a refused upload is discarded
	if err != nil {
		if up != nil {
			abandonBody(w, r.Body)
		}
		writeError(w, asError(err))
		return
	}
	writeJSON(w, http.StatusOK, final)
}

// abandonBody ends a request whose body the handler will not use, before
// it answers. While the client keeps sending, the rest is read and
// discarded (for at most drainFor), so that a client that writes its whole
// body before it reads gets the answer rather than a broken pipe when the
// server closes. Then the rest is made unreadable, so that the server
// answers and closes the connection instead of waiting on a slow or
// stalled client.
func abandonBody(w http.ResponseWriter, body io.Reader) {
	w.Header().Set("Connection", "close")
	rc := http.NewResponseController(w)
	buf := make([]byte, 64<<10)
	for end := time.Now().Add(drainFor); time.Now().Before(end); {
		_ = rc.SetReadDeadline(time.Now().Add(drainIdle))
		if _, err := body.Read(buf); err != nil {
			break
		}
	}
	_ = rc.SetReadDeadline(time.Now())
}

// How long abandonBody reads a refused body, and how long it waits for the
// client's next bytes.
const (
	drainFor  = 10 * time.Second
	drainIdle = time.Second
)

// uploadReader is an upload's body: it fails once ctx is cancelled (the
// read deadline is moved to now so a blocked read returns) and when the
// client sends nothing for UploadStall.
type uploadReader struct {
	ctx  context.Context
	r    io.Reader
	rc   *http.ResponseController
	stop func() bool
}

func (u *uploadReader) Read(p []byte) (int, error) {
	if u.stop == nil {
		u.stop = context.AfterFunc(u.ctx, func() { _ = u.rc.SetReadDeadline(time.Now()) })
	}
	if err := u.ctx.Err(); err != nil {
		return 0, context.Cause(u.ctx)
	}
	_ = u.rc.SetReadDeadline(time.Now().Add(UploadStall))
	n, err := u.r.Read(p)
	if err != nil && err != io.EOF {
		if cerr := u.ctx.Err(); cerr != nil {
			return n, context.Cause(u.ctx)
		}
		return n, fmt.Errorf("upload: %w", err)
	}
	return n, err
}

func (s *Server) cancelOp(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.op == nil:
		writeError(w, &Error{Status: http.StatusConflict, Kind: KindRefused, Message: "nothing to cancel: no operation runs"})
	case s.op.Name != "install":
		writeError(w, &Error{Status: http.StatusConflict, Kind: KindRefused, Message: fmt.Sprintf("%s cannot be cancelled; only an install can", s.op.Name)})
	default:
		s.cancel(fmt.Errorf("%w by a caller of /v1/cancel", ErrCancelled))
		writeJSON(w, http.StatusAccepted, struct {
			Cancelled Operation `json:"cancelled"`
		}{*s.op})
	}
}

// simple runs a change that is not an install: body decoded into req, run
// under the one-operation rule, answered with its result.
func simple[Req any](s *Server, w http.ResponseWriter, r *http.Request, name string, run func(context.Context, Req) (any, error)) {
	var req Req
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, asError(err))
		return
	}
	ctx, end, err := s.begin(r.Context(), Operation{Name: name, Caller: callerOf(r.Context()).Name})
	if err != nil {
		writeError(w, asError(err))
		return
	}
	res, err := run(ctx, req)
	end(nil, err)
	if err != nil {
		writeError(w, asError(err))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) commit(w http.ResponseWriter, r *http.Request) {
	simple(s, w, r, "commit", func(ctx context.Context, req CommitRequest) (any, error) { return s.ops.Commit(ctx, req) })
}

func (s *Server) reboot(w http.ResponseWriter, r *http.Request) {
	simple(s, w, r, "reboot", func(ctx context.Context, req RebootRequest) (any, error) { return s.ops.Reboot(ctx, req) })
}

func (s *Server) markBad(w http.ResponseWriter, r *http.Request) {
	simple(s, w, r, "mark-bad", func(ctx context.Context, req MarkBadRequest) (any, error) {
		return struct{}{}, s.ops.MarkBad(ctx, req)
	})
}

func (s *Server) resetState(w http.ResponseWriter, r *http.Request) {
	simple(s, w, r, "state-reset", func(ctx context.Context, req ResetRequest) (any, error) {
		return struct{}{}, s.ops.ResetState(ctx, req)
	})
}

// decodeJSON reads r's body, at most MaxJSON bytes, as exactly one JSON
// document into v, refusing unknown fields; an empty body leaves v as it is.
func decodeJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxJSON))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Kind: KindTooLarge, Message: fmt.Sprintf("request body larger than %d bytes", MaxJSON)}
		}
		return usage("read the request: %v", err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return usage("content type %q: send application/json", ct)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return usage("request body: %v", err)
	}
	if dec.More() {
		return usage("request body: more than one JSON document")
	}
	return nil
}

func usage(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Kind: KindUsage, Message: oneLine(fmt.Sprintf(format, args...))}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.Status, e)
}
