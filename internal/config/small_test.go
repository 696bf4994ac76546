package config

import (
	"strings"
	"testing"
)

// TestCheckURL: the small files' URLs must be ones a client can connect
// to (issue 11, hardening 10: "http://127.0.0.1:" was accepted).
func TestCheckURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://hawkbit.example.com", ""},
		{"http://127.0.0.1:8080/base", ""},
		{"https://[::1]:443", ""},
		{"", "is empty"},
		{"hawkbit.example.com", "want an http or https URL"},
		{"ftp://h", "want an http or https URL"},
		{"http:opaque", "want an http or https URL"},
		{"http://127.0.0.1:", "empty port"},
		{"http://h:0", "want 1 to 65535"},
		{"http://h:65536", "want 1 to 65535"},
		{"http://h:x", "want an http or https URL"},
		{"http://:80", "no host"},
		{"https://u:p@h", "no user info"},
	} {
		err := CheckURL("server", tc.in)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}
