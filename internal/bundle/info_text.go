package bundle

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteText writes info as `tandem bundle inspect` prints it without --json
// (docs/cli.md): one "key  value" line per field, signer and payload, and
// the chunk table when info has one.
func (info *Info) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "hash         %s\n", info.Hash)
	fmt.Fprintf(b, "compatible   %s\nversion      %s\n", info.Compatible, info.Version)
	if info.Name != "" {
		fmt.Fprintf(b, "name         %s\n", info.Name)
	}
	if info.MinVersion != "" {
		fmt.Fprintf(b, "min version  %s\n", info.MinVersion)
	}
	fmt.Fprintf(b, "incremental  %v\ncreated      %s\n", info.Incremental, info.Created.Format(time.RFC3339))
	if len(info.Signers) == 0 {
		fmt.Fprintf(b, "signers      none (unsigned)\n")
	}
	for _, s := range info.Signers {
		fmt.Fprintf(b, "signer       %s key %s (%d certificates)\n", s.Algorithm, s.KeyID, s.Certificates)
	}
	for _, p := range info.Payloads {
		fmt.Fprintf(b, "payload      %s: %s → %s, %d bytes in %d chunks (%d stored, %.1f %%)\n", p.Name, p.Kind, p.Target,
			p.Size, p.ChunkCount, p.StoredSize, 100*float64(p.StoredSize)/float64(max(p.Size, 1)))
		for _, c := range p.Chunks {
			fmt.Fprintf(b, "  %12d %8d %8d %s\n", c.Offset, c.Size, c.StoredSize, c.Digest)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
