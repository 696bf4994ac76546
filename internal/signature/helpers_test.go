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
	"encoding/pem"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/testutil"
)

var (
	hashA = sha256.Sum256([]byte("bundle A"))
	hashB = sha256.Sum256([]byte("bundle B"))

	// now2027 is a device clock that has been set (after DefaultFloor).
	now2027 = time.Date(2027, 6, 1, 12, 0, 0, 0, time.UTC)
	// boot1970 is a device without a real-time clock.
	boot1970 = time.Unix(42, 0)

	atClock = TimePolicy{Now: now2027, Floor: DefaultFloor()}
)

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func newEd25519(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newECDSA(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func trustOf(t testing.TB, pems ...[]byte) *TrustStore {
	t.Helper()
	ts := &TrustStore{}
	for _, p := range pems {
		if err := ts.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	return ts
}

func mustSign(t testing.TB, key crypto.Signer, chain [][]byte, h [32]byte) Signature {
	t.Helper()
	s, err := Sign(key, chain, h)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var serial int64

// certTmpl is a certificate to make: subject key, issuer (nil: self-signed).
type certTmpl struct {
	cn        string
	key       crypto.Signer
	issuer    *x509.Certificate
	issuerKey crypto.Signer
	ca        bool
	notBefore time.Time
	notAfter  time.Time
	ku        x509.KeyUsage
	eku       []x509.ExtKeyUsage
	extra     []pkix.Extension
}

func makeCert(t testing.TB, c certTmpl) *x509.Certificate {
	serial++
	return testutil.MakeCert(t, testutil.Cert{CN: c.cn, Serial: serial, Key: c.key, Issuer: c.issuer, IssuerKey: c.issuerKey,
		CA: c.ca, NotBefore: c.notBefore, NotAfter: c.notAfter, KeyUsage: c.ku, ExtKey: c.eku, Extra: c.extra})
}

// pki is root -> intermediate -> leaf.
type pki struct {
	rootKey, interKey, leafKey crypto.Signer
	root, inter, leaf          *x509.Certificate
}

// leafOpts changes the leaf template.
type leafOpts func(*certTmpl)

func newPKI(t testing.TB, rootKey, interKey, leafKey crypto.Signer, opts ...leafOpts) *pki {
	t.Helper()
	p := &pki{rootKey: rootKey, interKey: interKey, leafKey: leafKey}
	p.root = makeCert(t, certTmpl{cn: "Test Root", key: rootKey, ca: true,
		notBefore: date(2020, 1, 1), notAfter: date(2040, 1, 1), ku: x509.KeyUsageCertSign})
	p.inter = makeCert(t, certTmpl{cn: "Test Intermediate", key: interKey, issuer: p.root, issuerKey: rootKey, ca: true,
		notBefore: date(2021, 1, 1), notAfter: date(2039, 1, 1), ku: x509.KeyUsageCertSign})
	lt := certTmpl{cn: "Release Signer", key: leafKey, issuer: p.inter, issuerKey: interKey,
		notBefore: date(2024, 1, 1), notAfter: date(2030, 1, 1),
		ku: x509.KeyUsageDigitalSignature, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	for _, o := range opts {
		o(&lt)
	}
	p.leaf = makeCert(t, lt)
	return p
}

func (p *pki) chain() [][]byte { return [][]byte{p.leaf.Raw, p.inter.Raw} }
