package fetch

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Custom headers (a CDN token) go to the host the URL names, not to the
// host a redirect sends the request to (issue 11, hardening 7: only
// Authorization was stripped, by net/http).
func TestHeadersOnRedirect(t *testing.T) {
	data := testData(10_000, 50)
	var mu sync.Mutex
	seen := map[string]http.Header{} // server → headers of its last request
	record := func(name string, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen[name] = r.Header.Clone()
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("other", r)
		_, _ = w.Write(data)
	}))
	defer other.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("origin"+r.URL.Path, r)
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/file", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/file", http.StatusFound)
		default:
			_, _ = w.Write(data)
		}
	}))
	defer origin.Close()
	headers := http.Header{"X-Cdn-Token": {"secret"}, "Authorization": {"Bearer secret"}}
	for _, tc := range []struct {
		name   string
		path   string
		keep   bool
		server string // where the file came from
		want   bool   // whether it saw the headers
	}{
		{name: "to another host", path: "/away", server: "other", want: false},
		{name: "to another host, kept by option", path: "/away", keep: true, server: "other", want: true},
		{name: "on the same host", path: "/here", server: "origin/file", want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{Headers: headers, KeepHeadersOnRedirect: tc.keep}
			_, rc, err := c.Get(context.Background(), origin.URL+tc.path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if got := seen["origin"+tc.path].Get("X-Cdn-Token"); got != "secret" {
				t.Errorf("the origin saw X-Cdn-Token %q", got)
			}
			h := seen[tc.server]
			if got := h.Get("X-Cdn-Token") == "secret"; got != tc.want {
				t.Errorf("%s saw X-Cdn-Token: %v, want %v", tc.server, got, tc.want)
			}
			if tc.server == "other" && !tc.keep && h.Get("Authorization") != "" {
				t.Errorf("%s saw Authorization", tc.server)
			}
		})
	}
}

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		s1, h1, s2, h2 string
		want           bool
	}{
		{"https", "cdn.example", "https", "cdn.example", true},
		{"https", "cdn.example", "https", "CDN.example:443", true},
		{"http", "cdn.example:80", "http", "cdn.example", true},
		{"http", "cdn.example", "https", "cdn.example", true}, // an upgrade
		{"https", "cdn.example", "http", "cdn.example", false},
		{"https", "cdn.example", "https", "cdn.example:8443", false},
		{"https", "cdn.example", "https", "evil.example", false},
		{"https", "cdn.example", "https", "a.cdn.example", false},
		{"http", "[::1]:80", "http", "[::1]", true},
	} {
		if got := sameOrigin(tc.s1, tc.h1, tc.s2, tc.h2); got != tc.want {
			t.Errorf("sameOrigin(%s://%s, %s://%s) = %v, want %v", tc.s1, tc.h1, tc.s2, tc.h2, got, tc.want)
		}
	}
}
