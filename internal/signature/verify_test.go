package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"io"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// vcase is one Verify call and what it must give.
type vcase struct {
	name    string
	sigs    []Signature
	trust   *TrustStore
	hash    [32]byte
	policy  TimePolicy
	wantErr error // nil: success
	check   func(t *testing.T, s Signer)
}

func runCases(t *testing.T, cases []vcase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Verify(c.sigs, c.trust, c.hash, c.policy)
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.check != nil {
					c.check(t, got)
				}
				return
			}
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, c.wantErr)
			}
			if got.KeyID != "" || got.Chain != nil {
				t.Errorf("failed Verify returned signer %+v", got)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("error is not one line: %q", err)
			}
			for _, s := range c.sigs {
				if c.wantErr == ErrNoTrust || len(c.sigs) > MaxSignatures {
					break // nothing was tried
				}
				if id := hex.EncodeToString(s.KeyID[:]); !strings.Contains(err.Error(), id) {
					t.Errorf("error %q does not name key %s", err, id)
				}
			}
			// A sentinel is exactly one kind.
			for _, other := range []error{ErrNoTrust, ErrUnsigned, ErrUntrusted, ErrBadSignature, ErrExpired} {
				if other != c.wantErr && errors.Is(err, other) {
					t.Errorf("error %q is also %v", err, other)
				}
			}
		})
	}
}

func keyIDHex(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	id, err := KeyIDOf(pub)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(id[:])
}

func rawSigner(t testing.TB, pub crypto.PublicKey, alg Algorithm) func(*testing.T, Signer) {
	want := keyIDHex(t, pub)
	return func(t *testing.T, s Signer) {
		if s.KeyID != want || s.Algorithm != alg || s.Chain != nil || s.Subject != "" || s.TimeChecked || s.TimeSource != TimeNotChecked {
			t.Errorf("signer = %+v, want raw %s key %s", s, alg, want)
		}
	}
}

func withSig(s Signature, sig []byte) Signature {
	s.Sig = sig
	return s
}

