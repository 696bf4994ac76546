package bundle

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/tandem-ota/tandem/internal/signature"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// The vectors of this file pin the decisions of docs/bundle-format.md that
// a second implementation could otherwise make differently (issue 11,
// hardening 8 and 11): the canonical signature section, the error class of
// every limit, the X.509 path rules and the time rules, the zstd window
// limit, and empty target and argv[0].

// vectorClock is the device clock of the certificate vectors (set: after
// any build-time floor), so that their outcome does not depend on the day
// the tests run.
var vectorClock = time.Date(2030, time.June, 1, 0, 0, 0, 0, time.UTC)

// Deterministic keys of the certificate vectors.
var (
	rootKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x11}, 32))
	interKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x12}, 32))
	leafKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x13}, 32))
	otherKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x14}, 32))
)

// vcert is a certificate of the vectors.
type vcert struct {
	cn        string
	serial    int64
	key       crypto.Signer
	issuer    *x509.Certificate // nil: self-signed
	issuerKey crypto.Signer
	ca        bool
	from, to  time.Time
	ku        x509.KeyUsage
	eku       []x509.ExtKeyUsage
	extra     []pkix.Extension
}

func (c vcert) make(t *testing.T) *x509.Certificate {
	return testutil.MakeCert(t, testutil.Cert{CN: c.cn, Serial: c.serial, Key: c.key, Issuer: c.issuer, IssuerKey: c.issuerKey,
		CA: c.ca, NotBefore: c.from, NotAfter: c.to, KeyUsage: c.ku, ExtKey: c.eku, Extra: c.extra})
}

func year(y int) time.Time { return time.Date(y, time.January, 1, 0, 0, 0, 0, time.UTC) }

// vectorPKI is the test root (trusted by the vectors: test-root.crt) and an
// intermediate for code signing under it.
func vectorPKI(t *testing.T) (root, inter *x509.Certificate) {
	root = vcert{cn: "tandem test root", serial: 1, key: rootKey, ca: true, from: year(2025), to: year(2125), ku: x509.KeyUsageCertSign}.make(t)
	inter = vcert{cn: "tandem test intermediate", serial: 2, key: interKey, issuer: root, issuerKey: rootKey, ca: true,
		from: year(2025), to: year(2125), ku: x509.KeyUsageCertSign}.make(t)
	return root, inter
}

