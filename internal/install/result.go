package install

import (
	"fmt"
	"io"
	"strings"
)

// Event is the final "done" event of r, as `tandem update install --json`
// prints it after the progress events: what was written, and for an
// install from a URL what was downloaded and reused.
func (r *Result) Event() Event {
	t := r.Transfer
	return Event{Event: "done", Bytes: r.BytesWritten, Total: r.BytesWritten, BundleHash: r.BundleHash, Group: r.Group,
		Version: r.Version, BytesDownloaded: t.BytesDownloaded, BytesReused: t.BytesReused, ChunksFetched: t.ChunksFetched,
		Requests: t.Requests}
}

// WriteText writes r as `tandem update install` prints it without --json:
// what was installed where, and for an install from a URL (one that made
// requests) what was downloaded and reused.
func (r *Result) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "installed %s (bundle %s) into group %s: %s written\n", r.Version, r.BundleHash, r.Group, HumanBytes(r.BytesWritten))
	if t := r.Transfer; t.Requests > 0 {
		fmt.Fprintf(b, "downloaded %s in %d requests (%d chunks); reused %s from local slots\n",
			HumanBytes(uint64(t.BytesDownloaded)), t.Requests, t.ChunksFetched, HumanBytes(uint64(t.BytesReused)))
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
