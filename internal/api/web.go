package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

//go:embed web
var webFiles embed.FS

// Session and login limits of the web page.
const (
	sessionCookie  = "tandem_session"
	csrfHeader     = "X-CSRF-Token"
	sessionIdle    = 30 * time.Minute
	sessionMax     = 12 * time.Hour
	maxSessions    = 16
	loginBurst     = 5                // failed or not, per client address
	loginEvery     = 12 * time.Second // one more attempt per client address
	loginBurstAll  = 20               // all clients together
	loginEveryAll  = 3 * time.Second
	maxLimitedAddr = 4096
)

// Web is the field-service web page: the embedded page, the password
// login, sessions, and the API (Server.Handler) under /api for a logged-in
// session, every change with its CSRF token. It must be served over TLS
// (the session cookie is Secure).
type Web struct {
	srv *Server
	now func() time.Time

	mu       sync.Mutex
	sessions map[string]*session // by the SHA-256 of the cookie's token
	perAddr  map[string]*bucket
	all      bucket
}

type session struct {
	csrf     string
	password string // the id of the password it was opened with
	created  time.Time
	seen     time.Time
	addr     string
}

// NewWeb returns the page for s.
func NewWeb(s *Server) *Web {
	return &Web{srv: s, now: time.Now, sessions: map[string]*session{}, perAddr: map[string]*bucket{}}
}

// Handler serves the page.
func (wb *Web) Handler() http.Handler {
	mux := http.NewServeMux()
	assets, _ := fs.Sub(webFiles, "web")
	static := http.FileServerFS(assets)
	mux.Handle("GET /{$}", static)
	mux.Handle("GET /app.js", static)
	mux.Handle("GET /style.css", static)
	mux.HandleFunc("POST /login", wb.login)
	mux.HandleFunc("POST /logout", wb.logout)
	mux.HandleFunc("GET /session", wb.sessionInfo)
	mux.Handle("/api/", http.StripPrefix("/api", wb.authed(wb.srv.Handler())))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		h.Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// password returns the password's hash; ErrNoPassword while none is set.
func (wb *Web) password() (*passwordHash, error) {
	d, err := wb.srv.ops.Open()
	if err != nil {
		return nil, err
	}
	return loadPassword(d)
}

// sameOrigin refuses a request another site's page made: a cross-site
// Sec-Fetch-Site or an Origin other than this host.
func sameOrigin(r *http.Request) error {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return fmt.Errorf("cross-site request (%s) refused", s)
	}
	if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
		return fmt.Errorf("request from origin %q refused", o)
	}
	return nil
}

