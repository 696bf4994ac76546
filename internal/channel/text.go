package channel

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteText writes f as `tandem channel inspect` and `channel verify` print
// it without --json (docs/cli.md): the channel's fields, its release, its
// selector, its signatures and, when verified is not "", who signed it.
func (f *File) WriteText(w io.Writer, verified string) error {
	b := &strings.Builder{}
	c := f.Channel
	r := c.Release
	fmt.Fprintf(b, "channel:     %s\ncompatible:  %s\nsequence:    %d\nissued:      %s\nexpires:     %s\n",
		c.Channel, c.Compatible, c.Sequence, c.Issued.Format(time.RFC3339), c.Expires.Format(time.RFC3339))
	fmt.Fprintf(b, "version:     %s\nbundle:      %s\nbundle hash: %s\n", r.Version, r.Bundle, r.BundleHash)
	rollout := "100% (every selected device)"
	if r.Rollout != nil {
		rollout = r.Rollout.String() + "%"
	}
	fmt.Fprintf(b, "rollout:     %s\n", rollout)
	if s := r.Select; s != nil {
		for _, d := range s.Devices {
			fmt.Fprintf(b, "select:      device %s\n", d)
		}
		for k, v := range s.Labels {
			fmt.Fprintf(b, "select:      label %s=%s\n", k, v)
		}
	}
	for _, p := range r.Patches {
		from := "bundle " + p.FromBundle
		if p.FromVersion != "" {
			from = "version " + p.FromVersion
		}
		fmt.Fprintf(b, "patch:       from %s: %s\n", from, p.URL)
	}
	for _, s := range f.Signatures {
		fmt.Fprintf(b, "signature:   %s key %x (%d certificates)\n", AlgorithmName(s.Algorithm), s.KeyID, len(s.Certs))
	}
	if f.Skipped > 0 {
		fmt.Fprintf(b, "signature:   %d with algorithms this tandem does not know (ignored)\n", f.Skipped)
	}
	if verified != "" {
		fmt.Fprintf(b, "verified:    %s\n", verified)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Summary words p as `tandem channel publish` prints it without --json (one
// line, without its newline): the file written to out, its channel,
// sequence and release, who signed the bundle, and when the file expires.
func (p *Published) Summary(out string) string {
	c := p.File.Channel
	return fmt.Sprintf("%s: channel %s sequence %d: version %s, bundle %s (%s), signed by %s, expires %s", out, c.Channel,
		c.Sequence, c.Release.Version, c.Release.Bundle, c.Release.BundleHash, p.BundleSigner, c.Expires.Format(time.RFC3339))
}
