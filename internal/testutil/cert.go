package testutil

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// Cert is a certificate for a test to make (MakeCert): the signing tests'
// chains and the bundle format's certificate vectors.
type Cert struct {
	CN        string
	Serial    int64
	Key       crypto.Signer     // the subject's key
	Issuer    *x509.Certificate // nil: self-signed with Key
	IssuerKey crypto.Signer
	CA        bool
	NotBefore time.Time
	NotAfter  time.Time
	KeyUsage  x509.KeyUsage
	ExtKey    []x509.ExtKeyUsage
	Extra     []pkix.Extension
}

// MakeCert creates c (basic constraints always present) and returns it
// parsed. With Ed25519 keys the result depends only on c.
func MakeCert(t testing.TB, c Cert) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(c.Serial), Subject: pkix.Name{CommonName: c.CN},
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, KeyUsage: c.KeyUsage, ExtKeyUsage: c.ExtKey,
		ExtraExtensions: c.Extra, BasicConstraintsValid: true, IsCA: c.CA,
	}
	issuer, issuerKey := tmpl, c.Key
	if c.Issuer != nil {
		issuer, issuerKey = c.Issuer, c.IssuerKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, c.Key.Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
