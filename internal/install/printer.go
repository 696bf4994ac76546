package install

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Printer prints an install's events as `tandem update install` does: a
// progress bar on a terminal, else (or with JSON) JSON lines — the
// "progress" events, then one final "done" (Result.Event) or "error" event.
type Printer struct {
	JSON   bool // JSON lines instead of a bar
	w      io.Writer
	start  time.Time
	last   time.Time
	enc    *json.Encoder
	active bool // a bar was drawn
}

// NewPrinter returns a printer to w: JSON lines when jsonOut or when w is
// not a terminal.
func NewPrinter(w io.Writer, jsonOut bool) *Printer {
	p := &Printer{w: w, start: time.Now(), enc: json.NewEncoder(w)}
	isTerm := false
	if f, ok := w.(*os.File); ok {
		fi, err := f.Stat()
		isTerm = err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
	p.JSON = jsonOut || !isTerm
	return p
}

// Event prints e (a bar at most every 100 ms, and at the end; a method
// event as its own line).
func (p *Printer) Event(e Event) {
	if p.JSON {
		_ = p.enc.Encode(e)
		return
	}
	if e.Event == "method" {
		fmt.Fprintf(p.w, "\r%s\n", e.Message)
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && e.Bytes != e.Total {
		return
	}
	p.last, p.active = now, true
	fmt.Fprintf(p.w, "\r%s  ", e.Bar(now.Sub(p.start)))
}

// End finishes the output of an install that ended with res and err, and
// returns err.
func (p *Printer) End(res *Result, err error) error {
	switch {
	case err == nil && p.JSON:
		_ = p.enc.Encode(res.Event())
	case err == nil:
		if p.active {
			fmt.Fprintln(p.w)
		}
		_ = res.WriteText(p.w)
	case p.JSON:
		_ = p.enc.Encode(Event{Event: "error", Message: strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")})
	case p.active:
		fmt.Fprintln(p.w)
	}
	return err
}
