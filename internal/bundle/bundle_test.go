package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/tandem-ota/tandem/internal/signature"
)

// testData is compressible, non-trivial content of n bytes.
func testData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	words := []string{"tandem ", "update ", "slot ", "boot ", "group ", "chunk ", "verify ", "\n"}
	var b bytes.Buffer
	for b.Len() < n {
		if r.IntN(10) == 0 {
			var x [16]byte
			for i := range x {
				x[i] = byte(r.Uint32())
			}
			b.Write(x[:])
		} else {
			b.WriteString(words[r.IntN(len(words))])
		}
	}
	return b.Bytes()[:n]
}

var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))

func sign(h Hash) ([]signature.Signature, error) {
	s, err := signature.Sign(testKey, nil, h)
	return []signature.Signature{s}, err
}

type testPayload struct {
	name string
	kind Kind
	data []byte
}

func makeBundle(t testing.TB, level Level, signed bool, payloads ...testPayload) ([]byte, Hash) {
	t.Helper()
	return makeBundleFormat(t, FormatVersion, level, signed, payloads...)
}

// makeBundleFormat is makeBundle in another format version.
func makeBundleFormat(t testing.TB, format uint16, level Level, signed bool, payloads ...testPayload) ([]byte, Hash) {
	t.Helper()
	var specs []PayloadSpec
	for _, p := range payloads {
		ps := PayloadSpec{Name: p.name, Kind: p.kind, Target: p.name, Chunker: ChunkerBuzhash, ChunkSize: 4096, Source: bytes.NewReader(p.data)}
		if p.kind == KindExecute {
			ps.Target, ps.Handler = "", []string{"/bin/sh", "-c", "cat"}
		}
		specs = append(specs, ps)
	}
	opts := Options{Level: level, Workers: 3, TempDir: t.TempDir()}
	if signed {
		opts.Sign = sign
	}
	var buf bytes.Buffer
	h, err := Write(&buf, Header{Format: format, Compatible: "test-device", Version: "2.0.0", Name: "test", Created: 1700000000}, specs, opts)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	return buf.Bytes(), h
}

func acceptAll(*Header, Hash, []signature.Signature) error { return nil }

// readAll reads a bundle completely, returning each payload's content.
func readAll(b []byte) (map[string][]byte, *Reader, error) { return readAllWith(b, acceptAll) }

func readAllWith(b []byte, v Verifier) (map[string][]byte, *Reader, error) {
	return readAllAs(b, v, true)
}

// readAllAs reads b as readAllWith does, checking the payloads' own digests
// (Reader.CheckPayloadDigests: a check of the whole file) or, without
// check, as an install reads it.
func readAllAs(b []byte, v Verifier, check bool) (map[string][]byte, *Reader, error) {
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	r.CheckPayloadDigests = check
	defer r.Close()
	if err := r.Verify(v); err != nil {
		return nil, r, err
	}
	out := map[string][]byte{}
	for {
		pr, err := r.NextPayload()
		if errors.Is(err, io.EOF) {
			return out, r, nil
		}
		if err != nil {
			return nil, r, err
		}
		data, err := io.ReadAll(pr)
		if err != nil {
			return nil, r, err
		}
		out[pr.Payload.Name] = data
	}
}

func TestRoundTrip(t *testing.T) {
	sys, app := testData(300_000, 1), testData(5_000, 2)
	for _, level := range []Level{LevelStored, LevelFastest, LevelDefault, LevelBest} {
		b, h := makeBundle(t, level, true,
			testPayload{"system", KindSlot, sys}, testPayload{"empty", KindSlot, nil}, testPayload{"script", KindExecute, app})
		got, r, err := readAll(b)
		if err != nil {
			t.Fatalf("%s: read: %v", level, err)
		}
		if r.Hash != h || r.Hash != Hash(sha256.Sum256(b[:len(r.HeaderBytes)])) {
			t.Fatalf("%s: hash %s, writer said %s", level, r.Hash, h)
		}
		if !bytes.Equal(got["system"], sys) || !bytes.Equal(got["script"], app) || len(got["empty"]) != 0 {
			t.Fatalf("%s: payloads differ", level)
		}
		if len(r.Signatures) != 1 {
			t.Fatalf("%s: %d signatures", level, len(r.Signatures))
		}
		if level == LevelDefault && len(b) > len(sys)/2 {
			t.Errorf("default compression: %d bytes for %d", len(b), len(sys))
		}
	}
}

