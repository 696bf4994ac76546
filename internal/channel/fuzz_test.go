package channel

import (
	"bytes"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the parser: it must not panic, must
// return ErrFormat-wrapped errors, and whatever it accepts must be a valid
// document whose signed bytes parse again to the same channel.
func FuzzParse(f *testing.F) {
	key, _ := edKey(f)
	c := sample()
	c.Release.Select = &Selector{Devices: []string{"dev-1"}, Labels: map[string]string{"ring": "beta"}}
	f.Add(mustSign(f, c, key))
	c.Release.Patches = []Patch{{URL: "v2.tandem.patches/version-1.0.0.tpatch", FromVersion: "1.0.0", Hash: c.Release.BundleHash},
		{URL: "https://cdn.example/p", FromBundle: c.Release.BundleHash, Hash: c.Release.BundleHash}}
	f.Add(mustSign(f, c, key))
	f.Add(mustSign(f, sample(), key))
	f.Add([]byte(`{"signed":"e30=","signatures":[{"algorithm":"ed25519","keyId":"00","sig":"AA=="}]}`))
	f.Add([]byte(`{"signed":"","signatures":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		if err := file.Channel.Validate(); err != nil {
			t.Fatalf("accepted an invalid document: %v", err)
		}
		again, err := ParseDocument(file.Signed)
		if err != nil {
			t.Fatalf("signed bytes do not parse again: %v", err)
		}
		if again.Sequence != file.Channel.Sequence || again.Release.BundleHash != file.Channel.Release.BundleHash ||
			!again.Expires.Equal(file.Channel.Expires) {
			t.Fatalf("parsing is not deterministic")
		}
		if len(file.Signatures)+file.Skipped == 0 {
			t.Fatalf("accepted a file without signatures")
		}
		if bytes.Contains(data, []byte{0xff}) {
			t.Fatalf("accepted invalid UTF-8")
		}
	})
}
