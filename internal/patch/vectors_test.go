package patch

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/signature"
)

var updateVectors = flag.Bool("update-vectors", false, "rewrite testdata/vectors")

const vectorDir = "testdata/vectors"

// vectorClock is the device time signatures are checked at (2030-06-01).
const vectorClock = 1906502400

// patchVector is one entry of testdata/vectors/vectors.json
// (docs/patch-format.md, "Test vectors").
type patchVector struct {
	File   string `json:"file"`
	Expect string `json:"expect"` // "success" or an error class
	// For "success": the patch's header hash and, by payload name, the
	// SHA-256 of the output (the bundle's payload content).
	PatchHash string            `json:"patchHash,omitempty"`
	Output    map[string]string `json:"output,omitempty"`
	Note      string            `json:"note"`
}

// vectorSet is vectors.json: the inputs' hashes and the vectors.
type vectorSet struct {
	Source       string        `json:"source"`       // file name of the source image
	SourceSHA256 string        `json:"sourceSha256"` //
	Target       string        `json:"target"`       // the new image (the bundle's payload "system")
	TargetSHA256 string        `json:"targetSha256"`
	Bundle       string        `json:"bundle"`
	BundleHash   string        `json:"bundleHash"`
	Key          string        `json:"key"` // the trusted public key
	Clock        int64         `json:"clock"`
	Vectors      []patchVector `json:"vectors"`
}

// vectorClasses maps the classes of docs/patch-format.md to errors.
var vectorClasses = map[string]error{
	"format": ErrFormat, "version": ErrVersion, "unsigned": signature.ErrUnsigned, "untrusted": signature.ErrUntrusted,
	"bad-signature": signature.ErrBadSignature, "mismatch": ErrMismatch, "source": ErrSource,
	"digest": ErrDigest, "corrupt": ErrCorrupt, "chunk": errChunk,
}

// errChunk: an output chunk does not match the bundle's signed chunk table.
var errChunk = errors.New("patch: output chunk does not match the bundle's chunk table")

// vectorKey is the test key: ed25519 from a fixed seed (its signatures are
// deterministic); the other key signs the untrusted vector.
func vectorKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32))
}

// vectorImages returns the source and target images: text-like bytes; the
// target has a block moved, a block inserted and a byte changed every 700.
func vectorImages() (src, dst []byte) {
	r := rand.New(rand.NewPCG(42, 7))
	src = make([]byte, 48<<10)
	for i := range src {
		src[i] = "etaoin shrdlu\n"[r.IntN(14)]
	}
	dst = slices.Concat(src[:16<<10], []byte("a block the target inserts, not in the source\n"), src[24<<10:], src[16<<10:24<<10])
	for i := 300; i < len(dst); i += 700 {
		dst[i] ^= 0x20
	}
	return src, dst
}

