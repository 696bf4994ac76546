package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/install"
)

// FuzzInstallRequest: any install request (query and body, either content
// type) is parsed or refused as a usage, size or permission error, never
// anything else, and what is accepted is within the bounds.
func FuzzInstallRequest(f *testing.F) {
	f.Add("reboot=set&group=b", "application/octet-stream", "")
	f.Add("", "application/json", `{"url":"https://example.com/b.tandem","reboot":"yes","headers":["A: b"]}`)
	f.Add("trust=/k&trust=/l&insecureSkipVerification=true", "", "")
	f.Add("", "application/json", `{"url":"http://u:p@h/x","trust":["a"]}`)
	f.Fuzz(func(t *testing.T, query, ctype, body string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/install", strings.NewReader(body))
		r.URL.RawQuery = query
		r.Header.Set("Content-Type", ctype)
		for _, c := range []Caller{{Name: "root", Read: true, Change: true, Root: true}, {Name: "member", Read: true, Change: true}} {
			req, source, err := parseInstall(r, c)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || (e.Kind != KindUsage && e.Kind != KindTooLarge && e.Kind != KindForbidden) {
					t.Fatalf("error %v (%T) is not a usage, size or permission error", err, err)
				}
				continue
			}
			o := req.Options
			if !c.Root && (o.Trust.Insecure || len(o.Trust.Files) > 0 || o.HTTP.CAFile != "") {
				t.Fatalf("a non-root caller got root-only options: %+v", o)
			}
			if o.Source != "-" && !isURL(o.Source) || source == "" {
				t.Fatalf("source %q (%q)", o.Source, source)
			}
			if u, err := url.Parse(source); err == nil && u.User != nil {
				t.Fatalf("the source as the API names it shows credentials: %q", source)
			}
			if len(o.Trust.Files) > maxRepeats || len(o.HTTP.Headers) > maxRepeats {
				t.Fatalf("too many repeats accepted: %+v", o)
			}
			r = httptest.NewRequest(http.MethodPost, "/v1/install", strings.NewReader(body))
			r.URL.RawQuery = query
			r.Header.Set("Content-Type", ctype)
		}
	})
}

// FuzzReadEvents: an event stream from a server is read without panics
// and within its line bound.
func FuzzReadEvents(f *testing.F) {
	f.Add([]byte(": hello\n\nevent: progress\ndata: {\"event\":\"progress\",\"bytes\":1,\"total\":2}\n\n"))
	f.Add([]byte("data: {\"event\":\"done\"}\n\ndata: {\"event\":\"done\"}\n"))
	f.Add([]byte("data: {\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		_ = ReadEvents(bytes.NewReader(b), func(install.Event) bool { n++; return true })
		if n > bytes.Count(b, []byte("\n"))+1 {
			t.Fatalf("%d events from %d lines", n, bytes.Count(b, []byte("\n"))+1)
		}
	})
}
