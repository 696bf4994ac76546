package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func pkcs8PEM(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func sec1PEM(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func TestParsePrivateKey(t *testing.T) {
	ed := newEd25519(t)
	p256 := newECDSA(t, elliptic.P256())
	p384 := newECDSA(t, elliptic.P384())
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPEM := pkcs8PEM(t, ed)
	edDER := func() []byte { b, _ := pem.Decode(edPEM); return b.Bytes }()

	for _, c := range []struct {
		name string
		in   []byte
		want crypto.PublicKey // nil: an error containing errText
		err  string
	}{
		{name: "ed25519 PKCS#8", in: edPEM, want: ed.Public()},
		{name: "ed25519 PKCS#8 with surrounding whitespace", in: append(append([]byte("\n\n  "), edPEM...), "\n\n"...), want: ed.Public()},
		{name: "P-256 PKCS#8", in: pkcs8PEM(t, p256), want: p256.Public()},
		{name: "P-256 SEC1", in: sec1PEM(t, p256), want: p256.Public()},
		{name: "P-384 PKCS#8", in: pkcs8PEM(t, p384), err: "P-384"},
		{name: "P-384 SEC1", in: sec1PEM(t, p384), err: "P-384"},
		{name: "RSA PKCS#8", in: pkcs8PEM(t, rsaKey), err: "RSA"},
		{name: "RSA PKCS#1", in: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), err: "RSA"},
		{name: "encrypted PKCS#8", in: pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0}}), err: "encrypted"},
		{name: "legacy encrypted PEM", in: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY",
			Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: []byte{1, 2, 3}}), err: "encrypted"},
		{name: "PEM headers", in: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Comment": "x"}, Bytes: edDER}), err: "headers"},
		{name: "trailing garbage", in: append(append([]byte(nil), edPEM...), "garbage\n"...), err: "trailing data"},
		{name: "leading garbage", in: append([]byte("key:\n"), edPEM...), err: "before the BEGIN"},
		{name: "two keys", in: append(append([]byte(nil), edPEM...), pkcs8PEM(t, p256)...), err: "several PEM blocks"},
		{name: "EC PARAMETERS before the key", in: append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}), sec1PEM(t, p256)...), err: "several PEM blocks"},
		{name: "trailing DER bytes", in: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: append(append([]byte(nil), edDER...), 0, 0)}), err: "trailing data after the DER"},
		{name: "truncated DER", in: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER[:len(edDER)-1]}), err: "malformed DER"},
		{name: "damaged base64", in: []byte(strings.Replace(string(edPEM), "M", "!", 1)), err: "malformed PEM"},
		{name: "truncated PEM", in: edPEM[:len(edPEM)-10], err: "malformed PEM"},
		{name: "public key", in: pubPEM(t, ed.Public()), err: "not a private key"},
		{name: "OpenSSH key", in: pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte("x")}), err: "unsupported PEM block type"},
		{name: "empty", in: nil, err: "empty"},
		{name: "DER instead of PEM", in: edDER, err: "not PEM"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k, err := ParsePrivateKey(c.in)
			if c.want == nil {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("ParsePrivateKey error = %v, want one containing %q", err, c.err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.want) {
				t.Fatal("parsed key differs")
			}
			s := mustSign(t, k, nil, hashA)
			if _, err := Verify([]Signature{s}, trustOf(t, pubPEM(t, c.want)), hashA, atClock); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	priv, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(priv), "-----BEGIN PRIVATE KEY-----\n") || !strings.HasPrefix(string(pub), "-----BEGIN PUBLIC KEY-----\n") {
		t.Fatalf("PEM types:\n%s\n%s", priv, pub)
	}
	k, err := ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.(ed25519.PrivateKey); !ok {
		t.Fatalf("GenerateKey made a %T", k)
	}
	trust, err := ParseTrust(pub)
	if err != nil {
		t.Fatal(err)
	}
	s := mustSign(t, k, nil, hashB)
	if _, err := Verify([]Signature{s}, trust, hashB, atClock); err != nil {
		t.Fatal(err)
	}
	priv2, _, _ := GenerateKey()
	if string(priv2) == string(priv) {
		t.Fatal("GenerateKey made the same key twice")
	}
}

func TestAlgorithmString(t *testing.T) {
	for a, want := range map[Algorithm]string{Ed25519: "ed25519", ECDSAP256SHA256: "ecdsa-p256-sha256", 7: "algorithm(7)"} {
		if a.String() != want {
			t.Errorf("%d: %q", uint8(a), a.String())
		}
	}
	if _, err := KeyIDOf(newECDSA(t, elliptic.P224()).Public()); err == nil {
		t.Error("KeyIDOf accepts P-224")
	}
}
