package signature

import (
	"bytes"
	"crypto/elliptic"
	"errors"
	"testing"
)

const testDomain = "tandem test document v1\x00"

func TestDigestDomainSeparation(t *testing.T) {
	ed, ec := newEd25519(t), newECDSA(t, elliptic.P256())
	trust := &TrustStore{}
	for _, pub := range [][]byte{pubPEM(t, ed.Public()), pubPEM(t, ec.Public())} {
		if err := trust.Add(pub); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []struct {
		name string
		sign func(domain string) (Signature, error)
	}{
		{"ed25519", func(d string) (Signature, error) { return SignDigest(ed, nil, d, hashA) }},
		{"ecdsa", func(d string) (Signature, error) { return SignDigest(ec, nil, d, hashA) }},
	} {
		t.Run(s.name, func(t *testing.T) {
			sig, err := s.sign(testDomain)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyDigest([]Signature{sig}, trust, testDomain, hashA, atClock); err != nil {
				t.Fatalf("verify in its domain: %v", err)
			}
			if _, err := VerifyDigest([]Signature{sig}, trust, testDomain, hashB, atClock); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("verify another digest: %v, want ErrBadSignature", err)
			}
			if _, err := Verify([]Signature{sig}, trust, hashA, atClock); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("a %q signature verified as a bundle signature: %v", testDomain, err)
			}
			bsig, err := Sign(ed, nil, hashA)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyDigest([]Signature{bsig}, trust, testDomain, hashA, atClock); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("a bundle signature verified in domain %q: %v", testDomain, err)
			}
			// The bundle domain is the same message Sign and Verify use.
			if _, err := VerifyDigest([]Signature{bsig}, trust, MessagePrefix, hashA, atClock); err != nil {
				t.Fatalf("a bundle signature does not verify as digest in MessagePrefix: %v", err)
			}
		})
	}
	m, err := DomainMessage(MessagePrefix, hashA)
	if err != nil || !bytes.Equal(m, Message(hashA)) {
		t.Fatalf("DomainMessage(MessagePrefix) = %x, %v; want Message", m, err)
	}
	for _, bad := range []string{"", "\x00", "no nul", "two\x00nuls\x00", "tab\there\x00", "ünicode\x00"} {
		if _, err := SignDigest(ed, nil, bad, hashA); err == nil {
			t.Errorf("SignDigest accepted domain %q", bad)
		}
		if _, err := VerifyDigest(nil, trust, bad, hashA, atClock); err == nil {
			t.Errorf("VerifyDigest accepted domain %q", bad)
		}
	}
}
