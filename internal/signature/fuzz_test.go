package signature

import (
	"bytes"
	"crypto/elliptic"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
)

// fuzzWorld is a trust store and everything the fuzzer may pick from: known
// key ids, certificates and valid signatures of hashA.
type fuzzWorld struct {
	trust *TrustStore
	ids   [][32]byte
	certs [][]byte
	valid []Signature // valid under trust for hashA, at now2027
}

func newFuzzWorld(t testing.TB) *fuzzWorld {
	ed, p256 := newEd25519(t), newECDSA(t, elliptic.P256())
	p := newPKI(t, newEd25519(t), newECDSA(t, elliptic.P256()), newEd25519(t))
	q := newPKI(t, newECDSA(t, elliptic.P256()), newEd25519(t), newECDSA(t, elliptic.P256()))
	stranger := newPKI(t, newEd25519(t), newEd25519(t), newEd25519(t))
	w := &fuzzWorld{trust: trustOf(t, pubPEM(t, ed.Public()), pubPEM(t, p256.Public()), certPEM(p.root), certPEM(q.root))}
	w.valid = []Signature{
		mustSign(t, ed, nil, hashA),
		mustSign(t, p256, nil, hashA),
		mustSign(t, p.leafKey, p.chain(), hashA),
		mustSign(t, q.leafKey, q.chain(), hashA),
	}
	for _, s := range w.valid {
		w.ids = append(w.ids, s.KeyID)
	}
	w.ids = append(w.ids, mustSign(t, stranger.leafKey, nil, hashA).KeyID)
	for _, x := range []*pki{p, q, stranger} {
		w.certs = append(w.certs, x.leaf.Raw, x.inter.Raw, x.root.Raw)
	}
	return w
}

// fuzzReader takes bytes off the fuzz input; past its end it gives zeros.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fuzzReader) bytes(n int) []byte {
	n = min(n, len(r.b))
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

// decode turns fuzz input into Verify's arguments. Layout: policy byte,
// hash byte, then signatures: algorithm, key id (index into w.ids or 32
// raw bytes), certificate count, certificates (index into w.certs, or
// length + raw bytes, optionally with one byte flipped), signature (index
// into w.valid's signatures, optionally with one byte flipped, or length +
// raw bytes).
func (w *fuzzWorld) decode(data []byte) ([]Signature, [32]byte, TimePolicy) {
	r := &fuzzReader{b: data}
	policies := []TimePolicy{
		atClock,
		{Now: boot1970, Created: date(2026, 6, 1)},
		{Now: boot1970},
		{Now: date(2045, 1, 1)},
	}
	policy := policies[int(r.byte())%len(policies)]
	hash := hashA
	if r.byte()&1 == 1 {
		hash = hashB
	}
	var sigs []Signature
	for len(r.b) > 0 && len(sigs) < 16 {
		var s Signature
		s.Algorithm = Algorithm(r.byte() % 4)
		if i := int(r.byte()); i < len(w.ids) {
			s.KeyID = w.ids[i]
		} else {
			copy(s.KeyID[:], r.bytes(32))
		}
		for n := int(r.byte() % 5); n > 0; n-- {
			sel := int(r.byte())
			var c []byte
			if sel < len(w.certs) {
				c = bytes.Clone(w.certs[sel])
			} else {
				c = bytes.Clone(r.bytes(int(r.byte())))
			}
			if flip := int(binary.LittleEndian.Uint16(append(r.bytes(2), 0, 0))); flip != 0 && len(c) > 0 {
				c[flip%len(c)] ^= r.byte() | 1
			}
			s.Certs = append(s.Certs, c)
		}
		if sel := int(r.byte()); sel < len(w.valid) {
			s.Sig = bytes.Clone(w.valid[sel].Sig)
			if flip := int(r.byte()); flip != 0 {
				s.Sig[flip%len(s.Sig)] ^= r.byte() | 1
			}
		} else {
			s.Sig = bytes.Clone(r.bytes(int(r.byte())))
		}
		sigs = append(sigs, s)
	}
	return sigs, hash, policy
}

// FuzzVerify feeds arbitrary Signature values to Verify: it must not panic,
// must return a one-line error of a known kind, and may succeed only when a
// signature is, byte for byte, one of the valid signatures of hashA.
func FuzzVerify(f *testing.F) {
	w := newFuzzWorld(f)
	f.Add([]byte{})
	f.Add([]byte{0, 0, 1, 0, 0, 0})                         // valid ed25519 raw
	f.Add([]byte{0, 0, 2, 1, 0, 1})                         // valid P-256 raw
	f.Add([]byte{2, 0, 1, 2, 2, 0, 0, 0, 1, 0, 0, 2})       // certificate chain p, no time
	f.Add([]byte{1, 0, 2, 3, 2, 3, 0, 0, 4, 0, 0, 3})       // certificate chain q at Created
	f.Add([]byte{0, 1, 1, 0, 0, 0})                         // another hash
	f.Add([]byte{0, 0, 1, 0, 0, 0, 5, 1})                   // flipped signature byte
	f.Add([]byte{0, 0, 1, 4, 1, 6, 0, 0, 255, 64, 1, 2, 3}) // stranger chain, raw signature bytes
	f.Fuzz(func(t *testing.T, data []byte) {
		sigs, hash, policy := w.decode(data)
		got, err := Verify(sigs, w.trust, hash, policy)
		if err != nil {
			if !errors.Is(err, ErrUnsigned) && !errors.Is(err, ErrUntrusted) && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrExpired) {
				t.Fatalf("error of unknown kind: %v", err)
			}
			if bytes.ContainsAny([]byte(err.Error()), "\n\r") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if hash != hashA {
			t.Fatalf("signature accepted for another hash: %+v", got)
		}
		for _, s := range sigs {
			for _, v := range w.valid {
				if s.KeyID == v.KeyID && bytes.Equal(s.Sig, v.Sig) && hex.EncodeToString(v.KeyID[:]) == got.KeyID {
					return
				}
			}
		}
		t.Fatalf("Verify accepted %+v without a valid signature: %+v", got, sigs)
	})
}

// TestFuzzWorld checks that the fuzz seeds reach the interesting paths.
func TestFuzzWorld(t *testing.T) {
	w := newFuzzWorld(t)
	for _, c := range []struct {
		data []byte
		ok   bool
	}{
		{[]byte{0, 0, 1, 0, 0, 0}, true},
		{[]byte{0, 0, 2, 1, 0, 1}, true},
		{[]byte{2, 0, 1, 2, 2, 0, 0, 0, 1, 0, 0, 2}, true},
		{[]byte{1, 0, 2, 3, 2, 3, 0, 0, 4, 0, 0, 3}, true},
		{[]byte{0, 1, 1, 0, 0, 0}, false},
		{[]byte{0, 0, 1, 0, 0, 0, 5, 1}, false},
	} {
		sigs, hash, policy := w.decode(c.data)
		if _, err := Verify(sigs, w.trust, hash, policy); (err == nil) != c.ok {
			t.Errorf("%v: %v", c.data, err)
		}
	}
}
