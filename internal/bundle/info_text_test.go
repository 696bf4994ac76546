package bundle

import (
	"strings"
	"testing"
	"time"
)

// TestInfoWriteText checks the text form of bundle inspect: optional
// fields, an unsigned bundle, the stored share and the chunk table.
func TestInfoWriteText(t *testing.T) {
	info := &Info{Hash: "ab12", Compatible: "acme", Version: "2.0.0", Created: time.Unix(0, 0).UTC(),
		Payloads: []PayloadInfo{{Name: "system", Kind: "slot", Target: "system", Size: 200, StoredSize: 50, ChunkCount: 2,
			Chunks: []ChunkInfo{{Offset: 0, Size: 100, StoredSize: 20, Digest: "d1"}, {Offset: 100, Size: 100, StoredSize: 30, Digest: "d2"}}}}}
	var b strings.Builder
	if err := info.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `hash         ab12
compatible   acme
version      2.0.0
incremental  false
created      1970-01-01T00:00:00Z
signers      none (unsigned)
payload      system: slot → system, 200 bytes in 2 chunks (50 stored, 25.0 %)
             0      100       20 d1
           100      100       30 d2
`
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	info.Name, info.MinVersion, info.Payloads = "Acme", "1.0.0", nil
	info.Signers = []SignerInfo{{Algorithm: "ed25519", KeyID: "k1", Certificates: 1}}
	b.Reset()
	_ = info.WriteText(&b)
	for _, line := range []string{"name         Acme\n", "min version  1.0.0\n", "signer       ed25519 key k1 (1 certificates)\n"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("missing %q in:\n%s", line, b.String())
		}
	}
}