// ecdsaDER encodes (r, s) as DER by hand, optionally padding integers with
// a needless zero byte.
func ecdsaDER(r, s *big.Int, pad bool) []byte {
	integer := func(v *big.Int) []byte {
		b := v.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...) // DER needs this one
		}
		if pad {
			b = append([]byte{0}, b...) // and forbids this one
		}
		return append([]byte{0x02, byte(len(b))}, b...)
	}
	body := append(integer(r), integer(s)...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

func TestVerifyRawKeys(t *testing.T) {
	ed := newEd25519(t)
	p256 := newECDSA(t, elliptic.P256())
	other := newEd25519(t)
	trust := trustOf(t, pubPEM(t, ed.Public()), pubPEM(t, p256.Public()))

	edSig := mustSign(t, ed, nil, hashA)
	ecSig := mustSign(t, p256, nil, hashA)
	otherSig := mustSign(t, other, nil, hashA)

	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(ecSig.Sig, &rs); err != nil {
		t.Fatal(err)
	}
	n := elliptic.P256().Params().N
	highS := ecdsaDER(rs.R, new(big.Int).Sub(n, rs.S), false)
	// S + L: the same Ed25519 signature with a non-canonical scalar.
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	sLE := slices.Clone(edSig.Sig[32:])
	slices.Reverse(sLE)
	sPlusL := new(big.Int).Add(new(big.Int).SetBytes(sLE), l).FillBytes(make([]byte, 32))
	slices.Reverse(sPlusL)
	nonCanonicalEd := append(slices.Clone(edSig.Sig[:32]), sPlusL...)

	otherECDSA := mustSign(t, newECDSA(t, elliptic.P256()), nil, hashA)
	var ors struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(otherECDSA.Sig, &ors); err != nil {
		t.Fatal(err)
	}
	otherHighS := ecdsaDER(ors.R, new(big.Int).Sub(n, ors.S), false)
	oLE := slices.Clone(otherSig.Sig[32:])
	slices.Reverse(oLE)
	oPlusL := new(big.Int).Add(new(big.Int).SetBytes(oLE), l).FillBytes(make([]byte, 32))
	slices.Reverse(oPlusL)
	nonCanonicalOther := append(slices.Clone(otherSig.Sig[:32]), oPlusL...)
	junkCerts := edSig
	junkCerts.Certs = [][]byte{[]byte("junk")}
	otherJunkCerts := otherSig
	otherJunkCerts.Certs = [][]byte{[]byte("junk")}

	edAsECDSA := edSig
	edAsECDSA.Algorithm = ECDSAP256SHA256
	unknownAlg := edSig
	unknownAlg.Algorithm = 9

	runCases(t, []vcase{
		{name: "ed25519", sigs: []Signature{edSig}, trust: trust, hash: hashA, policy: atClock,
			check: rawSigner(t, ed.Public(), Ed25519)},
		{name: "p256", sigs: []Signature{ecSig}, trust: trust, hash: hashA, policy: atClock,
			check: rawSigner(t, p256.Public(), ECDSAP256SHA256)},
		{name: "ed25519 on a device booted in 1970", sigs: []Signature{edSig}, trust: trust, hash: hashA,
			policy: TimePolicy{Now: boot1970}, check: rawSigner(t, ed.Public(), Ed25519)},
		{name: "zero policy", sigs: []Signature{ecSig}, trust: trust, hash: hashA},
		{name: "ed25519 over another hash", sigs: []Signature{edSig}, trust: trust, hash: hashB, policy: atClock, wantErr: ErrBadSignature},
		{name: "p256 over another hash", sigs: []Signature{ecSig}, trust: trust, hash: hashB, policy: atClock, wantErr: ErrBadSignature},
		{name: "ed25519 truncated", sigs: []Signature{withSig(edSig, edSig.Sig[:63])}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "ed25519 extra byte", sigs: []Signature{withSig(edSig, append(slices.Clone(edSig.Sig), 0))}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "ed25519 empty", sigs: []Signature{withSig(edSig, nil)}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "ed25519 garbage", sigs: []Signature{withSig(edSig, make([]byte, 64))}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "ed25519 non-canonical S", sigs: []Signature{withSig(edSig, nonCanonicalEd)}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "p256 truncated", sigs: []Signature{withSig(ecSig, ecSig.Sig[:len(ecSig.Sig)-1])}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "p256 trailing byte", sigs: []Signature{withSig(ecSig, append(slices.Clone(ecSig.Sig), 0))}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "p256 padded integers", sigs: []Signature{withSig(ecSig, ecdsaDER(rs.R, rs.S, true))}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "p256 raw r||s", sigs: []Signature{withSig(ecSig, append(rs.R.FillBytes(make([]byte, 32)), rs.S.FillBytes(make([]byte, 32))...))}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "p256 garbage", sigs: []Signature{withSig(ecSig, []byte("not a signature at all"))}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "p256 zero r", sigs: []Signature{withSig(ecSig, ecdsaDER(big.NewInt(0), rs.S, false))}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		// issue 11, hardening 8: only the low-s form is canonical.
		{name: "p256 high S", sigs: []Signature{withSig(ecSig, highS)}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "p256 high S by an unknown key beside a valid one", sigs: []Signature{edSig, withSig(otherECDSA, otherHighS)}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "algorithm does not match the trusted key", sigs: []Signature{edAsECDSA}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "unknown key", sigs: []Signature{otherSig}, trust: trust, hash: hashA, wantErr: ErrUntrusted},
		// issue 11, hardening 8: a record the device cannot make sense of
		// is not ignored.
		{name: "unknown algorithm", sigs: []Signature{unknownAlg}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "oversized signature", sigs: []Signature{withSig(edSig, make([]byte, MaxSigSize+1))}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "unknown key, non-canonical ed25519 S", sigs: []Signature{edSig, withSig(otherSig, nonCanonicalOther)}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "unknown key, valid signature beside a valid one", sigs: []Signature{otherSig, edSig}, trust: trust, hash: hashA,
			check: rawSigner(t, ed.Public(), Ed25519)},
		{name: "garbage certificates on a raw-key signature", sigs: []Signature{junkCerts}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "garbage certificates on an unknown key beside a valid one", sigs: []Signature{edSig, otherJunkCerts}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "too many signatures", sigs: slices.Repeat([]Signature{edSig}, MaxSignatures+1), trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "only the second signature is trusted", sigs: []Signature{otherSig, ecSig}, trust: trust, hash: hashA,
			check: rawSigner(t, p256.Public(), ECDSAP256SHA256)},
		{name: "unknown algorithm then a valid one", sigs: []Signature{unknownAlg, edSig}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "bad signature by a trusted key then a valid one", sigs: []Signature{withSig(edSig, make([]byte, 64)), ecSig}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "valid one then a bad signature by a trusted key", sigs: []Signature{ecSig, withSig(edSig, make([]byte, 64))}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "unknown then bad is bad", sigs: []Signature{otherSig, withSig(edSig, edSig.Sig[:10])}, trust: trust, hash: hashA, wantErr: ErrBadSignature},
		{name: "no signatures", trust: trust, hash: hashA, wantErr: ErrUnsigned},
		{name: "empty trust store", sigs: []Signature{edSig}, trust: &TrustStore{}, hash: hashA, wantErr: ErrNoTrust},
		{name: "nil trust store", sigs: []Signature{edSig}, hash: hashA, wantErr: ErrNoTrust},
		{name: "empty trust store and no signatures", trust: &TrustStore{}, hash: hashA, wantErr: ErrNoTrust},
	})
}

func TestVerifyCertificates(t *testing.T) {
	type keys struct {
		name              string
		root, inter, leaf crypto.Signer
	}
	for _, k := range []keys{
		{"ed25519", newEd25519(t), newEd25519(t), newEd25519(t)},
		{"ecdsa", newECDSA(t, elliptic.P256()), newECDSA(t, elliptic.P256()), newECDSA(t, elliptic.P256())},
		{"mixed", newECDSA(t, elliptic.P384()), newEd25519(t), newECDSA(t, elliptic.P256())},
	} {
		t.Run(k.name, func(t *testing.T) { testCertificates(t, k.root, k.inter, k.leaf) })
	}
}

func testCertificates(t *testing.T, rootKey, interKey, leafKey crypto.Signer) {
	p := newPKI(t, rootKey, interKey, leafKey)
	trust := trustOf(t, certPEM(p.root))
	good := mustSign(t, leafKey, p.chain(), hashA)
	alg := good.Algorithm

	chainSigner := func(src TimeSource, at time.Time) func(*testing.T, Signer) {
		return func(t *testing.T, s Signer) {
			t.Helper()
			if s.Subject != "Release Signer" || s.KeyID != keyIDHex(t, leafKey.Public()) || s.Algorithm != alg {
				t.Errorf("signer = %+v", s)
			}
			if len(s.Chain) != 3 || !s.Chain[0].Equal(p.leaf) || !s.Chain[2].Equal(p.root) {
				t.Errorf("chain = %v", s.Chain)
			}
			if s.TimeSource != src || s.TimeChecked != (src != TimeNotChecked) || !s.CheckedAt.Equal(at) {
				t.Errorf("time: source %v checked %v at %v, want %v at %v", s.TimeSource, s.TimeChecked, s.CheckedAt, src, at)
			}
		}
	}
	// variant signs hashA with a leaf changed by opts, under the same root.
	variant := func(opts ...leafOpts) Signature {
		lt := certTmpl{cn: "Release Signer", key: leafKey, issuer: p.inter, issuerKey: interKey,
			notBefore: date(2024, 1, 1), notAfter: date(2030, 1, 1),
			ku: x509.KeyUsageDigitalSignature, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
		for _, o := range opts {
			o(&lt)
		}
		s := good
		s.Certs = [][]byte{makeCert(t, lt).Raw, p.inter.Raw}
		return s
	}
	expired := variant(func(c *certTmpl) { c.notBefore, c.notAfter = date(2024, 1, 1), date(2025, 1, 1) })
	notYet := variant(func(c *certTmpl) { c.notBefore, c.notAfter = date(2028, 1, 1), date(2030, 1, 1) })
	neverTogether := variant(func(c *certTmpl) { c.notBefore, c.notAfter = date(2041, 1, 1), date(2042, 1, 1) })
	wrongKU := variant(func(c *certTmpl) { c.ku = x509.KeyUsageKeyEncipherment })
	wrongEKU := variant(func(c *certTmpl) { c.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })
	anyEKU := variant(func(c *certTmpl) { c.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} })
	noUsages := variant(func(c *certTmpl) { c.ku, c.eku = 0, nil })

	// Same keys, another root nobody trusts.
	stranger := newPKI(t, newEd25519(t), interKey, leafKey)
	untrusted := good
	untrusted.Certs = stranger.chain()
	strangerExpired := newPKI(t, newEd25519(t), interKey, leafKey, func(c *certTmpl) { c.notAfter = date(2025, 1, 1) })
	untrustedExpired := good
	untrustedExpired.Certs = strangerExpired.chain()

	missingInter := good
	missingInter.Certs = good.Certs[:1]
	otherHash := good
	otherHash.Sig = mustSign(t, leafKey, p.chain(), hashB).Sig
	garbageCert := good
	garbageCert.Certs = [][]byte{[]byte("not DER"), p.inter.Raw}
	garbageInter := good
	garbageInter.Certs = [][]byte{p.leaf.Raw, {0x30, 0x03, 0x02, 0x01, 0x01}}
	truncatedSig := withSig(good, good.Sig[:len(good.Sig)-3])
	wrongKeyID := good
	wrongKeyID.KeyID[0] ^= 1
	wrongAlg := good
	wrongAlg.Algorithm = 3 - good.Algorithm
	tooMany := good
	tooMany.Certs = slices.Repeat([][]byte{p.inter.Raw}, MaxCerts)
	tooMany.Certs[0] = p.leaf.Raw
	tooMany.Certs = append(tooMany.Certs, p.inter.Raw)

	// A P-384 leaf: the chain is fine, the leaf key type is not.
	p384 := newECDSA(t, elliptic.P384())
	p384Leaf := makeCert(t, certTmpl{cn: "P-384 Signer", key: p384, issuer: p.inter, issuerKey: interKey,
		notBefore: date(2024, 1, 1), notAfter: date(2030, 1, 1), ku: x509.KeyUsageDigitalSignature})
	d := ecdsaSign(t, p384, Message(hashA))
	p384ID, _ := x509.MarshalPKIXPublicKey(p384.Public())
	p384Sig := Signature{Algorithm: ECDSAP256SHA256, KeyID: sha256.Sum256(p384ID), Certs: [][]byte{p384Leaf.Raw, p.inter.Raw}, Sig: d}

	// A self-signed leaf trusted directly, and an intermediate as anchor.
	selfLeaf := makeCert(t, certTmpl{cn: "Release Signer", key: leafKey, notBefore: date(2024, 1, 1), notAfter: date(2030, 1, 1),
		ku: x509.KeyUsageDigitalSignature, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}})
	selfSigned := mustSign(t, leafKey, [][]byte{selfLeaf.Raw}, hashA)

	created := func(c time.Time) TimePolicy { return TimePolicy{Now: boot1970, Floor: DefaultFloor(), Created: c} }

	reversed := good
	reversed.Certs = [][]byte{p.leaf.Raw, p.root.Raw, p.inter.Raw}
	appended := good
	appended.Certs = append(p.chain(), selfLeaf.Raw)
	policies, _ := asn1.Marshal([]struct{ ID asn1.ObjectIdentifier }{{asn1.ObjectIdentifier{2, 5, 29, 32, 0}}})
	criticalPolicies := variant(func(c *certTmpl) {
		c.extra = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 32}, Critical: true, Value: policies}}
	})
	criticalUnknown := variant(func(c *certTmpl) {
		c.extra = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{5, 0}}}
	})
	// An intermediate for TLS servers only, issuing a code-signing leaf.
	tlsInter := makeCert(t, certTmpl{cn: "TLS Intermediate", key: interKey, issuer: p.root, issuerKey: rootKey, ca: true,
		notBefore: date(2021, 1, 1), notAfter: date(2039, 1, 1), ku: x509.KeyUsageCertSign, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	interEKU := good
	interEKU.Certs = [][]byte{makeCert(t, certTmpl{cn: "Release Signer", key: leafKey, issuer: tlsInter, issuerKey: interKey,
		notBefore: date(2024, 1, 1), notAfter: date(2030, 1, 1), ku: x509.KeyUsageDigitalSignature}).Raw, tlsInter.Raw}
	// The same root name and key, but a KeyUsage without keyCertSign:
	// crypto/x509 would take it, tandem does not.
	noCertSignRoot := makeCert(t, certTmpl{cn: "Test Root", key: rootKey, ca: true,
		notBefore: date(2020, 1, 1), notAfter: date(2040, 1, 1), ku: x509.KeyUsageDigitalSignature})

	runCases(t, []vcase{
		{name: "chain", sigs: []Signature{good}, trust: trust, hash: hashA, policy: atClock, check: chainSigner(TimeClock, now2027)},
		{name: "chain at 1970 with created", sigs: []Signature{good}, trust: trust, hash: hashA,
			policy: created(date(2026, 3, 1)), check: chainSigner(TimeCreated, date(2026, 3, 1))},
		{name: "chain at 1970 without created", sigs: []Signature{good}, trust: trust, hash: hashA,
			policy: created(time.Time{}), check: chainSigner(TimeNotChecked, time.Time{})},
		{name: "chain at 1970 with created = epoch", sigs: []Signature{good}, trust: trust, hash: hashA,
			policy: created(time.Unix(0, 0)), check: chainSigner(TimeNotChecked, time.Time{})},
		{name: "chain trusted by its intermediate", sigs: []Signature{good}, trust: trustOf(t, certPEM(p.inter)), hash: hashA, policy: atClock,
			check: func(t *testing.T, s Signer) {
				if len(s.Chain) != 2 || !s.Chain[1].Equal(p.inter) {
					t.Errorf("chain = %v", s.Chain)
				}
			}},
		{name: "self-signed leaf trusted directly", sigs: []Signature{selfSigned}, trust: trustOf(t, certPEM(selfLeaf)), hash: hashA, policy: atClock,
			check: func(t *testing.T, s Signer) {
				if len(s.Chain) != 1 {
					t.Errorf("chain = %v", s.Chain)
				}
			}},
		{name: "untrusted root", sigs: []Signature{untrusted}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrUntrusted},
		{name: "untrusted root and expired leaf", sigs: []Signature{untrustedExpired}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrUntrusted},
		{name: "untrusted root without time", sigs: []Signature{untrusted}, trust: trust, hash: hashA, policy: created(time.Time{}), wantErr: ErrUntrusted},
		{name: "raw key trust only", sigs: []Signature{good}, trust: trustOf(t, pubPEM(t, newEd25519(t).Public())), hash: hashA, policy: atClock, wantErr: ErrUntrusted},
		{name: "leaf key trusted as raw key, chain untrusted", sigs: []Signature{untrusted}, trust: trustOf(t, certPEM(p.root), pubPEM(t, leafKey.Public())),
			hash: hashA, policy: atClock, check: rawSigner(t, leafKey.Public(), alg)},
		{name: "missing intermediate", sigs: []Signature{missingInter}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrUntrusted},
		{name: "missing intermediate without time", sigs: []Signature{missingInter}, trust: trust, hash: hashA, policy: created(time.Time{}), wantErr: ErrUntrusted},
		{name: "expired leaf, clock set", sigs: []Signature{expired}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrExpired},
		{name: "expired leaf, clock set, created inside validity", sigs: []Signature{expired}, trust: trust, hash: hashA,
			policy: TimePolicy{Now: now2027, Floor: DefaultFloor(), Created: date(2024, 6, 1)}, wantErr: ErrExpired},
		{name: "expired leaf, 1970, created inside validity", sigs: []Signature{expired}, trust: trust, hash: hashA,
			policy: created(date(2024, 6, 1)), check: func(t *testing.T, s Signer) {
				if !s.TimeChecked || s.TimeSource != TimeCreated || !s.CheckedAt.Equal(date(2024, 6, 1)) {
					t.Errorf("signer = %+v", s)
				}
			}},
		{name: "expired leaf, 1970, created after expiry", sigs: []Signature{expired}, trust: trust, hash: hashA,
			policy: created(date(2025, 6, 1)), wantErr: ErrExpired},
		{name: "expired leaf, 1970, no created", sigs: []Signature{expired}, trust: trust, hash: hashA,
			policy: created(time.Time{}), check: func(t *testing.T, s Signer) {
				if s.TimeChecked || s.TimeSource != TimeNotChecked || len(s.Chain) != 3 || !strings.Contains(s.String(), "NOT checked") {
					t.Errorf("signer = %+v", s)
				}
			}},
		{name: "leaf not yet valid", sigs: []Signature{notYet}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrExpired},
		{name: "expired but bad signature is bad", sigs: []Signature{withSig(expired, otherHash.Sig)}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		{name: "chain never valid at one time", sigs: []Signature{neverTogether}, trust: trust, hash: hashA, policy: created(time.Time{}), wantErr: ErrUntrusted},
		{name: "wrong key usage", sigs: []Signature{wrongKU}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrUntrusted},
		{name: "wrong extended key usage", sigs: []Signature{wrongEKU}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrUntrusted},
		{name: "wrong extended key usage without time", sigs: []Signature{wrongEKU}, trust: trust, hash: hashA, policy: created(time.Time{}), wantErr: ErrUntrusted},
		{name: "any extended key usage", sigs: []Signature{anyEKU}, trust: trust, hash: hashA, policy: atClock},
		{name: "no key usage extensions", sigs: []Signature{noUsages}, trust: trust, hash: hashA, policy: atClock},
		{name: "P-384 leaf", sigs: []Signature{p384Sig}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		{name: "signature over another hash", sigs: []Signature{otherHash}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		{name: "truncated signature", sigs: []Signature{truncatedSig}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		{name: "key id does not match the leaf", sigs: []Signature{wrongKeyID}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		{name: "algorithm does not match the leaf", sigs: []Signature{wrongAlg}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		{name: "garbage leaf", sigs: []Signature{garbageCert}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		{name: "garbage intermediate", sigs: []Signature{garbageInter}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		{name: "too many certificates", sigs: []Signature{tooMany}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		// issue 11, hardening 8: the carried chain is the path, in order.
		{name: "chain out of order", sigs: []Signature{reversed}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		{name: "unrelated certificate appended", sigs: []Signature{appended}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		{name: "broken certificate signature beside a valid one", sigs: []Signature{good, withSig(untrusted, otherHash.Sig)}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		// issue 11, hardening 11: X.509 path rules decided by tandem.
		{name: "critical extension tandem does not handle", sigs: []Signature{criticalPolicies}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrUntrusted},
		{name: "unknown critical extension", sigs: []Signature{criticalUnknown}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrUntrusted},
		{name: "intermediate without codeSigning", sigs: []Signature{interEKU}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrUntrusted},
		{name: "trusted issuer without keyCertSign", sigs: []Signature{good}, trust: trustOf(t, certPEM(noCertSignRoot)), hash: hashA, policy: atClock, wantErr: ErrUntrusted},
		{name: "only the second signature is trusted", sigs: []Signature{untrusted, good}, trust: trust, hash: hashA, policy: atClock,
			check: chainSigner(TimeClock, now2027)},
		{name: "expired then valid", sigs: []Signature{expired, good}, trust: trust, hash: hashA, policy: atClock,
			check: chainSigner(TimeClock, now2027)},
		{name: "untrusted then expired is expired", sigs: []Signature{untrusted, expired}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrExpired},
		{name: "expired then bad is bad", sigs: []Signature{expired, otherHash}, trust: trust, hash: hashA, policy: atClock, wantErr: ErrBadSignature},
		{name: "empty trust store", sigs: []Signature{good}, trust: &TrustStore{}, hash: hashA, policy: atClock, wantErr: ErrNoTrust},
	})
}

func ecdsaSign(t testing.TB, k *ecdsa.PrivateKey, msg []byte) []byte {
	t.Helper()
	d := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func TestVerifyErrorText(t *testing.T) {
	a, b := newEd25519(t), newECDSA(t, elliptic.P256())
	trust := trustOf(t, pubPEM(t, a.Public()))
	sigs := []Signature{withSig(mustSign(t, a, nil, hashA), make([]byte, 64)), mustSign(t, b, nil, hashA)}
	_, err := Verify(sigs, trust, hashA, atClock)
	msg := err.Error()
	for _, want := range []string{keyIDHex(t, a.Public()), keyIDHex(t, b.Public()), "ed25519", "unknown key", "2 signature(s)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if !errors.Is(err, ErrBadSignature) {
		t.Errorf("error %v is not ErrBadSignature", err)
	}
	// Many signatures: the text stays bounded.
	many := slices.Repeat(sigs[1:], MaxSignatures)
	_, err = Verify(many, trust, hashA, atClock)
	if !errors.Is(err, ErrUntrusted) || len(err.Error()) > 2200 || !strings.Contains(err.Error(), "and 56 more") {
		t.Errorf("error for 500 signatures: %d bytes: %.300s", len(err.Error()), err)
	}
}

func TestOneLine(t *testing.T) {
	if got := oneLine("a\nb\x1b[31m\r\x7f"); got != "a?b?[31m??" {
		t.Errorf("oneLine = %q", got)
	}
	if got := oneLine(strings.Repeat("é", 1500)); len(got) > 2003 || !strings.HasSuffix(got, "...") || !utf8.ValidString(got) {
		t.Errorf("oneLine of a long string: %d bytes", len(got))
	}
	s := Signer{Algorithm: Ed25519, KeyID: "ab", Subject: "Evil\nName", Chain: []*x509.Certificate{{}}, Source: "/etc/x\n.pem"}
	if str := s.String(); strings.ContainsAny(str, "\n") || !strings.Contains(str, "NOT checked") {
		t.Errorf("String = %q", str)
	}
}

func TestSign(t *testing.T) {
	ed := newEd25519(t)
	p := newPKI(t, newEd25519(t), newEd25519(t), ed)
	wrongKU := makeCert(t, certTmpl{cn: "x", key: ed, issuer: p.inter, issuerKey: p.interKey,
		notBefore: date(2024, 1, 1), notAfter: date(2030, 1, 1), ku: x509.KeyUsageKeyEncipherment})
	wrongEKU := makeCert(t, certTmpl{cn: "x", key: ed, issuer: p.inter, issuerKey: p.interKey,
		notBefore: date(2024, 1, 1), notAfter: date(2030, 1, 1), eku: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
	for _, c := range []struct {
		name  string
		key   crypto.Signer
		chain [][]byte
		want  string
	}{
		{"nil key", nil, nil, "no key"},
		{"P-384 key", newECDSA(t, elliptic.P384()), nil, "P-384"},
		{"short ed25519 key", ed25519.PrivateKey(make([]byte, 10)), nil, "malformed"},
		{"leaf of another key", newEd25519(t), p.chain(), "not the signing key"},
		{"garbage certificate", ed, [][]byte{p.leaf.Raw, []byte("junk")}, "certificate 1"},
		{"leaf without digitalSignature", ed, [][]byte{wrongKU.Raw}, "digitalSignature"},
		{"leaf for e-mail only", ed, [][]byte{wrongEKU.Raw}, "codeSigning"},
		{"too many certificates", ed, slices.Repeat([][]byte{p.leaf.Raw}, MaxCerts+1), "limit"},
		{"broken signer", brokenSigner{ed}, nil, "invalid signature"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Sign(c.key, c.chain, hashA)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Sign error = %v, want one containing %q", err, c.want)
			}
		})
	}
	t.Run("chain is copied", func(t *testing.T) {
		chain := p.chain()
		s := mustSign(t, ed, chain, hashA)
		chain[0][0] ^= 0xff
		if _, err := Verify([]Signature{s}, trustOf(t, certPEM(p.root)), hashA, atClock); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("message", func(t *testing.T) {
		m := Message(hashA)
		if string(m[:len(MessagePrefix)]) != "tandem bundle signature v1\x00" || string(m[len(MessagePrefix):]) != string(hashA[:]) {
			t.Fatalf("Message = %q", m)
		}
		s := mustSign(t, ed, nil, hashA)
		if !ed25519.Verify(ed.Public().(ed25519.PublicKey), m, s.Sig) {
			t.Fatal("ed25519 signature is not over Message")
		}
	})
}

// brokenSigner signs something else.
type brokenSigner struct{ ed25519.PrivateKey }

func (b brokenSigner) Sign(r io.Reader, msg []byte, o crypto.SignerOpts) ([]byte, error) {
	return b.PrivateKey.Sign(r, append(msg, 1), o)
}

// TestVerifyJunkBeforeValidChain: issue 11, hardening 8. Certificate
// signatures that chain to nothing the device trusts, placed before a valid
// one, must not use up the chain-verification budget: they are valid
// signatures under their own (junk) leaves, so only the trust store's
// subject index can tell them apart cheaply. The old code spent at least
// one crypto/x509 verification on each (two here: no time check, and the
// junk intermediates become valid inside their leaves' validity) and then
// refused the valid chain as "not checked".
func TestVerifyJunkBeforeValidChain(t *testing.T) {
	p := newPKI(t, newEd25519(t), newEd25519(t), newEd25519(t))
	trust := trustOf(t, certPEM(p.root))
	good := mustSign(t, p.leafKey, p.chain(), hashA)
	junkKey := newEd25519(t)
	var sigs []Signature
	for range MaxSignatures - 1 {
		j := newPKI(t, newEd25519(t), newEd25519(t), junkKey, func(c *certTmpl) { c.notBefore = date(2020, 6, 1) })
		sigs = append(sigs, mustSign(t, junkKey, j.chain(), hashA))
	}
	sigs = append(sigs, good)
	start := time.Now()
	got, err := Verify(sigs, trust, hashA, TimePolicy{Now: boot1970})
	if err != nil {
		t.Fatalf("valid chain after %d junk chains: %v", len(sigs)-1, err)
	}
	if got.Subject != "Release Signer" {
		t.Fatalf("signer %+v", got)
	}
	t.Logf("%d signatures verified in %v", len(sigs), time.Since(start))
}

// TestVerifyWorkBound measures the worst a full signature section can
// cost: MaxSignatures records of MaxCerts certificates each, every
// certificate naming a trusted root as issuer (so each costs a failed
// signature check against it) and every record's chain in order.
func TestVerifyWorkBound(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	rootKey := newECDSA(t, elliptic.P256())
	root := makeCert(t, certTmpl{cn: "Test Root", key: rootKey, ca: true, notBefore: date(2020, 1, 1), notAfter: date(2040, 1, 1), ku: x509.KeyUsageCertSign})
	trust := trustOf(t, certPEM(root))
	// A chain of MaxCerts certificates under a fake root of the same name.
	fakeKey := newECDSA(t, elliptic.P256())
	issuer := makeCert(t, certTmpl{cn: "Test Root", key: fakeKey, ca: true, notBefore: date(2020, 1, 1), notAfter: date(2040, 1, 1), ku: x509.KeyUsageCertSign})
	issuerKey := crypto.Signer(fakeKey)
	chain := []*x509.Certificate{issuer}
	for range MaxCerts - 2 {
		k := newECDSA(t, elliptic.P256())
		c := makeCert(t, certTmpl{cn: "Test Root", key: k, issuer: chain[0], issuerKey: issuerKey, ca: true, notBefore: date(2020, 1, 1), notAfter: date(2040, 1, 1), ku: x509.KeyUsageCertSign})
		chain = append([]*x509.Certificate{c}, chain...)
		issuerKey = k
	}
	leafKey := newEd25519(t)
	leaf := makeCert(t, certTmpl{cn: "Junk", key: leafKey, issuer: chain[0], issuerKey: issuerKey, notBefore: date(2024, 1, 1), notAfter: date(2030, 1, 1)})
	var ders [][]byte
	for _, c := range append([]*x509.Certificate{leaf}, chain...) {
		ders = append(ders, c.Raw)
	}
	s := mustSign(t, leafKey, ders, hashA)
	sigs := slices.Repeat([]Signature{s}, MaxSignatures)
	start := time.Now()
	_, err := Verify(sigs, trust, hashA, TimePolicy{Now: boot1970})
	took := time.Since(start)
	if !errors.Is(err, ErrUntrusted) {
		t.Fatalf("Verify = %v", err)
	}
	t.Logf("%d records of %d certificates: %v", MaxSignatures, len(ders), took)
	if took > 10*time.Second {
		t.Errorf("Verify of a hostile section took %v", took)
	}
}
