// Package ddiserver is an Eclipse hawkBit DDI server for tests: one tenant,
// any number of controllers, deployment actions with artifacts it serves
// itself (with Range) or links to, cancel requests, configData, ETags and
// injected transient failures. It is built from the DDI documentation's JSON
// shapes (not from tandem's client types) and records every request, so that
// a test can check what a client — tandem's or a real one like SWUpdate's
// suricatta — said.
package ddiserver

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure a Server.
type Options struct {
	Tenant string // default "DEFAULT"
	// TargetToken and GatewayToken, when set, are the accepted
	// credentials ("Authorization: TargetToken …" / "GatewayToken …");
	// with neither, requests need no Authorization.
	TargetToken, GatewayToken string
	// Sleep is config.polling.sleep (default "00:00:01").
	Sleep string
	// TLS, when set, serves https with this configuration (e.g.
	// ClientAuth for client certificates); the server's certificate is
	// httptest's (Server.Certificate).
	TLS *tls.Config
	// Log receives one line per request (optional).
	Log func(string)
}

// Request is one request the server received.
type Request struct {
	Method, Path, Query string
	Header              http.Header
	Body                []byte
	Status              int // the status answered
}

// Artifact is a file of an action.
type Artifact struct {
	Filename string
	Data     []byte // served by the server itself (with Range), or
	URL      string // a link elsewhere (Data unset)
	Size     int64  // with URL
}

// Action is a deployment action for one controller.
type Action struct {
	ID         string
	Controller string
	Download   string // skip, attempt, forced (default forced)
	Update     string // default forced
	// Window is the maintenanceWindow ("" = no window).
	Window    string
	Part      string // chunk part (default "os")
	Name      string // chunk name (default "tandem")
	Version   string
	Artifacts []Artifact
}

// Feedback is one feedback a client posted.
type Feedback struct {
	Kind      string // "deploymentBase" or "cancelAction"
	Execution string
	Finished  string
	Progress  *struct{ Cnt, Of int }
	Details   []string
}

// Result is how an action ended.
type Result struct {
	Success  bool
	Canceled bool
	Details  []string
}

type action struct {
	Action
	sm        int
	cancel    bool // a cancel is requested and not answered
	closed    *Result
	feedbacks []Feedback
}

// Server is a running DDI server.
type Server struct {
	*httptest.Server
	o Options

	mu       sync.Mutex
	actions  []*action
	requests []Request
	config   map[string]map[string]string // per controller
	wantCfg  map[string]bool
	faults   []fault
}

type fault struct {
	code       int
	retryAfter string
	reset      bool
}

