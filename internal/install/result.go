package install

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Event is the final "done" event of r, as `tandem update install --json`
// prints it after the progress events: what was written, and for an
// install from a URL what was downloaded and reused.
func (r *Result) Event() Event {
	t := r.Transfer
	return Event{Event: "done", Bytes: r.BytesWritten, Total: r.BytesWritten, BundleHash: r.BundleHash, Group: r.Group,
		Version: r.Version, BytesDownloaded: t.BytesDownloaded, BytesReused: t.BytesReused, ChunksFetched: t.ChunksFetched,
		ChunksPatched: t.ChunksPatched, Requests: t.Requests, Method: t.Method, Reason: t.Reason}
}

// WriteText writes r as `tandem update install` prints it without --json:
// what was installed where, and for an install from a URL (one that made
// requests) what was downloaded and reused.
func (r *Result) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "installed %s (bundle %s) into group %s: %s written\n", r.Version, r.BundleHash, r.Group, HumanBytes(r.BytesWritten))
	if t := r.Transfer; t.Requests > 0 {
		fmt.Fprintf(b, "downloaded %s in %d requests (%d chunks", HumanBytes(uint64(t.BytesDownloaded)), t.Requests, t.ChunksFetched)
		if t.ChunksPatched > 0 {
			fmt.Fprintf(b, ", %d made by a patch", t.ChunksPatched)
		}
		fmt.Fprintf(b, "); reused %s from local slots\n", HumanBytes(uint64(t.BytesReused)))
		if t.Method != "" {
			fmt.Fprintf(b, "method: %s\n", t.Method)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// HumanBytes writes a byte count as install's summaries print it: bytes
// below 1 KiB, else in the largest binary unit (KiB … EiB) with one decimal.
func HumanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Bar words a progress event e as the one-line progress bar `tandem update
// install` draws on a terminal, elapsed after the install began: a bar of
// 30 cells, the percentage, the bytes written of the total, the rate and
// the time left ("?" before anything was written).
func (e Event) Bar(elapsed time.Duration) string {
	frac := float64(e.Bytes) / float64(max(e.Total, 1))
	const width = 30
	bar := strings.Repeat("█", int(frac*width)) + strings.Repeat("░", width-int(frac*width))
	rate := float64(e.Bytes) / max(elapsed.Seconds(), 0.001)
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(e.Total-e.Bytes) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%s %5.1f %% %s / %s  %s/s  ETA %s", bar, 100*frac, HumanBytes(e.Bytes), HumanBytes(e.Total),
		HumanBytes(uint64(rate)), eta)
}
