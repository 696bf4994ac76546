package signature

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
)

func TestDetached(t *testing.T) {
	ed, p256 := newEd25519(t), newECDSA(t, elliptic.P256())
	p := newPKI(t, newEd25519(t), newEd25519(t), p256)
	edSig := mustSign(t, ed, nil, hashA).Sig
	ecSig := mustSign(t, p256, nil, hashA).Sig
	p384 := newECDSA(t, elliptic.P384())
	d := sha256.Sum256(Message(hashA))
	p384Sig, err := ecdsa.SignASN1(rand.Reader, p384, d[:])
	if err != nil {
		t.Fatal(err)
	}
	noSign := makeCert(t, certTmpl{cn: "x", key: p256, issuer: p.inter, issuerKey: p.interKey,
		notBefore: date(2024, 1, 1), notAfter: date(2030, 1, 1), ku: x509.KeyUsageCertSign})

	for _, c := range []struct {
		name  string
		sig   []byte
		pub   []byte
		chain [][]byte
		err   string // "" = ok
		is    error
	}{
		{name: "ed25519 key", sig: edSig, pub: pubPEM(t, ed.Public())},
		{name: "p256 key", sig: ecSig, pub: pubPEM(t, p256.Public())},
		{name: "p256 chain", sig: ecSig, chain: p.chain()},
		{name: "p256 key and chain", sig: ecSig, pub: pubPEM(t, p256.Public()), chain: p.chain()},
		{name: "key is not the leaf's", sig: ecSig, pub: pubPEM(t, ed.Public()), chain: p.chain(), err: "not the leaf"},
		{name: "signature of another key", sig: edSig, pub: pubPEM(t, newEd25519(t).Public()), is: ErrBadSignature},
		{name: "signature of another hash", sig: mustSign(t, ed, nil, hashB).Sig, pub: pubPEM(t, ed.Public()), is: ErrBadSignature},
		{name: "ecdsa trailing byte", sig: append(append([]byte(nil), ecSig...), 0), pub: pubPEM(t, p256.Public()), is: ErrBadSignature},
		{name: "oversized", sig: make([]byte, MaxSigSize+1), pub: pubPEM(t, p256.Public()), is: ErrBadSignature},
		{name: "P-384 key", sig: p384Sig, pub: pubPEM(t, p384.Public()), err: "P-384"},
		{name: "leaf without digitalSignature", sig: ecSig, chain: [][]byte{noSign.Raw}, err: "digitalSignature"},
		{name: "garbage certificate", sig: ecSig, chain: [][]byte{[]byte("x")}, err: "certificate 0"},
		{name: "certificate instead of key", sig: ecSig, pub: certPEM(p.leaf), err: "PUBLIC KEY"},
		{name: "two keys", sig: edSig, pub: append(pubPEM(t, ed.Public()), pubPEM(t, p256.Public())...), err: "several PEM blocks"},
		{name: "nothing", sig: edSig, err: "no public key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Detached(c.sig, c.pub, c.chain, hashA)
			if c.err != "" || c.is != nil {
				if err == nil || !strings.Contains(err.Error(), c.err) || (c.is != nil && !errors.Is(err, c.is)) {
					t.Fatalf("Detached error = %v, want %q / %v", err, c.err, c.is)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var trust *TrustStore
			if c.pub == nil {
				trust = trustOf(t, certPEM(p.root))
			} else {
				trust = trustOf(t, c.pub)
			}
			if _, err := Verify([]Signature{s}, trust, hashA, atClock); err != nil {
				t.Fatal(err)
			}
			if len(c.sig) > 0 {
				c.sig[0] ^= 1 // Detached copied it
				if _, err := Verify([]Signature{s}, trust, hashA, atClock); err != nil {
					t.Fatal("Detached did not copy the signature bytes")
				}
				c.sig[0] ^= 1
			}
		})
	}
}