// New starts a server on loopback until the test ends.
func New(t testing.TB, o Options) *Server {
	if o.Tenant == "" {
		o.Tenant = "DEFAULT"
	}
	if o.Sleep == "" {
		o.Sleep = "00:00:01"
	}
	s := &Server{o: o, config: map[string]map[string]string{}, wantCfg: map[string]bool{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	if o.TLS != nil {
		s.Server.TLS = o.TLS
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

// Tenant is the server's tenant.
func (s *Server) Tenant() string { return s.o.Tenant }

// Add offers a new action; it returns its id.
func (s *Server) Add(a Action) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.ID == "" {
		a.ID = strconv.Itoa(len(s.actions) + 1)
	}
	for _, d := range []*string{&a.Download, &a.Update} {
		if *d == "" {
			*d = "forced"
		}
	}
	if a.Part == "" {
		a.Part = "os"
	}
	if a.Name == "" {
		a.Name = "tandem"
	}
	s.actions = append(s.actions, &action{Action: a, sm: 40 + len(s.actions)})
	return a.ID
}

// Set changes an open action (e.g. its maintenance window) with f.
func (s *Server) Set(id string, f func(*Action)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.find(id); a != nil {
		f(&a.Action)
	}
}

// Cancel requests the cancel of action id.
func (s *Server) Cancel(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.find(id); a != nil && a.closed == nil {
		a.cancel = true
	}
}

// RequestConfig makes the base resource ask controller for its configData.
func (s *Server) RequestConfig(controller string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wantCfg[controller] = true
}

// Config returns the attributes controller sent.
func (s *Server) Config(controller string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.config[controller]
}

// Fail answers the next n requests with code (e.g. 503, or 429 with
// retryAfter seconds); code 0 resets the connection instead.
func (s *Server) Fail(n, code int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, fault{code: code, retryAfter: retryAfter, reset: code == 0})
	}
}

// Result returns how action id ended (false while open).
func (s *Server) Result(id string) (Result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.find(id); a != nil && a.closed != nil {
		return *a.closed, true
	}
	return Result{}, false
}

// Feedbacks returns the feedback posted for action id.
func (s *Server) Feedbacks(id string) []Feedback {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.find(id); a != nil {
		return append([]Feedback(nil), a.feedbacks...)
	}
	return nil
}

// Requests returns every request received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// CloseAction closes the action id on the server (as if an operator deleted it):
// its feedback answers 410 Gone.
func (s *Server) CloseAction(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.find(id); a != nil && a.closed == nil {
		a.closed = &Result{Details: []string{"closed on the server"}}
	}
}

func (s *Server) find(id string) *action {
	for _, a := range s.actions {
		if a.ID == id {
			return a
		}
	}
	return nil
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := &recorder{ResponseWriter: w}
	defer func() {
		s.mu.Lock()
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Header: r.Header.Clone(), Body: body, Status: rec.status})
		s.mu.Unlock()
		if s.o.Log != nil {
			s.o.Log(fmt.Sprintf("%s %s → %d %s", r.Method, r.URL.RequestURI(), rec.status, bytes.TrimSpace(body)))
		}
	}()
	s.mu.Lock()
	if len(s.faults) > 0 {
		f := s.faults[0]
		s.faults = s.faults[1:]
		s.mu.Unlock()
		if f.reset {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
		}
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		http.Error(rec, http.StatusText(f.code), f.code)
		return
	}
	s.mu.Unlock()
	if !s.authorized(r) {
		http.Error(rec, `{"errorCode":"hawkbit.server.error.unauthorized"}`, http.StatusUnauthorized)
		return
	}
	// /{tenant}/controller/v1/{controller}[/...]
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 4 || parts[0] != s.o.Tenant || parts[1] != "controller" || parts[2] != "v1" {
		http.NotFound(rec, r)
		return
	}
	ctrl, rest := parts[3], parts[4:]
	self := s.baseURL(r, ctrl)
	switch {
	case len(rest) == 0 && r.Method == http.MethodGet:
		s.base(rec, r, ctrl, self)
	case len(rest) == 2 && rest[0] == "deploymentBase" && r.Method == http.MethodGet:
		s.deployment(rec, ctrl, rest[1], self)
	case len(rest) == 3 && rest[0] == "deploymentBase" && rest[2] == "feedback" && r.Method == http.MethodPost:
		s.feedback(rec, ctrl, "deploymentBase", rest[1], body)
	case len(rest) == 2 && rest[0] == "cancelAction" && r.Method == http.MethodGet:
		s.cancelAction(rec, ctrl, rest[1])
	case len(rest) == 3 && rest[0] == "cancelAction" && rest[2] == "feedback" && r.Method == http.MethodPost:
		s.feedback(rec, ctrl, "cancelAction", rest[1], body)
	case len(rest) == 1 && rest[0] == "configData" && r.Method == http.MethodPut:
		s.configData(rec, ctrl, body)
	case len(rest) == 4 && rest[0] == "softwaremodules" && rest[2] == "artifacts" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.artifact(rec, r, ctrl, rest[1], rest[3])
	default:
		http.NotFound(rec, r)
	}
}

func (s *Server) authorized(r *http.Request) bool {
	if s.o.TargetToken == "" && s.o.GatewayToken == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	return (s.o.TargetToken != "" && h == "TargetToken "+s.o.TargetToken) ||
		(s.o.GatewayToken != "" && h == "GatewayToken "+s.o.GatewayToken)
}

func (s *Server) baseURL(r *http.Request, ctrl string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/" + s.o.Tenant + "/controller/v1/" + ctrl
}

func writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	// As hawkBit (Jackson) writes it: < > & are not escaped.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	b := buf.Bytes()
	sum := sha256.Sum256(b)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	w.Header().Set("ETag", etag)
	if r != nil && r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/hal+json;charset=UTF-8")
	_, _ = w.Write(b)
}

type link struct {
	Href string `json:"href"`
}

// open returns the first open action of ctrl.
func (s *Server) open(ctrl string) *action {
	for _, a := range s.actions {
		if a.Controller == ctrl && a.closed == nil {
			return a
		}
	}
	return nil
}

func (s *Server) base(w http.ResponseWriter, r *http.Request, ctrl, self string) {
	s.mu.Lock()
	links := map[string]link{}
	if a := s.open(ctrl); a != nil {
		if a.cancel {
			links["cancelAction"] = link{self + "/cancelAction/" + a.ID}
		} else {
			links["deploymentBase"] = link{fmt.Sprintf("%s/deploymentBase/%s?c=%d", self, a.ID, s.hashAction(a))}
		}
	}
	if s.wantCfg[ctrl] {
		links["configData"] = link{self + "/configData"}
	}
	s.mu.Unlock()
	doc := map[string]any{"config": map[string]any{"polling": map[string]string{"sleep": s.o.Sleep}}}
	if len(links) > 0 {
		doc["_links"] = links
	}
	writeJSON(w, r, doc)
}

// hashAction is the ?c= value: it changes when the action does.
func (s *Server) hashAction(a *action) int {
	b, _ := json.Marshal(a.Action)
	h := sha256.Sum256(b)
	return int(h[0])<<16 | int(h[1])<<8 | int(h[2])
}

