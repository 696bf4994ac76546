package bundle

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"sort"
	"testing"
)

func pemPublic(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sha256sum(b []byte) [32]byte { return sha256.Sum256(b) }

func sortVectors(v []vector) {
	sort.Slice(v, func(i, j int) bool { return v[i].File < v[j].File })
}

// checkChunk is verifyChunk with the package's decoder: what every
// PayloadReader does with a chunk's stored bytes.
func checkChunk(e *Entry, stored, buf []byte) ([]byte, error) {
	dec, err := zstdDecoder()
	if err != nil {
		return nil, err
	}
	return verifyChunk(dec, e, nil, false, stored, buf)
}
