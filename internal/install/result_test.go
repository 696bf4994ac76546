package install_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/install"
)

// TestResultText checks update install's summary and final JSON event.
func TestResultText(t *testing.T) {
	r := &install.Result{BundleHash: "ab", Group: "b", Version: "2.0.0", BytesWritten: 1 << 30}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if want := "installed 2.0.0 (bundle ab) into group b: 1.0 GiB written\n"; b.String() != want {
		t.Errorf("local: %q, want %q", b.String(), want)
	}
	r.Transfer = install.DeltaStats{BytesDownloaded: 3 << 20, BytesReused: 1000 << 20, ChunksFetched: 40, Requests: 7}
	b.Reset()
	_ = r.WriteText(&b)
	if want := "downloaded 3.0 MiB in 7 requests (40 chunks); reused 1000.0 MiB from local slots\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("from a URL: %q, want it to end in %q", b.String(), want)
	}
	e := r.Event()
	if e.Event != "done" || e.Bytes != 1<<30 || e.Total != 1<<30 || e.Group != "b" || e.Requests != 7 || e.BytesReused != 1000<<20 {
		t.Errorf("event: %+v", e)
	}
}

// TestHumanBytes checks the units of byte counts.
func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB", 1 << 60: "1.0 EiB"} {
		if got := install.HumanBytes(n); got != want {
			t.Errorf("%d: %q, want %q", n, got, want)
		}
	}
}

// TestParseReboot checks the reboot modes.
func TestParseReboot(t *testing.T) {
	for _, s := range []string{"no", "set", "yes"} {
		if m, err := install.ParseReboot(s); err != nil || string(m) != s {
			t.Errorf("%s: %q, %v", s, m, err)
		}
	}
	for _, s := range []string{"", "deferred", "YES"} {
		if _, err := install.ParseReboot(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}

// TestEventBar checks the terminal progress bar's line.
func TestEventBar(t *testing.T) {
	e := install.Event{Event: "progress", Bytes: 512 << 20, Total: 1 << 30}
	want := "███████████████░░░░░░░░░░░░░░░  50.0 % 512.0 MiB / 1.0 GiB  256.0 MiB/s  ETA 2s"
	if got := e.Bar(2 * time.Second); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := (install.Event{Total: 100}).Bar(0); !strings.HasSuffix(got, "ETA ?") || !strings.HasPrefix(got, "░") {
		t.Errorf("nothing written: %q", got)
	}
}
