package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testPassword = "correct horse battery"

// tlsFiles writes a self-signed certificate for 127.0.0.1 and its key.
func tlsFiles(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tandem test device"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func newWebFixture(t *testing.T) *fixture {
	t.Helper()
	cert, key := tlsFiles(t)
	return newFixture(t, ServeOptions{Listen: "127.0.0.1:0", TLSCert: cert, TLSKey: key})
}

func (fx *fixture) setPassword(t *testing.T, pw string) {
	t.Helper()
	d, err := fx.open()
	if err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(d, strings.NewReader(pw+"\n")); err != nil {
		t.Fatal(err)
	}
}

type browser struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func newBrowser(t *testing.T, fx *fixture) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: "https://" + fx.web.String(), c: &http.Client{Jar: jar,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
}

func (b *browser) do(method, path, body string, header ...string) (*http.Response, map[string]any) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var doc map[string]any
	_ = json.Unmarshal(raw, &doc)
	return resp, doc
}

func (b *browser) login(pw string) int {
	resp, doc := b.do("POST", "/login", `{"password":"`+pw+`"}`)
	if resp.StatusCode == 200 {
		b.csrf, _ = doc["csrf"].(string)
	}
	return resp.StatusCode
}

// Nothing is accessible before a password is set; the page itself (no data)
// says how to set one.
func TestWebLockedWithoutPassword(t *testing.T) {
	fx := newWebFixture(t)
	b := newBrowser(t, fx)
	if resp, _ := b.do("GET", "/", ""); resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("page: %d %v", resp.StatusCode, resp.Header)
	}
	for _, c := range [][2]string{{"GET", "/session"}, {"POST", "/login"}, {"GET", "/api/v1/info"}, {"POST", "/api/v1/commit"}} {
		resp, doc := b.do(c[0], c[1], `{"password":"anything at all"}`)
		if resp.StatusCode != http.StatusServiceUnavailable || doc["kind"] != "no-password" {
			t.Errorf("%s %s without a password: %d %v", c[0], c[1], resp.StatusCode, doc)
		}
	}
	d, _ := fx.open()
	if err := SetPassword(d, strings.NewReader("short\n")); err == nil {
		t.Error("a 5-character password was accepted")
	}
}

// Login: a wrong password is refused, the session cookie is HttpOnly,
// Secure and SameSite=Strict, every change needs the CSRF token and the
// same origin, logins are rate-limited, and a new password ends sessions.
func TestWebSession(t *testing.T) {
	fx := newWebFixture(t)
	fx.setPassword(t, testPassword)
	b := newBrowser(t, fx)
	if code := b.login("wrong password!"); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", code)
	}
	if resp, _ := b.do("GET", "/api/v1/info", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("info before login: %d", resp.StatusCode)
	}
	resp, doc := b.do("POST", "/login", `{"password":"`+testPassword+`"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %v", resp.StatusCode, doc)
	}
	b.csrf = doc["csrf"].(string)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" {
		t.Fatalf("session cookie %+v", cookie)
	}
	if resp, doc := b.do("GET", "/api/v1/info", ""); resp.StatusCode != 200 || doc["compatible"] != "tandem-sim" {
		t.Fatalf("info: %d %v", resp.StatusCode, doc)
	}
	if resp, doc := b.do("GET", "/session", ""); resp.StatusCode != 200 || doc["csrf"] != b.csrf {
		t.Fatalf("session: %d %v", resp.StatusCode, doc)
	}
	for _, c := range []struct {
		name   string
		header []string
	}{
		{"no token", nil},
		{"wrong token", []string{csrfHeader, "x" + b.csrf}},
		{"other origin", []string{csrfHeader, b.csrf, "Origin", "https://evil.example"}},
		{"cross-site fetch", []string{csrfHeader, b.csrf, "Sec-Fetch-Site", "cross-site"}},
	} {
		for _, path := range []string{"/api/v1/commit", "/api/v1/reboot", "/api/v1/install", "/api/v1/cancel", "/api/v1/mark-bad", "/api/v1/state-reset", "/logout"} {
			if resp, doc := b.do("POST", path, "{}", c.header...); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s with %s: %d %v", path, c.name, resp.StatusCode, doc)
			}
		}
	}
	if resp, doc := b.do("POST", "/api/v1/commit", "{}", csrfHeader, b.csrf, "Origin", b.base); resp.StatusCode != 200 {
		t.Fatalf("commit with the token: %d %v", resp.StatusCode, doc)
	}
	// The page may not skip verification: it is not root.
	if resp, _ := b.do("POST", "/api/v1/install?insecureSkipVerification=true", "", csrfHeader, b.csrf, "Content-Type", "application/octet-stream"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("insecure install from the page: %d", resp.StatusCode)
	}
	// A new password ends the session.
	fx.setPassword(t, testPassword+" again")
	if resp, _ := b.do("GET", "/api/v1/info", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("info after the password changed: %d", resp.StatusCode)
	}

	// Rate limit: a burst of attempts, then 429 with Retry-After, even with the right password.
	other := newBrowser(t, fx)
	codes := []int{}
	for range loginBurst {
		codes = append(codes, other.login("guess guess guess"))
	}
	resp, _ = other.do("POST", "/login", `{"password":"`+testPassword+` again"}`)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("after %v: %d %v, want 429 with Retry-After", codes, resp.StatusCode, resp.Header)
	}
}

// Logout ends the session on the server.
func TestWebLogout(t *testing.T) {
	fx := newWebFixture(t)
	fx.setPassword(t, testPassword)
	b := newBrowser(t, fx)
	if code := b.login(testPassword); code != 200 {
		t.Fatalf("login: %d", code)
	}
	if resp, _ := b.do("POST", "/logout", "", csrfHeader, b.csrf); resp.StatusCode != 200 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ := b.do("GET", "/api/v1/info", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("info after logout: %d", resp.StatusCode)
	}
}

// The token bucket: a burst, then one attempt per interval.
func TestBucket(t *testing.T) {
	var b bucket
	now := time.Unix(1000, 0)
	for i := range 3 {
		if w := b.take(now, 3, 10*time.Second); w != 0 {
			t.Fatalf("attempt %d waits %v", i, w)
		}
	}
	if w := b.take(now, 3, 10*time.Second); w != 10*time.Second {
		t.Fatalf("4th attempt waits %v, want 10s", w)
	}
	if w := b.take(now.Add(10*time.Second), 3, 10*time.Second); w != 0 {
		t.Fatalf("after 10s: waits %v", w)
	}
}
