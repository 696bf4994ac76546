package cmdout

import "testing"

func TestLastLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"one", "one"},
		{"first\nsecond\n", "second"},
		{"first\r\nsecond \r\n\n  ", "second"},
		{"  only  \n\n", "only"},
	} {
		if got := LastLine(tc.in); got != tc.want {
			t.Errorf("LastLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