func TestReproducible(t *testing.T) {
	data := testData(200_000, 3)
	a, ha := makeBundle(t, LevelDefault, false, testPayload{"system", KindSlot, data})
	b, hb := makeBundle(t, LevelDefault, false, testPayload{"system", KindSlot, data})
	if ha != hb || !bytes.Equal(a, b) {
		t.Fatal("the same inputs gave different bundles")
	}
}

// Changing any single byte of a signed bundle makes a check of the whole
// file fail, and an install either fail or read exactly the signed content
// (a stored byte of a zstd frame that changes nothing it decompresses to).
func TestEveryByteIsAuthenticated(t *testing.T) {
	for _, tc := range []struct {
		format uint16
		level  Level
	}{{3, LevelDefault}, {3, LevelStored}, {2, LevelDefault}} {
		t.Run(fmt.Sprintf("format %d %s", tc.format, tc.level), func(t *testing.T) { everyByteIsAuthenticated(t, tc.format, tc.level) })
	}
}

// everyByteIsAuthenticated changes every byte of a bundle in turn: a check
// of the file refuses each change, and so does an install of a format 3
// bundle; an install of a format 2 bundle either refuses it or reads the
// signed content.
func everyByteIsAuthenticated(t *testing.T, format uint16, level Level) {
	size := 40_000
	if level == LevelStored {
		size = 12_000 // raw chunks: every changed byte costs a full read
	}
	b, _ := makeBundleFormat(t, format, level, true, testPayload{"system", KindSlot, testData(size, 4)}, testPayload{"x", KindExecute, testData(3000, 5)})
	trust := trustTestKey(t)
	verify := func(h *Header, hash Hash, sigs []signature.Signature) error {
		_, err := signature.Verify(sigs, trust, hash, signature.TimePolicy{})
		return err
	}
	if _, _, err := readAllWith(b, verify); err != nil {
		t.Fatalf("unmodified bundle: %v", err)
	}
	want, _, err := readAllAs(b, verify, false)
	if err != nil {
		t.Fatalf("unmodified bundle, as an install reads it: %v", err)
	}
	same := 0
	for i := range b {
		mod := bytes.Clone(b)
		mod[i] ^= 0x01
		if _, _, err := readAllWith(mod, verify); err == nil {
			t.Fatalf("changing byte %d of %d went unnoticed", i, len(b))
		}
		got, _, err := readAllAs(mod, verify, false)
		if err != nil {
			continue
		}
		if format >= 3 {
			t.Fatalf("changing byte %d of %d: an install of format %d accepted it", i, len(b), format)
		}
		same++
		for name, d := range want {
			if !bytes.Equal(got[name], d) {
				t.Fatalf("changing byte %d of %d: an install read other content for payload %s", i, len(b), name)
			}
		}
	}
	t.Logf("%d of %d single-byte changes left the content as signed (an install accepts them)", same, len(b))
}

