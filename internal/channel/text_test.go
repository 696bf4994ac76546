package channel

import (
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/signature"
)

// TestFileWriteText checks the text form of channel inspect and verify: the
// default rollout, a selector, signatures, skipped ones and the verifier.
func TestFileWriteText(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	f := &File{Channel: &Channel{Channel: "stable", Compatible: "acme", Sequence: 7, Issued: at, Expires: at.Add(time.Hour),
		Release: Release{Version: "2.0.0", Bundle: "v2.tandem", BundleHash: "ab12",
			Select: &Selector{Devices: []string{"d1"}, Labels: map[string]string{"ring": "beta"}}}},
		Signatures: []signature.Signature{{Algorithm: signature.Ed25519, KeyID: [32]byte{1}}}, Skipped: 1}
	var b strings.Builder
	if err := f.WriteText(&b, ""); err != nil {
		t.Fatal(err)
	}
	want := `channel:     stable
compatible:  acme
sequence:    7
issued:      2025-01-02T03:04:05Z
expires:     2025-01-02T04:04:05Z
version:     2.0.0
bundle:      v2.tandem
bundle hash: ab12
rollout:     100% (every selected device)
select:      device d1
select:      label ring=beta
signature:   ed25519 key 0100000000000000000000000000000000000000000000000000000000000000 (0 certificates)
signature:   1 with algorithms this tandem does not know (ignored)
`
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	p := Percent(1250)
	f.Channel.Release.Rollout = &p
	b.Reset()
	_ = f.WriteText(&b, "signed by me")
	for _, line := range []string{"rollout:     12.5%\n", "verified:    signed by me\n"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("missing %q in:\n%s", line, b.String())
		}
	}
}

// TestPublishedSummary checks channel publish's line.
func TestPublishedSummary(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	p := &Published{File: &File{Channel: &Channel{Channel: "stable", Sequence: 9, Expires: at,
		Release: Release{Version: "2.0.0", Bundle: "v2.tandem", BundleHash: "ab12"}}}}
	want := "stable.json: channel stable sequence 9: version 2.0.0, bundle v2.tandem (ab12), signed by " + p.BundleSigner.String() + ", expires 2025-01-02T03:04:05Z"
	if got := p.Summary("stable.json"); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
