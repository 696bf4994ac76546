package mender

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const testHash = "ab41170d15e61b6b5c6b6fd1689f0143ad23f823e8846afc162057637d2dfbf3"

func TestParseDescriptor(t *testing.T) {
	good := `{"url": "https://cdn.example.com/v2.tandem", "bundleHash": "` + testHash + `", "version": "2.0.0"}` + "\n"
	d, err := ParseDescriptor(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := *d, (Descriptor{URL: "https://cdn.example.com/v2.tandem", BundleHash: testHash, Version: "2.0.0"}); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	withPatches := `{"url": "https://cdn.example.com/v2.tandem", "bundleHash": "` + testHash + `", "patches": [
		{"url": "https://cdn.example.com/v2.tandem.patches/` + testHash + `.tpatch"},
		{"url": "https://cdn.example.com/p/from-1.9.bin", "fromVersion": "1.9.0"}]}`
	if d, err := ParseDescriptor(strings.NewReader(withPatches)); err != nil || len(d.Patches) != 2 || d.Patches[1].FromVersion != "1.9.0" {
		t.Errorf("descriptor with patches: %+v, %v", d, err)
	}
	bad := map[string]struct{ doc, msg string }{
		"empty":                  {"", "EOF"},
		"not json":               {"TANDEMBN", "invalid character"},
		"unknown field":          {`{"url":"http://h/b","bundleHash":"` + testHash + `","sha":"x"}`, `unknown field "sha"`},
		"two objects":            {`{"url":"http://h/b","bundleHash":"` + testHash + `"}{}`, "data after the JSON object"},
		"no url":                 {`{"bundleHash":"` + testHash + `"}`, `url "" is not an http(s) URL`},
		"file url":               {`{"url":"file:///etc/passwd","bundleHash":"` + testHash + `"}`, "not an http(s) URL"},
		"no host":                {`{"url":"http:///b","bundleHash":"` + testHash + `"}`, "not an http(s) URL"},
		"no hash":                {`{"url":"http://h/b"}`, "want 64 hex digits"},
		"upper hash":             {`{"url":"http://h/b","bundleHash":"` + strings.ToUpper(testHash) + `"}`, "lower-case"},
		"wrong type":             {`{"url":"http://h/b","bundleHash":1}`, "cannot unmarshal number"},
		"patch claims no source": {`{"url":"http://h/b","bundleHash":"` + testHash + `","patches":[{"url":"http://h/p.bin"}]}`, "claims no source"},
		"patch not http":         {`{"url":"http://h/b","bundleHash":"` + testHash + `","patches":[{"url":"file:///p/` + testHash + `.tpatch"}]}`, "want an http(s) URL"},
		"too large":              {`{"url":"http://h/b","bundleHash":"` + testHash + `","version":"` + strings.Repeat("1", MaxDescriptor) + `"}`, "larger than"},
	}
	for name, c := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := ParseDescriptor(strings.NewReader(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want an error with %q", err, c.msg)
			}
			if !errors.Is(err, ErrArtifact) && c.msg != "EOF" {
				t.Errorf("%v does not wrap ErrArtifact", err)
			}
		})
	}
}

// FuzzParseDescriptor checks that any input is either refused with a
// one-line error or gives a descriptor that survives a JSON round trip.
func FuzzParseDescriptor(f *testing.F) {
	f.Add([]byte(`{"url":"https://h/v2.tandem","bundleHash":"` + testHash + `","version":"2.0.0"}`))
	f.Add([]byte(`{"url":"http://h/b","bundleHash":"` + testHash + `"} `))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"url":"http://h/b","bundleHash":"` + testHash + `","patches":[{"url":"http://h/b.patches/version-1.0.tpatch","hash":"` + testHash + `"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDescriptor(strings.NewReader(string(data)))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of several lines: %q", err)
			}
			return
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseDescriptor(strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if !reflect.DeepEqual(again, d) {
			t.Fatalf("round trip: %+v != %+v", again, d)
		}
	})
}