func trustTestKey(t *testing.T) *signature.TrustStore {
	t.Helper()
	pemPub := pemPublic(t, testKey.Public())
	ts, err := signature.ParseTrust(pemPub)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// Truncation anywhere is an error, never a success.
func TestTruncation(t *testing.T) {
	b, _ := makeBundle(t, LevelDefault, true, testPayload{"system", KindSlot, testData(20_000, 6)})
	for n := 0; n < len(b); n++ {
		if _, _, err := readAll(b[:n]); err == nil {
			t.Fatalf("a bundle cut at %d of %d bytes was read", n, len(b))
		} else if n > 16 && !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v, want ErrTruncated", n, err)
		}
	}
	if _, _, err := readAll(append(bytes.Clone(b), 0)); !errors.Is(err, ErrTrailing) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestVerifyBeforePayload(t *testing.T) {
	b, _ := makeBundle(t, LevelDefault, false, testPayload{"system", KindSlot, testData(1000, 7)})
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.NextPayload(); !errors.Is(err, ErrVerify) {
		t.Fatalf("payload before verification: %v", err)
	}
	refuse := errors.New("no")
	if err := r.Verify(func(*Header, Hash, []signature.Signature) error { return refuse }); err != refuse {
		t.Fatal(err)
	}
	if _, err := r.NextPayload(); !errors.Is(err, ErrVerify) {
		t.Fatalf("payload after a refused verification: %v", err)
	}
}

// noSizeFrame is a zstd frame of data whose header does not declare the
// content size (as a streaming encoder may make it), so only decoding tells
// its size: EncodeAll's frame with the header rewritten to carry a 1 MiB
// window descriptor instead of the content size.
func noSizeFrame(t *testing.T, data []byte) []byte {
	t.Helper()
	if len(data) > 1<<20 {
		t.Fatal("noSizeFrame: more than the 1 MiB window")
	}
	frame := zstdFrame(t, data)
	var h zstd.Header
	if err := h.Decode(frame); err != nil || !h.HasFCS || h.DictionaryID != 0 {
		t.Fatalf("noSizeFrame: unexpected header %+v: %v", h, err)
	}
	// Frame_Header_Descriptor: keep the checksum flag; no content size, no
	// single segment, no dictionary. Window_Descriptor 0x50: 2^20 bytes.
	out := append(bytes.Clone(frame[:4]), frame[4]&0x04, 0x50)
	out = append(out, frame[h.HeaderSize:]...)
	if err := h.Decode(out); err != nil || h.HasFCS {
		t.Fatalf("noSizeFrame: %+v: %v", h, err)
	}
	return out
}

// A chunk whose zstd frame inflates past its declared size is refused
// without decompressing it all, whether or not its frame header says so.
func TestDecompressionBomb(t *testing.T) {
	zeros := make([]byte, 1<<20)
	const size = 8192
	e := Entry{Digest: sha256.Sum256(zeros[:size]), Size: size}
	for name, frame := range map[string][]byte{"no-size": noSizeFrame(t, zeros), "content-size": zstdFrame(t, zeros)} {
		e.StoredSize = uint32(len(frame))
		if _, err := checkChunk(&e, frame, nil); !errors.Is(err, ErrChunk) {
			t.Fatalf("%s bomb: %v, want ErrChunk", name, err)
		}
	}
}

func zstdFrame(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

// A compressed chunk is exactly one zstd frame: two frames, a skippable
// frame, a byte after the frame or a cut frame are bad chunks even when the
// content they give would be right.
func TestChunkIsOneFrame(t *testing.T) {
	data := testData(6000, 21)
	half := len(data) / 2
	e := Entry{Digest: sha256.Sum256(data), Size: uint32(len(data))}
	one := zstdFrame(t, data)
	skippable := []byte{0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 'h', 'i'}
	for name, c := range map[string]struct {
		stored []byte
		ok     bool
	}{
		"one frame":          {one, true},
		"one frame, no size": {noSizeFrame(t, data), true},
		"two frames":         {append(noSizeFrame(t, data[:half]), noSizeFrame(t, data[half:])...), false},
		"two sized frames":   {append(zstdFrame(t, data[:half]), zstdFrame(t, data[half:])...), false},
		"skippable first":    {append(bytes.Clone(skippable), one...), false},
		"skippable after":    {append(bytes.Clone(one), skippable...), false},
		"byte after":         {append(bytes.Clone(one), 0), false},
		"cut":                {one[:len(one)-1], false},
		"empty":              {[]byte{}, false},
	} {
		e := e
		e.StoredSize = uint32(len(c.stored))
		got, err := checkChunk(&e, c.stored, nil)
		if c.ok {
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s: %v", name, err)
			}
		} else if !errors.Is(err, ErrChunk) {
			t.Errorf("%s: %v, want ErrChunk", name, err)
		}
	}
}

// A raw chunk (stored size = size) whose bytes changed fails its content
// digest; verifyChunk never returns unverified bytes.
func TestRawChunkChanged(t *testing.T) {
	data := testData(3000, 22)
	e := Entry{Digest: sha256.Sum256(data), Size: uint32(len(data)), StoredSize: uint32(len(data))}
	if got, err := checkChunk(&e, bytes.Clone(data), nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("raw chunk: %v", err)
	}
	bad := bytes.Clone(data)
	bad[100] ^= 1
	if got, err := checkChunk(&e, bad, nil); !errors.Is(err, ErrDigest) || got != nil {
		t.Fatalf("changed raw chunk: %v", err)
	}
}

// Table entries with a stored size above the size are malformed.
func TestStoredLargerThanSize(t *testing.T) {
	p := Payload{Kind: KindSlot, Chunker: ChunkerFixed, ChunkMin: 4096, ChunkAvg: 4096, ChunkMax: 4096, Size: 100, StoredSize: 101, Chunks: 1, Name: "s", Target: "s"}
	table := MarshalEntry(nil, &Entry{Size: 100, StoredSize: 101})
	if _, err := ParseTable(table, &p); !errors.Is(err, ErrFormat) {
		t.Fatalf("entry: %v, want ErrFormat", err)
	}
	if err := p.validate(); !errors.Is(err, ErrFormat) {
		t.Fatalf("payload: %v, want ErrFormat", err)
	}
}

// Format version 1 is refused as a version error with a hint to re-create
// the bundle; a newer version (4) with a hint to update tandem.
func TestOtherFormatVersion(t *testing.T) {
	b, _ := makeBundle(t, LevelDefault, false, testPayload{"system", KindSlot, testData(1000, 23)})
	for v, want := range map[uint16]string{1: "re-create it", 4: "update tandem"} {
		mod := bytes.Clone(b)
		binary.LittleEndian.PutUint16(mod[8:], v)
		_, err := NewReader(bytes.NewReader(mod))
		var ve *VersionError
		if !errors.Is(err, ErrVersion) || !errors.As(err, &ve) || ve.Version != v || !strings.Contains(ve.Hint(), want) {
			t.Fatalf("version %d: %v", v, err)
		}
		if got := err.Error(); !strings.Contains(got, fmt.Sprintf("format version %d (this tandem reads 2 and 3)", v)) {
			t.Fatalf("version %d: message %q", v, got)
		}
	}
}

func TestVersions(t *testing.T) {
	order := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0"}
	for i := range order {
		for j := range order {
			a, err := ParseVersion(order[i])
			if err != nil {
				t.Fatal(err)
			}
			b, _ := ParseVersion(order[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%s vs %s: %d, want %d", order[i], order[j], got, want)
			}
		}
	}
	for _, bad := range []string{"", "1", "1.0", "01.0.0", "1.0.0-", "1.0.0+", "1.0.0-01", "v1.0.0", "1.0.0 "} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseHash(t *testing.T) {
	want := Hash(sha256.Sum256([]byte("x")))
	if got, err := ParseHash(want.String()); err != nil || got != want {
		t.Fatalf("ParseHash(%s) = %s, %v", want, got, err)
	}
	for _, bad := range []string{"", "abc", want.String()[:63] + "g", strings.ToUpper(want.String())} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) succeeded", bad)
		}
	}
}

// A decompression buffer has DecodeSlack bytes past the chunk's size (the
// decoder's fast path), yet a frame that decodes to even one byte more than
// the table says is refused, with a frame content size or without one.
func TestDecodeSlackStillBounds(t *testing.T) {
	content := testData(20_000, 10)
	e := &Entry{Digest: sha256.Sum256(content[:19_999]), Size: 19_999}
	for name, frame := range map[string][]byte{"with size": zstdFrame(t, content), "without size": noSizeFrame(t, content)} {
		if len(frame) >= int(e.Size) {
			t.Fatalf("%s: the frame (%d bytes) is not smaller than the chunk", name, len(frame))
		}
		e.StoredSize = uint32(len(frame))
		buf := make([]byte, 0, int(e.Size)+DecodeSlack)
		if _, err := verifyChunk(mustDecoder(t), e, nil, false, frame, buf); !errors.Is(err, ErrChunk) {
			t.Errorf("%s: a frame one byte longer than the chunk: %v, want ErrChunk", name, err)
		}
	}
}

func mustDecoder(t *testing.T) *zstd.Decoder {
	t.Helper()
	d, err := zstdDecoder()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
