package rugix_test

import (
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/fleet/rugix"
	"github.com/tandem-ota/tandem/internal/install"
)

const testHash = "18c72d1c5604dea26229c0abf308a4f8897cb90ad13f27fcd4087f38f8c4ebb4"

// TestParseInstallFlags checks update install's reboot mode and the two
// names of the bundle hash.
func TestParseInstallFlags(t *testing.T) {
	for _, tc := range []struct {
		reboot, hash, verify string
		mode                 install.Reboot
		want, err            string
	}{
		{reboot: "yes", mode: install.RebootYes},
		{reboot: "deferred", hash: "sha256:" + testHash, mode: install.RebootSet, want: testHash},
		{reboot: "no", verify: testHash, mode: install.RebootNo, want: testHash},
		{reboot: "no", hash: testHash, verify: testHash, mode: install.RebootNo, want: testHash},
		{reboot: "later", err: `--reboot "later"`},
		{reboot: "yes", hash: testHash, verify: "aa", err: "disagree"},
		{reboot: "yes", hash: "sha512:aa", err: "sha256"},
		{reboot: "yes", verify: "zz", err: "--bundle-hash"},
	} {
		mode, hash, err := rugix.ParseInstallFlags(tc.reboot, tc.hash, tc.verify)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: err = %v, want one naming %q", tc, err, tc.err)
			}
			continue
		}
		if err != nil || mode != tc.mode || hash != tc.want {
			t.Errorf("%+v: got %q, %q, %v", tc, mode, hash, err)
		}
	}
}

// TestProgress checks rugix-ctrl's progress lines: one per 0.4 % at most,
// only for progress events with a size, and always the last at 100 %.
func TestProgress(t *testing.T) {
	var b strings.Builder
	p := rugix.NewProgress(&b)
	for _, e := range []install.Event{
		{Event: "progress", Bytes: 0, Total: 1000},
		{Event: "progress", Bytes: 3, Total: 1000},
		{Event: "progress", Bytes: 4, Total: 1000},
		{Event: "progress", Bytes: 5, Total: 0},
		{Event: "done", Bytes: 1000, Total: 1000},
		{Event: "progress", Bytes: 998, Total: 1000},
		{Event: "progress", Bytes: 1000, Total: 1000},
	} {
		p.Event(e)
	}
	want := `{"event":"UpdateProgress","progress":0}
{"event":"UpdateProgress","progress":0.4}
{"event":"UpdateProgress","progress":99.8}
{"event":"UpdateProgress","progress":100}
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
