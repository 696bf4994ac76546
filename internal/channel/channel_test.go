package channel

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/signature"
)

var (
	issued = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	now    = time.Date(2026, 11, 5, 12, 0, 0, 0, time.UTC)
)

func sample() *Channel {
	p := Percent(2500)
	return &Channel{
		Format: Format, Channel: "stable", Compatible: "acme-gw", Sequence: 7,
		Issued: issued, Expires: issued.Add(30 * 24 * time.Hour),
		Release: Release{Version: "2.0.0", Bundle: "bundles/v2.tandem",
			BundleHash: fmt.Sprintf("%x", sha256.Sum256([]byte("v2"))), Rollout: &p},
	}
}

func edKey(t testing.TB) (ed25519.PrivateKey, *signature.TrustStore) {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k, trustOf(t, k.Public())
}

func trustOf(t testing.TB, pub crypto.PublicKey) *signature.TrustStore {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := signature.ParseTrust(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func mustSign(t testing.TB, c *Channel, key crypto.Signer) []byte {
	t.Helper()
	b, err := Sign(c, []Signer{{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func policy(trust *signature.TrustStore) Policy {
	return Policy{Trust: trust, Channel: "stable", Compatible: "acme-gw", Now: now}
}

func TestRoundTrip(t *testing.T) {
	key, trust := edKey(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := sample()
	c.Release.Select = &Selector{Devices: []string{"dev-1"}, Labels: map[string]string{"ring": "beta"}}
	b, err := Sign(c, []Signer{{Key: key}, {Key: ec}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(f.Signatures), 2; got != want {
		t.Fatalf("%d signatures, want %d", got, want)
	}
	if f.Channel.Release.Rollout.String() != "25" || f.Channel.Release.Select.Labels["ring"] != "beta" ||
		!f.Channel.Issued.Equal(issued) || f.Channel.Sequence != 7 {
		t.Fatalf("parsed %+v", f.Channel)
	}
	a, err := Accept(f, policy(trust))
	if err != nil {
		t.Fatal(err)
	}
	if a.Seen.Sequence != 7 || !a.Clock {
		t.Fatalf("accepted %+v", a)
	}
	// The ECDSA key alone is trusted too.
	if _, err := Accept(f, policy(trustOf(t, ec.Public()))); err != nil {
		t.Fatalf("ecdsa: %v", err)
	}
	// The signed bytes are exactly what the digest covers.
	var env struct{ Signed string }
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(env.Signed)
	if sha256.Sum256(raw) != f.Digest {
		t.Fatalf("digest is not SHA-256 of the signed bytes")
	}
}

func TestCertificateChain(t *testing.T) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "release CA"},
		NotBefore: issued.Add(-time.Hour), NotAfter: issued.Add(365 * 24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	_, leafKey, _ := ed25519.GenerateKey(rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "channel signer"},
		NotBefore: issued.Add(-time.Hour), NotAfter: issued.Add(90 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, leafKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := signature.ParseTrust(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Sign(sample(), []Signer{{Key: leafKey, Chain: [][]byte{leafDER}}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Accept(f, policy(trust))
	if err != nil {
		t.Fatal(err)
	}
	if a.Signer.Subject != "channel signer" {
		t.Fatalf("signer %v", a.Signer)
	}
	// After the leaf expired (device clock set), refused.
	p := policy(trust)
	p.Now = issued.Add(100 * 24 * time.Hour)
	c := sample()
	c.Expires = issued.Add(200 * 24 * time.Hour)
	f2, _ := Parse(must(Sign(c, []Signer{{Key: leafKey, Chain: [][]byte{leafDER}}})))
	if _, err := Accept(f2, p); !errors.Is(err, signature.ErrExpired) {
		t.Fatalf("expired leaf: %v", err)
	}
	// Without a clock, the chain is checked at the issued time: accepted.
	p.Now = time.Unix(1000, 0)
	if _, err := Accept(f2, p); err != nil {
		t.Fatalf("no clock: %v", err)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestAcceptRefuses(t *testing.T) {
	key, trust := edKey(t)
	other, _ := edKey(t)
	good := mustSign(t, sample(), key)
	seen := func(seq uint64, digest string) *Seen { return &Seen{Sequence: seq, Digest: digest, Issued: issued} }
	gf, _ := Parse(good)
	goodDigest := fmt.Sprintf("%x", gf.Digest)
	for _, tc := range []struct {
		name string
		file func() []byte
		pol  func(p *Policy)
		want error
	}{
		{"untrusted key", func() []byte { return mustSign(t, sample(), other) }, nil, signature.ErrUntrusted},
		{"empty trust", func() []byte { return good }, func(p *Policy) { p.Trust = &signature.TrustStore{} }, signature.ErrNoTrust},
		{"tampered signed document", func() []byte {
			var env map[string]any
			_ = json.Unmarshal(good, &env)
			raw, _ := base64.StdEncoding.DecodeString(env["signed"].(string))
			raw = []byte(strings.Replace(string(raw), `"sequence":7`, `"sequence":8`, 1))
			env["signed"] = base64.StdEncoding.EncodeToString(raw)
			b, _ := json.Marshal(env)
			return b
		}, nil, signature.ErrBadSignature},
		{"other channel", func() []byte { c := sample(); c.Channel = "beta"; return mustSign(t, c, key) }, nil, ErrWrongChannel},
		{"other compatible", func() []byte { c := sample(); c.Compatible = "other"; return mustSign(t, c, key) }, nil, ErrWrongChannel},
		{"expired", func() []byte { c := sample(); c.Expires = now.Add(-time.Second); return mustSign(t, c, key) }, nil, ErrExpired},
		{"expires now", func() []byte { c := sample(); c.Expires = now; return mustSign(t, c, key) }, nil, ErrExpired},
		{"replayed older sequence", func() []byte { return good }, func(p *Policy) { p.Last = seen(8, "x") }, ErrReplay},
		{"same sequence other content", func() []byte { return good }, func(p *Policy) { p.Last = seen(7, "x") }, ErrReplay},
		{"expired, no clock, newer file seen", func() []byte { c := sample(); c.Expires = issued.Add(time.Hour); return mustSign(t, c, key) },
			func(p *Policy) {
				p.Now = time.Unix(5, 0)
				p.Last = &Seen{Sequence: 6, Digest: "x", Issued: issued.Add(2 * time.Hour)}
			}, ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.file())
			if err != nil {
				t.Fatal(err)
			}
			p := policy(trust)
			if tc.pol != nil {
				tc.pol(&p)
			}
			_, err = Accept(f, p)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			t.Logf("%v", err)
		})
	}
	// Accepted: the same file again, a newer one, no clock without history.
	f, _ := Parse(good)
	p := policy(trust)
	p.Last = seen(7, goodDigest)
	if _, err := Accept(f, p); err != nil {
		t.Fatalf("same file again: %v", err)
	}
	p.Last = seen(6, "x")
	if _, err := Accept(f, p); err != nil {
		t.Fatalf("newer file: %v", err)
	}
	p.Last, p.Now = nil, time.Unix(5, 0)
	a, err := Accept(f, p)
	if err != nil || a.Clock || !a.CheckedAt.Equal(signature.DefaultFloor()) {
		t.Fatalf("no clock: %+v, %v", a, err)
	}
}

func TestParseStrict(t *testing.T) {
	key, _ := edKey(t)
	good := mustSign(t, sample(), key)
	var env map[string]json.RawMessage
	if err := json.Unmarshal(good, &env); err != nil {
		t.Fatal(err)
	}
	var signedB64 string
	_ = json.Unmarshal(env["signed"], &signedB64)
	signed, _ := base64.StdEncoding.DecodeString(signedB64)
	withSigned := func(doc string) []byte {
		return []byte(`{"signed":"` + base64.StdEncoding.EncodeToString([]byte(doc)) + `","signatures":` + string(env["signatures"]) + `}`)
	}
	replace := func(old, new string) []byte {
		if !strings.Contains(string(signed), old) {
			t.Fatalf("%q not in %s", old, signed)
		}
		return withSigned(strings.Replace(string(signed), old, new, 1))
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"not an object", []byte(`[]`), "cannot unmarshal"},
		{"trailing data", append(append([]byte{}, good...), []byte(`{}`)...), "data after"},
		{"unknown envelope member", []byte(strings.Replace(string(good), `"signed"`, `"extra":1,"signed"`, 1)), "unknown field"},
		{"duplicate envelope member", []byte(strings.Replace(string(good), `"signatures"`, `"signed":"eA==","signatures"`, 1)), "twice"},
		{"no signatures", []byte(`{"signed":"` + signedB64 + `","signatures":[]}`), "no signatures"},
		{"bad base64", []byte(`{"signed":"!!","signatures":[]}`), "base64"},
		{"base64 with a line break", []byte(`{"signed":"` + signedB64[:8] + `\n` + signedB64[8:] + `","signatures":[]}`), "base64"},
		{"too large", append(good, make([]byte, MaxSize)...), "larger than"},
		{"invalid utf-8", []byte("{\"signed\":\"\xff\"}"), "UTF-8"},
		{"format 2", replace(`"format":1`, `"format":2`), "format 2"},
		{"unknown document member", replace(`"format":1`, `"format":1,"x":1`), "unknown field"},
		{"duplicate document member", replace(`"format":1`, `"format":1,"format":1`), "twice"},
		{"bad channel name", replace(`"channel":"stable"`, `"channel":"Stable"`), "channel name"},
		{"zero sequence", replace(`"sequence":7`, `"sequence":0`), "sequence 0"},
		{"huge sequence", replace(`"sequence":7`, `"sequence":9007199254740992`), "sequence"},
		{"negative sequence", replace(`"sequence":7`, `"sequence":-7`), "cannot unmarshal"},
		{"local time", replace(`"issued":"2026-11-01T12:00:00Z"`, `"issued":"2026-11-01T12:00:00+01:00"`), "issued"},
		{"expires before issued", replace(`"expires":"2026-12-01T12:00:00Z"`, `"expires":"2026-10-01T12:00:00Z"`), "not after issued"},
		{"bad version", replace(`"version":"2.0.0"`, `"version":"two"`), "version"},
		{"upper-case hash", replace(`"bundleHash":"`, `"bundleHash":"A`), "bundleHash"},
		{"patch without a source", replace(`"bundleHash":"`, `"patches":[{"url":"p.tpatch","hash":"`+strings.Repeat("ab", 32)+`"}],"bundleHash":"`), "exactly one of fromBundle"},
		{"patch with two sources", replace(`"bundleHash":"`, `"patches":[{"url":"p.tpatch","fromVersion":"1.0.0","fromBundle":"`+strings.Repeat("ab", 32)+`","hash":"`+strings.Repeat("ab", 32)+`"}],"bundleHash":"`), "exactly one of fromBundle"},
		{"patch without a hash", replace(`"bundleHash":"`, `"patches":[{"url":"p.tpatch","fromVersion":"1.0.0"}],"bundleHash":"`), "hash"},
		{"patch file url", replace(`"bundleHash":"`, `"patches":[{"url":"file:///p","fromVersion":"1.0.0","hash":"`+strings.Repeat("ab", 32)+`"}],"bundleHash":"`), "url"},
		{"patch bad version", replace(`"bundleHash":"`, `"patches":[{"url":"p","fromVersion":"one","hash":"`+strings.Repeat("ab", 32)+`"}],"bundleHash":"`), "fromVersion"},
		{"patch unknown member", replace(`"bundleHash":"`, `"patches":[{"url":"p","fromVersion":"1.0.0","size":1,"hash":"`+strings.Repeat("ab", 32)+`"}],"bundleHash":"`), "unknown field"},
		{"file url", replace(`"bundle":"bundles/v2.tandem"`, `"bundle":"file:///etc/passwd"`), "release bundle"},
		{"protocol-relative url", replace(`"bundle":"bundles/v2.tandem"`, `"bundle":"//evil/x"`), "release bundle"},
		{"user info", replace(`"bundle":"bundles/v2.tandem"`, `"bundle":"https://u:p@cdn/x"`), "release bundle"},
		{"fragment", replace(`"bundle":"bundles/v2.tandem"`, `"bundle":"v2.tandem#x"`), "fragment"},
		{"rollout over 100", replace(`"rollout":25`, `"rollout":100.5`), "rollout"},
		{"rollout 3 decimals", replace(`"rollout":25`, `"rollout":2.125`), "rollout"},
		{"rollout string", replace(`"rollout":25`, `"rollout":"25"`), "rollout"},
		{"rollout exponent", replace(`"rollout":25`, `"rollout":2.5e1`), "rollout"},
		{"empty selector", replace(`"rollout":25`, `"rollout":25,"select":{}`), "select"},
		{"bad label", replace(`"rollout":25`, `"rollout":25,"select":{"labels":{"Ring":"x"}}`), "label"},
		{"control character", replace(`"compatible":"acme-gw"`, `"compatible":"acme\u0007gw"`), "control"},
		{"deep nesting", replace(`"rollout":25`, `"rollout":25,"select":{"labels":{"a":`+strings.Repeat("[", 20)+strings.Repeat("]", 20)+`}}`), "deeper"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.data)
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
	// An unknown algorithm is skipped, not an error.
	b := []byte(strings.Replace(string(good), `"algorithm": "ed25519"`, `"algorithm": "ml-dsa-65"`, 1))
	f, err := Parse(b)
	if err != nil || f.Skipped != 1 || len(f.Signatures) != 0 {
		t.Fatalf("unknown algorithm: %+v, %v", f, err)
	}
	if _, err := f.Verify(func() *signature.TrustStore { _, ts := edKey(t); return ts }(), now, time.Time{}); !errors.Is(err, signature.ErrUntrusted) {
		t.Fatalf("only unknown algorithms: %v", err)
	}
}

func TestPercent(t *testing.T) {
	for in, want := range map[string]Percent{"0": 0, "100": 10000, "12.5": 1250, "12.50%": 1250, "0.01": 1, "99.99": 9999, "100.00": 10000} {
		got, err := ParsePercent(in)
		if err != nil || got != want {
			t.Errorf("ParsePercent(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "101", "100.01", "1.234", "1e2", "05", ".5", "5."} {
		if _, err := ParsePercent(in); err == nil {
			t.Errorf("ParsePercent(%q) accepted", in)
		}
	}
	for p, want := range map[Percent]string{0: "0", 1: "0.01", 1250: "12.5", 10000: "100", 1010: "10.1", 2000: "20"} {
		if got := p.String(); got != want {
			t.Errorf("Percent(%d) = %q, want %q", p, got, want)
		}
	}
}

func TestRollout(t *testing.T) {
	c := sample()
	in := func(p Percent) map[string]bool {
		c.Release.Rollout = &p
		m := map[string]bool{}
		for i := range 4000 {
			id := fmt.Sprintf("device-%04d", i)
			if c.Decide(Device{ID: id}).Take {
				m[id] = true
			}
		}
		return m
	}
	prev := map[string]bool{}
	for _, p := range []Percent{0, 100, 1000, 2500, 5000, 9999, 10000} {
		got := in(p)
		for id := range prev {
			if !got[id] {
				t.Fatalf("raising the rollout to %s%% dropped %s", p, id)
			}
		}
		share := float64(len(got)) / 4000
		if d := share - float64(p)/10000; d > 0.03 || d < -0.03 {
			t.Errorf("rollout %s%%: %.1f%% of devices", p, share*100)
		}
		prev = got
	}
	// Another version picks another first group.
	c.Release.Version = "2.0.1"
	p := Percent(1000)
	c.Release.Rollout = &p
	same := 0
	for id := range in(1000) {
		if prev[id] {
			same++
		}
	}
	c.Release.Version = "2.0.0"
	if first := in(1000); same == len(first) {
		t.Errorf("versions 2.0.0 and 2.0.1 roll out to the same devices")
	}
	// A golden bucket: the definition is part of the format.
	if got := Bucket("device-0001", "stable", "2.0.0"); got != goldenBucket {
		t.Errorf("Bucket = %d, want %d (the rollout definition changed)", got, goldenBucket)
	}
	// Selector and missing id.
	c.Release.Select = &Selector{Labels: map[string]string{"ring": "beta"}}
	c.Release.Rollout = nil
	if c.Decide(Device{ID: "x", Labels: map[string]string{"ring": "prod"}}).Take || !c.Decide(Device{Labels: map[string]string{"ring": "beta"}}).Take {
		t.Errorf("label selector")
	}
	c.Release.Select = &Selector{Devices: []string{"a", "b"}}
	if c.Decide(Device{ID: "c"}).Take || !c.Decide(Device{ID: "b"}).Take {
		t.Errorf("device selector")
	}
	c.Release.Select, c.Release.Rollout = nil, &p
	if d := c.Decide(Device{}); d.Take || !strings.Contains(d.Reason, "no id") {
		t.Errorf("no device id: %+v", d)
	}
}

const goldenBucket = 9229

func TestResolve(t *testing.T) {
	c := sample()
	for ref, want := range map[string]string{
		"v2.tandem":                      "https://cdn.example/ch/v2.tandem",
		"../b/v2.tandem":                 "https://cdn.example/b/v2.tandem",
		"/root.tandem":                   "https://cdn.example/root.tandem",
		"https://other.example/x.tandem": "https://other.example/x.tandem",
	} {
		c.Release.Bundle = ref
		got, err := c.Resolve("https://cdn.example/ch/stable.json")
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	c.Release.Bundle = "v2.tandem"
	if _, err := c.Resolve("/local/stable.json"); err == nil {
		t.Errorf("a relative bundle resolved against a file path")
	}
}