func (s *Server) deployment(w http.ResponseWriter, ctrl, id, self string) {
	s.mu.Lock()
	a := s.find(id)
	if a == nil || a.Controller != ctrl {
		s.mu.Unlock()
		http.NotFound(w, nil)
		return
	}
	var arts []any
	for _, f := range a.Artifacts {
		href, size := f.URL, f.Size
		hashes := map[string]string{}
		if f.Data != nil {
			href, size = fmt.Sprintf("%s/softwaremodules/%d/artifacts/%s", self, a.sm, f.Filename), int64(len(f.Data))
			s1, m5, s2 := sha1.Sum(f.Data), md5.Sum(f.Data), sha256.Sum256(f.Data)
			hashes = map[string]string{"sha1": hex.EncodeToString(s1[:]), "md5": hex.EncodeToString(m5[:]), "sha256": hex.EncodeToString(s2[:])}
		}
		links := map[string]link{"download-http": {href}}
		if strings.HasPrefix(href, "https:") {
			links = map[string]link{"download": {href}}
		}
		arts = append(arts, map[string]any{"filename": f.Filename, "hashes": hashes, "size": size, "_links": links})
	}
	dep := map[string]any{"download": a.Download, "update": a.Update,
		"chunks": []any{map[string]any{"part": a.Part, "version": a.Version, "name": a.Name, "artifacts": arts}}}
	if a.Window != "" {
		dep["maintenanceWindow"] = a.Window
	}
	doc := map[string]any{"id": a.ID, "deployment": dep,
		"actionHistory": map[string]any{"status": "RUNNING", "messages": []string{}}}
	s.mu.Unlock()
	writeJSON(w, nil, doc)
}

func (s *Server) cancelAction(w http.ResponseWriter, ctrl, id string) {
	s.mu.Lock()
	a := s.find(id)
	ok := a != nil && a.Controller == ctrl && a.cancel
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, nil)
		return
	}
	writeJSON(w, nil, map[string]any{"id": id, "cancelAction": map[string]string{"stopId": id}})
}

func (s *Server) feedback(w http.ResponseWriter, ctrl, kind, id string, body []byte) {
	var doc struct {
		Status struct {
			Execution string `json:"execution"`
			Result    struct {
				Finished string `json:"finished"`
				Progress *struct {
					Cnt int `json:"cnt"`
					Of  int `json:"of"`
				} `json:"progress"`
			} `json:"result"`
			Details []string `json:"details"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		http.Error(w, "feedback: "+err.Error(), http.StatusBadRequest)
		return
	}
	st := doc.Status
	valid := map[string]bool{"closed": true, "proceeding": true, "canceled": true, "scheduled": true, "rejected": true,
		"resumed": true, "downloaded": true, "download": true}
	if !valid[st.Execution] {
		http.Error(w, fmt.Sprintf("feedback: execution %q", st.Execution), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.find(id)
	if a == nil || a.Controller != ctrl {
		http.NotFound(w, nil)
		return
	}
	if a.closed != nil {
		http.Error(w, `{"errorCode":"hawkbit.server.error.action.closed"}`, http.StatusGone)
		return
	}
	fb := Feedback{Kind: kind, Execution: st.Execution, Finished: st.Result.Finished, Details: st.Details}
	if p := st.Result.Progress; p != nil {
		fb.Progress = &struct{ Cnt, Of int }{p.Cnt, p.Of}
	}
	a.feedbacks = append(a.feedbacks, fb)
	switch {
	case kind == "cancelAction" && st.Execution == "closed":
		a.closed = &Result{Canceled: true, Details: st.Details}
	case kind == "cancelAction" && st.Execution == "rejected":
		a.cancel = false // the action runs on
	case kind == "deploymentBase" && st.Execution == "closed":
		a.closed = &Result{Success: st.Result.Finished == "success", Details: st.Details}
	case kind == "deploymentBase" && st.Execution == "downloaded" && a.Update == "skip" && a.Window == "":
		// A download-only action ends with the download.
		a.closed = &Result{Success: true, Details: st.Details}
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) configData(w http.ResponseWriter, ctrl string, body []byte) {
	var doc struct {
		Mode string            `json:"mode"`
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Data == nil {
		http.Error(w, fmt.Sprintf("configData: %v", err), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.config[ctrl]
	if m == nil || doc.Mode == "replace" {
		m = map[string]string{}
	}
	for k, v := range doc.Data {
		if doc.Mode == "remove" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	s.config[ctrl] = m
	s.wantCfg[ctrl] = false
	w.WriteHeader(http.StatusOK)
}

func (s *Server) artifact(w http.ResponseWriter, r *http.Request, ctrl, sm, file string) {
	s.mu.Lock()
	var data []byte
	for _, a := range s.actions {
		if a.Controller == ctrl && strconv.Itoa(a.sm) == sm {
			for _, f := range a.Artifacts {
				if f.Filename == file && f.Data != nil {
					data = f.Data
				}
			}
		}
	}
	s.mu.Unlock()
	if data == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, file, time.Unix(1700000000, 0), bytes.NewReader(data))
}