// leafOf is a code-signing leaf for leafKey under issuer, changed by opts.
func leafOf(t *testing.T, issuer *x509.Certificate, issuerKey crypto.Signer, opts ...func(*vcert)) *x509.Certificate {
	c := vcert{cn: "tandem test release signer", serial: 10, key: leafKey, issuer: issuer, issuerKey: issuerKey,
		from: year(2025), to: year(2125), ku: x509.KeyUsageDigitalSignature, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	for _, o := range opts {
		o(&c)
	}
	return c.make(t)
}

// certSig signs hash with leafKey and carries chain, as it is (Sign would
// refuse the chains of the vectors that break a rule).
func certSig(t *testing.T, hash Hash, chain ...*x509.Certificate) signature.Signature {
	t.Helper()
	s := rawSig(t, leafKey, hash)
	for _, c := range chain {
		s.Certs = append(s.Certs, c.Raw)
	}
	return s
}

// rawSig signs hash with key, without certificates.
func rawSig(t *testing.T, key crypto.Signer, hash Hash) signature.Signature {
	t.Helper()
	s, err := signature.Sign(key, nil, hash)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// encodeSection encodes a signature section as it is given, checking
// nothing (MarshalSignatures refuses what these vectors need).
func encodeSection(sigs []signature.Signature) []byte {
	e := &encoder{}
	e.b = append(e.b, SigMagic...)
	e.u32(0)
	e.u16(uint16(len(sigs)))
	e.u16(0)
	for _, s := range sigs {
		r := &encoder{}
		r.u8(uint8(s.Algorithm))
		r.b = append(r.b, 0, 0, 0)
		r.b = append(r.b, s.KeyID[:]...)
		r.u16(uint16(len(s.Certs)))
		for _, c := range s.Certs {
			r.u32(uint32(len(c)))
			r.b = append(r.b, c...)
		}
		r.u16(uint16(len(s.Sig)))
		r.b = append(r.b, s.Sig...)
		e.u32(uint32(len(r.b)))
		e.b = append(e.b, r.b...)
	}
	binary.LittleEndian.PutUint32(e.b[4:], uint32(len(e.b)-sigPrefixSize))
	return e.b
}

// splitBundle returns a bundle's header (parsed), its bytes and what follows
// the signature section.
func splitBundle(t *testing.T, b []byte) (*Header, []byte, []byte) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	h := *r.Header
	h.Payloads = slices.Clone(h.Payloads)
	return &h, r.HeaderBytes, b[len(r.HeaderBytes)+len(r.SigBytes):]
}

// withSection gives b another signature section, made by sigs from the
// bundle hash.
func withSection(t *testing.T, b []byte, sigs func(Hash) []signature.Signature) []byte {
	t.Helper()
	_, hb, rest := splitBundle(t, b)
	return slices.Concat(hb, encodeSection(sigs(Hash(sha256.Sum256(hb)))), rest)
}

// withHeader changes b's header by change (encoded without validation) and
// signs the new header with the test key.
func withHeader(t *testing.T, b []byte, change func(*Header)) []byte {
	t.Helper()
	h, _, rest := splitBundle(t, b)
	change(h)
	hb, err := encodeHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	hash := Hash(sha256.Sum256(hb))
	return slices.Concat(hb, encodeSection([]signature.Signature{rawSig(t, testKey, hash)}), rest)
}

// p256Key is a fixed ECDSA P-256 key the vectors' trust store does not hold.
func p256Key(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), bytes.Repeat([]byte{0x21}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ecdsaVector signs hash with k deterministically (the nonce is an HMAC of
// the key and the message, so the vector files are stable), in the low-s
// form or, when high, the equally valid high-s form.
func ecdsaVector(t *testing.T, k *ecdsa.PrivateKey, hash Hash, high bool) signature.Signature {
	t.Helper()
	msg := signature.Message(hash)
	e := sha256.Sum256(msg)
	priv, err := k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	n := elliptic.P256().Params().N
	mac := hmac.New(sha256.New, priv)
	mac.Write(e[:])
	kk := new(big.Int).Mod(new(big.Int).SetBytes(mac.Sum(nil)), new(big.Int).Sub(n, big.NewInt(1)))
	kk.Add(kk, big.NewInt(1))
	kG, err := ecdh.P256().NewPrivateKey(kk.FillBytes(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	// The public point of the scalar kk is k·G, uncompressed: 0x04 ‖ x ‖ y.
	r := new(big.Int).Mod(new(big.Int).SetBytes(kG.PublicKey().Bytes()[1:33]), n)
	d := new(big.Int).SetBytes(priv)
	s := new(big.Int).Mul(r, d)
	s.Add(s, new(big.Int).SetBytes(e[:]))
	s.Mul(s, new(big.Int).ModInverse(kk, n))
	s.Mod(s, n)
	if low := s.Cmp(new(big.Int).Rsh(n, 1)) <= 0; low == high {
		s.Sub(n, s)
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		t.Fatal(err)
	}
	id, err := signature.KeyIDOf(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(&k.PublicKey, e[:], der) {
		t.Fatal("the vector's ECDSA signature does not verify")
	}
	return signature.Signature{Algorithm: signature.ECDSAP256SHA256, KeyID: id, Sig: der}
}

// rleFrame is one zstd frame (RFC 8878) of a single RLE block that gives
// n copies of c, with the window descriptor byte wd, no content size and
// no checksum: the frame header then declares only a window size.
func rleFrame(wd byte, c byte, n int) []byte {
	bh := 1 | 1<<1 | n<<3 // last block, type RLE, size n
	return []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, wd, byte(bh), byte(bh >> 8), byte(bh >> 16), c}
}

// withChecksum sets the content checksum flag of a frame rleFrame made and
// appends the checksum of content (the low 32 bits of its XXH64, taken from
// a frame the encoder made of the same content).
func withChecksum(t *testing.T, frame, content []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	ref := enc.EncodeAll(content, nil)
	frame = bytes.Clone(frame)
	frame[4] |= 1 << 2
	return append(frame, ref[len(ref)-4:]...)
}

// ruleVectors adds the vectors of the decisions to files; signed is
// valid-signed.tandem, multi valid-multi.tandem.
func ruleVectors(t *testing.T, files map[string][]byte, signed, multi []byte) {
	root, inter := vectorPKI(t)
	files["test-root.crt"] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	leaf := leafOf(t, inter, interKey)
	sec := func(name string, sigs func(h Hash) []signature.Signature) { files[name] = withSection(t, signed, sigs) }
	valid := func(h Hash) signature.Signature { return rawSig(t, testKey, h) }

	// The signature section is canonical (hardening 8).
	sec("sig-unknown-algorithm.tandem", func(h Hash) []signature.Signature {
		odd := valid(h)
		odd.Algorithm = 3
		return []signature.Signature{valid(h), odd}
	})
	sec("sig-ecdsa-low-s.tandem", func(h Hash) []signature.Signature {
		return []signature.Signature{valid(h), ecdsaVector(t, p256Key(t), h, false)}
	})
	sec("sig-ecdsa-high-s.tandem", func(h Hash) []signature.Signature {
		return []signature.Signature{valid(h), ecdsaVector(t, p256Key(t), h, true)}
	})
	sec("sig-ed25519-s-not-canonical.tandem", func(h Hash) []signature.Signature {
		s := rawSig(t, otherKey, h)
		// S + L: the same signature with a non-canonical scalar.
		le := slices.Clone(s.Sig[32:])
		slices.Reverse(le)
		l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
		sl := new(big.Int).Add(new(big.Int).SetBytes(le), l).FillBytes(make([]byte, 32))
		slices.Reverse(sl)
		s.Sig = append(s.Sig[:32:32], sl...)
		return []signature.Signature{valid(h), s}
	})
	sec("sig-unknown-key.tandem", func(h Hash) []signature.Signature {
		return []signature.Signature{rawSig(t, otherKey, h), valid(h)}
	})
	sec("sig-raw-key-garbage-cert.tandem", func(h Hash) []signature.Signature {
		s := valid(h)
		s.Certs = [][]byte{[]byte("not a certificate")}
		return []signature.Signature{s}
	})
	sec("sig-broken-beside-valid.tandem", func(h Hash) []signature.Signature {
		broken := valid(h)
		broken.Sig = slices.Clone(broken.Sig)
		broken.Sig[5] ^= 1
		return []signature.Signature{valid(h), broken}
	})
	sec("sig-cert-broken-beside-valid.tandem", func(h Hash) []signature.Signature {
		// A certificate signature by a chain the device does not trust, whose
		// signature does not verify under its own leaf.
		s := certSig(t, h, leafOf(t, nil, leafKey))
		s.Sig = slices.Clone(s.Sig)
		s.Sig[5] ^= 1
		return []signature.Signature{valid(h), s}
	})
	sec("sig-cert-key-id.tandem", func(h Hash) []signature.Signature {
		s := certSig(t, h, leaf, inter)
		s.KeyID = valid(h).KeyID
		s.Sig = valid(h).Sig
		return []signature.Signature{s}
	})
	sec("sig-cert-chain-order.tandem", func(h Hash) []signature.Signature {
		s := certSig(t, h, leaf, inter)
		s.Certs = [][]byte{leaf.Raw, root.Raw, inter.Raw}
		return []signature.Signature{valid(h), s}
	})
	sec("sig-count-65.tandem", func(h Hash) []signature.Signature {
		return slices.Repeat([]signature.Signature{valid(h)}, signature.MaxSignatures+1)
	})
	sec("sig-certs-9.tandem", func(h Hash) []signature.Signature {
		s := certSig(t, h, leaf, inter)
		s.Certs = append([][]byte{leaf.Raw}, slices.Repeat([][]byte{inter.Raw}, signature.MaxCerts)...)
		return []signature.Signature{s}
	})

	// X.509 path and time rules (hardening 11). The vectors' clock is
	// vectorClock unless the vector says 0 (no trustworthy clock).
	sec("cert-valid.tandem", func(h Hash) []signature.Signature { return []signature.Signature{certSig(t, h, leaf, inter)} })
	sec("cert-issuer-not-ca.tandem", func(h Hash) []signature.Signature {
		notCA := vcert{cn: "tandem test intermediate", serial: 3, key: interKey, issuer: root, issuerKey: rootKey,
			from: year(2025), to: year(2125), ku: x509.KeyUsageCertSign}.make(t)
		return []signature.Signature{certSig(t, h, leafOf(t, notCA, interKey), notCA)}
	})
	sec("cert-issuer-no-keycertsign.tandem", func(h Hash) []signature.Signature {
		noSign := vcert{cn: "tandem test intermediate", serial: 4, key: interKey, issuer: root, issuerKey: rootKey, ca: true,
			from: year(2025), to: year(2125), ku: x509.KeyUsageDigitalSignature}.make(t)
		return []signature.Signature{certSig(t, h, leafOf(t, noSign, interKey), noSign)}
	})
	sec("cert-intermediate-eku.tandem", func(h Hash) []signature.Signature {
		tls := vcert{cn: "tandem test intermediate", serial: 5, key: interKey, issuer: root, issuerKey: rootKey, ca: true,
			from: year(2025), to: year(2125), ku: x509.KeyUsageCertSign, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}.make(t)
		return []signature.Signature{certSig(t, h, leafOf(t, tls, interKey, func(c *vcert) { c.eku = nil }), tls)}
	})
	sec("cert-leaf-no-eku.tandem", func(h Hash) []signature.Signature {
		return []signature.Signature{certSig(t, h, leafOf(t, inter, interKey, func(c *vcert) { c.ku, c.eku = 0, nil }), inter)}
	})
	sec("cert-critical-extension.tandem", func(h Hash) []signature.Signature {
		policies, _ := asn1.Marshal([]struct{ ID asn1.ObjectIdentifier }{{asn1.ObjectIdentifier{2, 5, 29, 32, 0}}})
		crit := leafOf(t, inter, interKey, func(c *vcert) {
			c.extra = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 32}, Critical: true, Value: policies}}
		})
		return []signature.Signature{certSig(t, h, crit, inter)}
	})
	expired := leafOf(t, inter, interKey, func(c *vcert) { c.from, c.to = year(2025), year(2026) })
	sec("cert-expired.tandem", func(h Hash) []signature.Signature { return []signature.Signature{certSig(t, h, expired, inter)} })
	// No trustworthy clock: the bundle's created (2023, before the leaf
	// was valid) is the checking time.
	sec("cert-no-clock-created.tandem", func(h Hash) []signature.Signature { return []signature.Signature{certSig(t, h, expired, inter)} })
	// No trustworthy clock and created = 0: validity is not checked.
	files["cert-no-clock-created-zero.tandem"] = withSection(t, withHeader(t, signed, func(h *Header) { h.Created = 0 }),
		func(h Hash) []signature.Signature { return []signature.Signature{certSig(t, h, expired, inter)} })

	// Limits are too-large, whatever the field (hardening 11).
	files["header-payloads-65.tandem"] = bytes.Clone(signed)
	binary.LittleEndian.PutUint16(files["header-payloads-65.tandem"][28:], MaxPayloads+1)
	files["header-string-4097.tandem"] = bytes.Clone(signed)
	binary.LittleEndian.PutUint16(files["header-string-4097.tandem"][32:], MaxString+1)
	files["header-argc-65.tandem"] = withHeader(t, multi, func(h *Header) {
		h.Payloads[2].Handler = slices.Repeat([]string{"x"}, MaxArgs+1)
	})
	files["header-chunk-max.tandem"] = withHeader(t, signed, func(h *Header) { h.Payloads[0].ChunkMax = MaxChunk + 1 })

	// Empty target and argv[0] (hardening 11).
	files["empty-target.tandem"] = withHeader(t, signed, func(h *Header) { h.Payloads[0].Target = "" })
	files["empty-argv0.tandem"] = withHeader(t, multi, func(h *Header) { h.Payloads[2].Handler = []string{"", "-c", "cat"} })
	files["empty-argv1.tandem"] = withHeader(t, multi, func(h *Header) { h.Payloads[2].Handler = []string{"/bin/sh", "", "cat"} })

	// The zstd window limit (hardening 11): 1000 zero bytes as one RLE
	// block, in a frame that declares a window of 16 MiB (allowed) or
	// 32 MiB (refused).
	zeros, _ := makeBundle(t, LevelDefault, true, testPayload{"system", KindSlot, make([]byte, 1000)})
	rle := func(wd byte) []byte { return withChecksum(t, rleFrame(wd, 0, 1000), make([]byte, 1000)) }
	files["chunk-window-16m.tandem"] = rebuild(t, zeros, false, func(c []chunkData) { c[0].stored = rle(14 << 3) })
	files["chunk-window-32m.tandem"] = rebuild(t, zeros, false, func(c []chunkData) { c[0].stored = rle(15 << 3) })
}

// ruleExpect labels the vectors of ruleVectors; clock is the device clock
// (nil: vectorClock... see vectorTime).
var ruleExpect = map[string]struct {
	expect, note string
	noClock      bool
}{
	"sig-unknown-algorithm.tandem":        {"format", "a second signature with algorithm 3 beside a valid one", false},
	"sig-ecdsa-low-s.tandem":              {"success", "a valid signature and a low-s ECDSA P-256 signature by a key the device does not trust", false},
	"sig-ecdsa-high-s.tandem":             {"format", "the same with the high-s form of the ECDSA signature (valid mathematically, not canonical)", false},
	"sig-ed25519-s-not-canonical.tandem":  {"format", "beside a valid signature, an ed25519 signature by an untrusted key with S + L for S", false},
	"sig-unknown-key.tandem":              {"success", "an ed25519 signature by a key the device does not trust, then a valid one", false},
	"sig-raw-key-garbage-cert.tandem":     {"format", "the valid raw-key signature carries a certificate that does not parse", false},
	"sig-broken-beside-valid.tandem":      {"bad-signature", "a valid signature and a second one by the same trusted key with a changed byte", false},
	"sig-cert-broken-beside-valid.tandem": {"bad-signature", "a valid signature and a certificate signature (untrusted self-signed leaf) that does not verify under its own leaf", false},
	"sig-cert-key-id.tandem":              {"format", "a certificate signature whose key_id is not its leaf's key", false},
	"sig-cert-chain-order.tandem":         {"format", "beside a valid signature, a chain carried as leaf, root, intermediate (each certificate must issue the one before)", false},
	"sig-count-65.tandem":                 {"too-large", "65 signatures (limit 64)", false},
	"sig-certs-9.tandem":                  {"too-large", "a signature with 9 certificates (limit 8)", false},
	"cert-valid.tandem":                   {"success", "leaf (codeSigning) and intermediate under test-root.crt", false},
	"cert-issuer-not-ca.tandem":           {"format", "the carried intermediate has basicConstraints cA false", false},
	"cert-issuer-no-keycertsign.tandem":   {"format", "the carried intermediate is a CA whose keyUsage lacks keyCertSign", false},
	"cert-intermediate-eku.tandem":        {"untrusted", "the intermediate's extKeyUsage is serverAuth only; the leaf has no extKeyUsage", false},
	"cert-leaf-no-eku.tandem":             {"success", "a leaf without keyUsage and extKeyUsage extensions", false},
	"cert-critical-extension.tandem":      {"untrusted", "the leaf marks certificatePolicies critical, an extension tandem does not handle", false},
	"cert-expired.tandem":                 {"expired", "the leaf expired in 2026, the device clock says 2030", false},
	"cert-no-clock-created.tandem":        {"expired", "the same leaf, a device without a trustworthy clock: checked at created (2023), before the leaf was valid", true},
	"cert-no-clock-created-zero.tandem":   {"success", "the same leaf, no trustworthy clock and created = 0: validity periods are not checked", true},
	"header-payloads-65.tandem":           {"too-large", "n_payloads = 65 (limit 64)", false},
	"header-string-4097.tandem":           {"too-large", "the length of compatible is 4097 (limit 4096)", false},
	"header-argc-65.tandem":               {"too-large", "re-signed: an execute payload with 65 argv entries (limit 64)", false},
	"header-chunk-max.tandem":             {"too-large", "re-signed: chunk_max = 16 MiB + 1", false},
	"empty-target.tandem":                 {"format", "re-signed: a slot payload with an empty target", false},
	"empty-argv0.tandem":                  {"format", "re-signed: an execute payload whose argv[0] is empty", false},
	"empty-argv1.tandem":                  {"success", "re-signed: an execute payload with an empty argv[1] (allowed)", false},
	"chunk-window-16m.tandem":             {"success", "re-signed: a chunk stored as a zstd frame that declares a 16 MiB window (the limit)", false},
	"chunk-window-32m.tandem":             {"chunk", "re-signed: the same chunk in a frame that declares a 32 MiB window", false},
}