// makePatchVectors builds every file of the vector set.
func makePatchVectors(t *testing.T) (map[string][]byte, *vectorSet) {
	t.Helper()
	src, dst := vectorImages()
	key, other := vectorKey(1), vectorKey(2)
	signWith := func(k ed25519.PrivateKey) func(bundle.Hash) ([]signature.Signature, error) {
		return func(h bundle.Hash) ([]signature.Signature, error) {
			s, err := signature.Sign(k, nil, h)
			return []signature.Signature{s}, err
		}
	}
	var bb bytes.Buffer
	bh, err := bundle.Write(&bb, bundle.Header{Name: "patch vectors", Version: "2.0.0", Compatible: "tandem-vectors", Created: 1893456000},
		[]bundle.PayloadSpec{{Name: "system", Kind: bundle.KindSlot, Target: "system", Chunker: bundle.ChunkerBuzhash, ChunkSize: 4 << 10,
			Source: bytes.NewReader(dst)}},
		bundle.Options{Level: bundle.LevelDefault, Workers: 1, TempDir: t.TempDir(), Sign: signWith(key)})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := signature.PublicKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	create := func(source []byte, version string, k ed25519.PrivateKey) []byte {
		t.Helper()
		bf, sf := filepath.Join(dir, "v2.tandem"), filepath.Join(dir, "source.img")
		if err := os.WriteFile(bf, bb.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sf, source, 0o644); err != nil {
			t.Fatal(err)
		}
		trust := &signature.TrustStore{}
		if err := trust.Add(pub); err != nil {
			t.Fatal(err)
		}
		res, err := Create(Options{Bundle: bf, From: From{Images: map[string]string{"system": sf}, Version: version},
			Keys: []signature.SigningKey{{Key: k}}, Trust: trust, OutDir: filepath.Join(dir, "out"), SegmentSize: 8 << 10,
			Now: time.Unix(vectorClock, 0)})
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(res.Paths[0])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// resign rewrites p with its header edited, signed by k (nil: unsigned).
	resign := func(p []byte, k ed25519.PrivateKey, edit func(*Header)) []byte {
		t.Helper()
		head, err := ReadHead(bytes.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(head.Header)
		}
		var sign func(Hash) ([]signature.Signature, error)
		if k != nil {
			sign = func(h Hash) ([]signature.Signature, error) { return Sign([]signature.SigningKey{{Key: k}}, h) }
		}
		var out bytes.Buffer
		if _, err := Write(&out, head.Header, [][]byte{p[head.DataOffset:]}, sign); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	ok := create(src, "1.0.0", key)
	head, err := ReadHead(bytes.NewReader(ok))
	if err != nil {
		t.Fatal(err)
	}
	seg := head.DataOffset + int64(head.Header.Sections[0].Segments[1].Offset) + 5
	flip := func(b []byte, at int64) []byte { b = bytes.Clone(b); b[at] ^= 1; return b }
	// A patch made from another source (one byte differs in the second
	// half), labelled as made from src: it decodes, to wrong chunks.
	otherSrc := bytes.Clone(src)
	otherSrc[len(src)*3/4] ^= 0x55
	wrong := resign(create(otherSrc, "1.0.0", key), key, func(h *Header) {
		h.Sections[0].SourceDigest = head.Header.Sections[0].SourceDigest
	})
	files := map[string][]byte{
		"source.img": src, "target.img": dst, "v2.tandem": bb.Bytes(), "test-key.pub": pub,
		"ok.tpatch":               ok,
		"bad-magic.tpatch":        flip(ok, 0),
		"truncated.tpatch":        ok[:len(ok)-1],
		"trailing.tpatch":         append(bytes.Clone(ok), 0),
		"tampered-header.tpatch":  flip(ok, 24),
		"unsigned.tpatch":         resign(ok, nil, nil),
		"untrusted.tpatch":        resign(ok, other, nil),
		"tampered-segment.tpatch": flip(ok, seg),
		"other-bundle.tpatch":     resign(ok, key, func(h *Header) { h.BundleHash[0] ^= 1 }),
		"other-source.tpatch":     resign(ok, key, func(h *Header) { h.Sections[0].SourceDigest[0] ^= 1 }),
		"wrong-chunk.tpatch":      wrong,
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	set := &vectorSet{Source: "source.img", SourceSHA256: sum(src), Target: "target.img", TargetSHA256: sum(dst),
		Bundle: "v2.tandem", BundleHash: bh.String(), Key: "test-key.pub", Clock: vectorClock, Vectors: []patchVector{
			{File: "ok.tpatch", Expect: "success", PatchHash: head.Hash.String(), Output: map[string]string{"system": sum(dst)},
				Note: "source.img to the payload system of v2.tandem, in 8 KiB segments, with the compact chunk table"},
			{File: "bad-magic.tpatch", Expect: "version", Note: "first byte of the magic changed"},
			{File: "truncated.tpatch", Expect: "format", Note: "the last byte of the last segment is missing"},
			{File: "trailing.tpatch", Expect: "format", Note: "a byte after the last segment"},
			{File: "tampered-header.tpatch", Expect: "bad-signature", Note: "a byte of the header (the first of bundle_hash) changed: the signature does not verify"},
			{File: "unsigned.tpatch", Expect: "unsigned", Note: "no signature"},
			{File: "untrusted.tpatch", Expect: "untrusted", Note: "signed by a key the reader does not trust"},
			{File: "tampered-segment.tpatch", Expect: "digest", Note: "a byte of the second segment changed: its digest does not match"},
			{File: "other-bundle.tpatch", Expect: "mismatch", Note: "validly signed, but makes another bundle"},
			{File: "other-source.tpatch", Expect: "source", Note: "validly signed, but claims another source than source.img"},
			{File: "wrong-chunk.tpatch", Expect: "chunk", Note: "validly signed and claiming source.img, but made from a source one byte apart: it decodes to a chunk the bundle's table refuses"},
		}}
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	files["vectors.json"] = append(b, '\n')
	return files, set
}

// applyVector reads patch p as a device does (docs/patch-format.md,
// "Reading a patch"): header, signatures under trust at the vector clock,
// size, the bundle it makes, the source, then each segment (its digest,
// decoded, applied) and each output chunk against the bundle's table. It
// returns the output of each section by payload name.
func applyVector(p, b, source []byte, trust *signature.TrustStore) (map[string][]byte, error) {
	head, err := ReadHead(bytes.NewReader(p))
	if err != nil {
		return nil, err
	}
	if err := Verify(head.Header, head.Hash, head.Signatures, trust, time.Unix(vectorClock, 0)); err != nil {
		return nil, err
	}
	if int64(len(p)) != head.Size() {
		return nil, fmt.Errorf("%w: %d bytes, the header describes %d", ErrFormat, len(p), head.Size())
	}
	br, err := bundle.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if err := br.Verify(func(*bundle.Header, bundle.Hash, []signature.Signature) error { return nil }); err != nil {
		return nil, err
	}
	if head.Header.BundleHash != br.Hash {
		return nil, fmt.Errorf("%w: makes bundle %s", ErrMismatch, head.Header.BundleHash)
	}
	out := map[string][]byte{}
	for si := range head.Header.Sections {
		sec := &head.Header.Sections[si]
		pl := &br.Header.Payloads[sec.Payload]
		tableOff, _ := br.PayloadOffsets(int(sec.Payload))
		table, err := br.Table(int(sec.Payload), b[tableOff:tableOff+int64(pl.TableSize())])
		if err != nil {
			return nil, err
		}
		if uint64(len(source)) < sec.SourceSize || sha256.Sum256(source[:sec.SourceSize]) != sec.SourceDigest {
			return nil, fmt.Errorf("%w: source.img is not the section's source", ErrSource)
		}
		if err := sec.Check(pl, table.Entries); err != nil {
			return nil, err
		}
		var o []byte
		err = ApplySection(sec, table.Entries, bytes.NewReader(p[head.DataOffset:]), bytes.NewReader(source), func(i int, c []byte) error {
			if sha256.Sum256(c) != table.Entries[i].Digest {
				return fmt.Errorf("%w: chunk %d", errChunk, i)
			}
			o = append(o, c...)
			return nil
		})
		if err != nil {
			return nil, err
		}
		out[sec.Name] = o
	}
	return out, nil
}

// TestVectors checks every vector of testdata/vectors: the valid patch
// decodes to exactly target.img (and its compact chunk table expands to
// the bundle's table), every other one fails in its class.
func TestVectors(t *testing.T) {
	if *updateVectors {
		files, _ := makePatchVectors(t)
		if err := os.RemoveAll(vectorDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(vectorDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(vectorDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(vectorDir, name))
		if err != nil {
			t.Fatalf("%v (go test ./internal/patch -run TestVectors -update-vectors makes the vectors)", err)
		}
		return b
	}
	var set vectorSet
	if err := json.Unmarshal(read("vectors.json"), &set); err != nil {
		t.Fatal(err)
	}
	src, dst, b := read(set.Source), read(set.Target), read(set.Bundle)
	for name, want := range map[string]string{set.Source: set.SourceSHA256, set.Target: set.TargetSHA256} {
		if s := sha256.Sum256(read(name)); hex.EncodeToString(s[:]) != want {
			t.Fatalf("%s does not have the SHA-256 vectors.json names", name)
		}
	}
	if _, h, err := bundle.VerifyFile(filepath.Join(vectorDir, set.Bundle), func(*bundle.Header, bundle.Hash, []signature.Signature) error { return nil }); err != nil || h.String() != set.BundleHash {
		t.Fatalf("%s: hash %s, %v; vectors.json says %s", set.Bundle, h, err, set.BundleHash)
	}
	trust := &signature.TrustStore{}
	if err := trust.Add(read(set.Key)); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(vectorDir)
	listed := map[string]bool{"vectors.json": true, set.Source: true, set.Target: true, set.Bundle: true, set.Key: true}
	for _, v := range set.Vectors {
		listed[v.File] = true
		t.Run(v.File, func(t *testing.T) {
			p := read(v.File)
			out, err := applyVector(p, b, src, trust)
			if v.Expect != "success" {
				if class, ok := vectorClasses[v.Expect]; !ok || !errors.Is(err, class) {
					t.Fatalf("got %v, want class %s", err, v.Expect)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			head, _ := ReadHead(bytes.NewReader(p))
			if head.Hash.String() != v.PatchHash {
				t.Errorf("patch hash %s, vectors.json says %s", head.Hash, v.PatchHash)
			}
			for name, want := range v.Output {
				if s := sha256.Sum256(out[name]); hex.EncodeToString(s[:]) != want || !bytes.Equal(out[name], dst) {
					t.Errorf("payload %s: the output is not target.img", name)
				}
			}
			checkCompactTable(t, head, p, b, src)
		})
	}
	for _, f := range files {
		if !listed[f.Name()] {
			t.Errorf("%s is in %s but not in vectors.json", f.Name(), vectorDir)
		}
	}
	// The encoder of this build: its patch is accepted and decodes to the
	// same bytes (it need not be byte for byte the committed one).
	t.Run("encoder", func(t *testing.T) {
		files, set := makePatchVectors(t)
		if set.BundleHash != setHash(t, b) {
			t.Logf("this build writes another v2.tandem (%s): checked on its own", set.BundleHash)
		}
		out, err := applyVector(files["ok.tpatch"], files["v2.tandem"], src, trust)
		if err != nil || !bytes.Equal(out["system"], dst) {
			t.Fatalf("the encoder's patch: %v", err)
		}
		if !bytes.Equal(files["ok.tpatch"], read("ok.tpatch")) {
			t.Logf("the encoder's patch differs from the committed vector (a new encoder or compressor); both decode to target.img")
		}
	})
}

func setHash(t *testing.T, b []byte) string {
	t.Helper()
	br, err := bundle.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return br.Hash.String()
}

// checkCompactTable expands the valid patch's compact chunk table from the
// source's chunks and checks that it is the bundle's table.
func checkCompactTable(t *testing.T, head *Head, p, b, src []byte) {
	t.Helper()
	br, err := bundle.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range head.Header.Sections {
		g := sec.Table
		if g.StoredSize == 0 {
			t.Fatalf("section %s has no compact table", sec.Name)
		}
		off := head.DataOffset + int64(g.Offset)
		raw, err := DecodeSegment(g, p[off:off+int64(g.StoredSize)], nil)
		if err != nil {
			t.Fatal(err)
		}
		pl := &br.Header.Payloads[sec.Payload]
		chunks, _, _, err := SourceChunks(bytes.NewReader(src[:sec.SourceSize]), pl)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := ExpandTable(raw, chunks, pl.Chunks)
		if err != nil {
			t.Fatal(err)
		}
		tableOff, _ := br.PayloadOffsets(int(sec.Payload))
		if !bytes.Equal(tb, b[tableOff:tableOff+int64(pl.TableSize())]) {
			t.Errorf("section %s: the compact table does not expand to the bundle's table", sec.Name)
		}
	}
}
