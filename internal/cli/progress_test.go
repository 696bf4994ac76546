package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/install"
)

// The terminal rendering: a bar with percent, bytes, rate and ETA, then a
// summary line with what crossed the network.
func TestProgressBar(t *testing.T) {
	var out bytes.Buffer
	a := &app{env: Env{Stdout: &out}}
	p := a.progress(false)
	if !p.json {
		t.Fatal("a buffer is not a terminal: want JSON lines")
	}
	p.json = false // render as on a terminal
	p.start = time.Now().Add(-2 * time.Second)
	p.event(install.Event{Event: "progress", Bytes: 512 << 20, Total: 1 << 30})
	bar := out.String()
	for _, want := range []string{"\r", "50.0 %", "512.0 MiB / 1.0 GiB", "/s", "ETA"} {
		if !strings.Contains(bar, want) {
			t.Errorf("bar %q lacks %q", bar, want)
		}
	}
	p.done(&install.Result{BundleHash: "ab", Group: "b", Version: "2.0.0", BytesWritten: 1 << 30,
		Transfer: install.DeltaStats{BytesDownloaded: 3 << 20, BytesReused: 1000 << 20, ChunksFetched: 40, Requests: 7}})
	if s := out.String(); !strings.Contains(s, "installed 2.0.0") || !strings.Contains(s, "downloaded 3.0 MiB in 7 requests") {
		t.Errorf("summary: %q", s)
	}
}
