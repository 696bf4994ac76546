package install

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// The terminal rendering: a bar with percent, bytes, rate and ETA, then a
// summary line with what crossed the network.
func TestPrinterBar(t *testing.T) {
	var out bytes.Buffer
	p := NewPrinter(&out, false)
	if !p.JSON {
		t.Fatal("a buffer is not a terminal: want JSON lines")
	}
	p.JSON = false // render as on a terminal
	p.start = time.Now().Add(-2 * time.Second)
	p.Event(Event{Event: "progress", Bytes: 512 << 20, Total: 1 << 30})
	bar := out.String()
	for _, want := range []string{"\r", "50.0 %", "512.0 MiB / 1.0 GiB", "/s", "ETA"} {
		if !strings.Contains(bar, want) {
			t.Errorf("bar %q lacks %q", bar, want)
		}
	}
	_ = p.End(&Result{BundleHash: "ab", Group: "b", Version: "2.0.0", BytesWritten: 1 << 30,
		Transfer: DeltaStats{BytesDownloaded: 3 << 20, BytesReused: 1000 << 20, ChunksFetched: 40, Requests: 7}}, nil)
	if s := out.String(); !strings.Contains(s, "installed 2.0.0") || !strings.Contains(s, "downloaded 3.0 MiB in 7 requests") {
		t.Errorf("summary: %q", s)
	}
}

// JSON lines: the events as they come, then one error event of one line.
func TestPrinterJSON(t *testing.T) {
	var out bytes.Buffer
	p := NewPrinter(&out, true)
	p.Event(Event{Event: "progress", Bytes: 1, Total: 2})
	want := errors.New("bad\nthing")
	if err := p.End(nil, want); err != want {
		t.Fatalf("End returned %v", err)
	}
	if got := out.String(); got != `{"event":"progress","bytes":1,"total":2}`+"\n"+`{"event":"error","bytes":0,"total":0,"message":"bad; thing"}`+"\n" {
		t.Errorf("JSON lines:\n%s", got)
	}
}