func (wb *Web) login(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		writeError(w, &Error{Status: http.StatusForbidden, Kind: KindForbidden, Message: err.Error()})
		return
	}
	addr := clientAddr(r)
	if wait := wb.allow(addr); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		writeError(w, &Error{Status: http.StatusTooManyRequests, Kind: KindBusy,
			Message: fmt.Sprintf("too many login attempts; try again in %d s", int(math.Ceil(wait.Seconds())))})
		return
	}
	var req struct {
		Password string `json:"password"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, asError(err))
		return
	}
	h, err := wb.password()
	if err != nil {
		writeError(w, noPassword(err))
		return
	}
	if !h.check(req.Password) {
		wb.srv.log.Warn("web login refused", "addr", addr)
		writeError(w, &Error{Status: http.StatusUnauthorized, Kind: KindForbidden, Message: "wrong password"})
		return
	}
	token, csrf := random(), random()
	now := wb.now()
	wb.mu.Lock()
	if len(wb.sessions) >= maxSessions {
		var oldest string
		for k, s := range wb.sessions {
			if oldest == "" || s.seen.Before(wb.sessions[oldest].seen) {
				oldest = k
			}
		}
		delete(wb.sessions, oldest)
	}
	wb.sessions[tokenKey(token)] = &session{csrf: csrf, password: h.id(), created: now, seen: now, addr: addr}
	wb.mu.Unlock()
	wb.srv.log.Info("web login", "addr", addr)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", MaxAge: int(sessionMax.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]string{"csrf": csrf})
}

func noPassword(err error) *Error {
	if errors.Is(err, ErrNoPassword) {
		return &Error{Status: http.StatusServiceUnavailable, Kind: "no-password", Message: err.Error()}
	}
	return asError(err)
}

// current returns the request's live session and its key, or an error to answer.
func (wb *Web) current(r *http.Request) (*session, string, *Error) {
	h, err := wb.password()
	if err != nil {
		return nil, "", noPassword(err)
	}
	unauth := &Error{Status: http.StatusUnauthorized, Kind: KindForbidden, Message: "log in first"}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, "", unauth
	}
	key := tokenKey(c.Value)
	now := wb.now()
	wb.mu.Lock()
	defer wb.mu.Unlock()
	s := wb.sessions[key]
	switch {
	case s == nil:
		return nil, "", unauth
	case s.password != h.id() || now.Sub(s.seen) > sessionIdle || now.Sub(s.created) > sessionMax:
		delete(wb.sessions, key)
		return nil, "", &Error{Status: http.StatusUnauthorized, Kind: KindForbidden, Message: "the session ended; log in again"}
	}
	s.seen = now
	return s, key, nil
}

func (wb *Web) sessionInfo(w http.ResponseWriter, r *http.Request) {
	s, _, e := wb.current(r)
	if e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"csrf": s.csrf})
}

// checkCSRF refuses a change without the session's token or from another site.
func checkCSRF(r *http.Request, s *session) *Error {
	if err := sameOrigin(r); err != nil {
		return &Error{Status: http.StatusForbidden, Kind: KindForbidden, Message: err.Error()}
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(s.csrf)) != 1 {
		return &Error{Status: http.StatusForbidden, Kind: KindForbidden, Message: "missing or wrong CSRF token; reload the page"}
	}
	return nil
}

func (wb *Web) logout(w http.ResponseWriter, r *http.Request) {
	s, key, e := wb.current(r)
	if e == nil {
		e = checkCSRF(r, s)
	}
	if e != nil {
		writeError(w, e)
		return
	}
	wb.mu.Lock()
	delete(wb.sessions, key)
	wb.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, struct{}{})
}

// authed lets a logged-in session through to next, with the CSRF token on
// every request that is not a GET.
func (wb *Web) authed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _, e := wb.current(r)
		if e == nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
			e = checkCSRF(r, s)
		}
		if e != nil {
			writeError(w, e)
			return
		}
		c := Caller{Name: "web (" + clientAddr(r) + ")", Read: true, Change: true}
		next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), c)))
	})
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func tokenKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// bucket is a token bucket of login attempts.
type bucket struct {
	tokens float64
	at     time.Time
}

// take takes one token from b (burst, one more every every); it returns
// how long to wait when none is left.
func (b *bucket) take(now time.Time, burst int, every time.Duration) time.Duration {
	if b.at.IsZero() {
		b.tokens, b.at = float64(burst), now
	}
	b.tokens = min(float64(burst), b.tokens+now.Sub(b.at).Seconds()/every.Seconds())
	b.at = now
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) * float64(every))
	}
	b.tokens--
	return 0
}

// allow takes a login attempt for addr (and for all clients); it returns
// how long to wait when the rate is exceeded.
func (wb *Web) allow(addr string) time.Duration {
	now := wb.now()
	wb.mu.Lock()
	defer wb.mu.Unlock()
	b := wb.perAddr[addr]
	if b == nil {
		if len(wb.perAddr) >= maxLimitedAddr {
			clear(wb.perAddr) // the limit for all clients still holds
		}
		b = &bucket{}
		wb.perAddr[addr] = b
	}
	if wait := b.take(now, loginBurst, loginEvery); wait > 0 {
		return wait
	}
	return wb.all.take(now, loginBurstAll, loginEveryAll)
}
