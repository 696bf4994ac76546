package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/tandem-ota/tandem/internal/signature"
)

var updateVectors = flag.Bool("update-vectors", false, "rewrite testdata/vectors")

const vectorDir = "../../testdata/vectors"

// vector is one entry of testdata/vectors/vectors.json.
type vector struct {
	File   string `json:"file"`
	Expect string `json:"expect"` // "success" or an error class of docs/bundle-format.md
	// For valid bundles:
	Hash     string            `json:"hash,omitempty"`
	Payloads map[string]string `json:"payloads,omitempty"` // name → SHA-256 of the content
	// Clock is the device time (Unix seconds) certificates are checked
	// at; 0 means the device has no trustworthy clock.
	Clock int64  `json:"clock"`
	Note  string `json:"note"`
}

var classes = map[string]error{
	"format": ErrFormat, "version": ErrVersion, "too-large": ErrTooLarge, "truncated": ErrTruncated,
	"trailing": ErrTrailing, "digest": ErrDigest, "chunk": ErrChunk,
	"unsigned": signature.ErrUnsigned, "untrusted": signature.ErrUntrusted, "bad-signature": signature.ErrBadSignature,
	"expired": signature.ErrExpired,
}

// vectorVerify trusts the test key and the test root certificate
// (testdata/vectors/test-key.pub and test-root.crt), and checks
// certificates at clock (Unix seconds; 0: no trustworthy clock, so at the
// bundle's created time, or not at all when that is 0 too).
func vectorVerify(t *testing.T, clock int64) Verifier {
	trust := trustTestKey(t)
	root, _ := vectorPKI(t)
	if err := trust.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})); err != nil {
		t.Fatal(err)
	}
	return func(h *Header, hash Hash, sigs []signature.Signature) error {
		_, err := signature.Verify(sigs, trust, hash, signature.TimePolicy{
			Now: time.Unix(clock, 0), Floor: signature.DefaultFloor(), Created: time.Unix(h.Created, 0)})
		return err
	}
}

// makeVectors builds the vector set from deterministic inputs (ed25519
// signatures are deterministic, so the files are stable).
func makeVectors(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	signed, _ := makeBundle(t, LevelDefault, true, testPayload{"system", KindSlot, testData(20_000, 10)})
	multi, _ := makeBundle(t, LevelDefault, true, testPayload{"system", KindSlot, testData(9_000, 11)},
		testPayload{"empty", KindSlot, nil}, testPayload{"script", KindExecute, []byte("echo hello\n")})
	stored, _ := makeBundle(t, LevelStored, true, testPayload{"system", KindSlot, testData(5_000, 12)})
	unsigned, _ := makeBundle(t, LevelDefault, false, testPayload{"system", KindSlot, testData(5_000, 13)})
	files["valid-signed.tandem"] = signed
	files["valid-multi.tandem"] = multi
	files["valid-stored.tandem"] = stored
	files["unsigned.tandem"] = unsigned

	r, err := NewReader(bytes.NewReader(signed))
	if err != nil {
		t.Fatal(err)
	}
	hl, sl := len(r.HeaderBytes), len(r.SigBytes)
	table := hl + sl
	storedTable := table + int(r.Header.Payloads[0].TableSize())
	data := storedTable + int(r.Header.StoredTableSize(&r.Header.Payloads[0]))
	mod := func(name string, f func(b []byte) []byte) { files[name] = f(bytes.Clone(signed)) }
	mod("bad-magic.tandem", func(b []byte) []byte { b[0] = 'X'; return b })
	mod("bad-version.tandem", func(b []byte) []byte { b[8] = 4; return b })
	mod("header-too-large.tandem", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], MaxHeaderSize+1); return b })
	mod("header-reserved.tandem", func(b []byte) []byte { b[10] = 1; return b })
	mod("header-changed.tandem", func(b []byte) []byte { b[40] ^= 1; return b })
	mod("signature-changed.tandem", func(b []byte) []byte { b[table-10] ^= 1; return b })
	mod("signature-reserved.tandem", func(b []byte) []byte { b[hl+10] = 1; return b })
	mod("table-changed.tandem", func(b []byte) []byte { b[table+3] ^= 1; return b })
	mod("table-stored-size.tandem", func(b []byte) []byte { b[table+36] ^= 1; return b })
	mod("stored-table-changed.tandem", func(b []byte) []byte { b[storedTable+5] ^= 1; return b })
	mod("chunk-changed.tandem", func(b []byte) []byte { b[data+20] ^= 1; return b })
	// The last 4 bytes of chunk 0 are its frame's content checksum.
	mod("chunk-checksum-changed.tandem", func(b []byte) []byte { b[data+int(firstStored(t, r, b))-1] ^= 1; return b })
	// Consistent, re-signed bundles that break one rule of the chunk data.
	files["stored-larger-than-size.tandem"] = rebuild(t, signed, false, func(c []chunkData) {
		// Chunk 0 padded with zeros to one byte more than its size: the
		// table entry then has stored_size > size.
		c[0].stored = append(c[0].stored, make([]byte, int(c[0].e.Size)+1-len(c[0].stored))...)
	})
	files["stored-digest-mismatch.tandem"] = rebuild(t, signed, true, func(c []chunkData) {
		// Chunk 0 compressed again at another level: the same content, other
		// stored bytes, a correct chunk table; only the stored table tells.
		c[0].stored = reencode(t, c[0].stored, true)
	})
	files["chunk-no-checksum.tandem"] = rebuild(t, signed, false, func(c []chunkData) {
		c[0].stored = reencode(t, c[0].stored, false)
	})
	files["chunk-checksum-wrong.tandem"] = rebuild(t, signed, false, func(c []chunkData) {
		// A correct stored table over a frame whose checksum is wrong: what
		// a decoder fault looks like.
		c[0].stored[len(c[0].stored)-1] ^= 1
	})
	files["chunk-content-differs.tandem"] = rebuild(t, signed, false, func(c []chunkData) {
		// A correct stored table and a valid frame (checksum included) of
		// other content than chunk 0's digest names: a writer's bug, signed.
		content := decode(t, c[0].stored)
		content[0] ^= 1
		c[0].stored = encodeCRC(t, content, true)
	})
	files["chunk-two-frames.tandem"] = rebuild(t, signed, false, func(c []chunkData) {
		content := decode(t, c[0].stored)
		half := len(content) / 2
		// Frames without a content size: only the frame walk can tell.
		c[0].stored = append(noSizeFrame(t, content[:half]), noSizeFrame(t, content[half:])...)
		if len(c[0].stored) >= len(content) {
			t.Fatal("two frames are not smaller than the chunk")
		}
	})
	rs, _ := NewReader(bytes.NewReader(stored))
	_, storedData := rs.PayloadOffsets(0)
	files["raw-chunk-changed.tandem"] = bytes.Clone(stored)
	files["raw-chunk-changed.tandem"][storedData+20] ^= 1
	mod("truncated-header.tandem", func(b []byte) []byte { return b[:hl-1] })
	mod("truncated-signatures.tandem", func(b []byte) []byte { return b[:table-1] })
	mod("truncated-table.tandem", func(b []byte) []byte { return b[:data-1] })
	mod("truncated-chunk.tandem", func(b []byte) []byte { return b[:len(b)-1] })
	mod("trailing-byte.tandem", func(b []byte) []byte { return append(b, 0) })
	files["test-key.pub"] = pemPublic(t, testKey.Public())
	ruleVectors(t, files, signed, multi)
	return files
}

// expectations merges the labels of vectorExpect and ruleExpect, with the
// clock of each vector.
func expectations() map[string]vector {
	all := map[string]vector{}
	for name, e := range vectorExpect {
		all[name] = vector{File: name, Expect: e.expect, Note: e.note, Clock: vectorClock.Unix()}
	}
	for name, e := range ruleExpect {
		v := vector{File: name, Expect: e.expect, Note: e.note, Clock: vectorClock.Unix()}
		if e.noClock {
			v.Clock = 0
		}
		all[name] = v
	}
	return all
}

var vectorExpect = map[string]struct{ expect, note string }{
	"valid-signed.tandem":              {"success", "one slot payload, signed by test-key.pub"},
	"valid-multi.tandem":               {"success", "slot, empty slot and execute payloads"},
	"valid-stored.tandem":              {"success", "chunks stored without compression"},
	"unsigned.tandem":                  {"unsigned", "well-formed, no signature"},
	"bad-magic.tandem":                 {"version", "first byte of the magic changed"},
	"bad-version.tandem":               {"version", "format version 4"},
	"v2-valid-signed.tandem":           {"success", "format 2 (no stored table): one slot payload, signed by test-key.pub"},
	"v2-valid-multi.tandem":            {"success", "format 2: slot, empty slot and execute payloads"},
	"v2-valid-stored.tandem":           {"success", "format 2: chunks stored without compression"},
	"v2-chunk-changed.tandem":          {"digest", "format 2: a byte of a zstd chunk changed: its content digest no longer matches"},
	"v2-raw-chunk-changed.tandem":      {"digest", "format 2: a byte of a raw chunk changed"},
	"v2-table-changed.tandem":          {"digest", "format 2: a chunk table byte changed"},
	"v2-stored-digest-mismatch.tandem": {"digest", "format 2, re-signed: chunk 0 re-compressed (same content, correct table), stored_digest of the payload left as it was; an install that does not check stored_digest reads the signed content"},
	"stored-table-changed.tandem":      {"digest", "a byte of the stored table changed"},
	"chunk-checksum-changed.tandem":    {"digest", "a byte of chunk 0's zstd content checksum changed (caught by its stored digest first)"},
	"chunk-no-checksum.tandem":         {"chunk", "re-signed: chunk 0 re-compressed without the zstd content checksum, stored table updated"},
	"chunk-checksum-wrong.tandem":      {"chunk", "re-signed: chunk 0's content checksum changed, stored table updated: the decoder refuses the frame"},
	"chunk-content-differs.tandem":     {"digest", "re-signed: chunk 0 stored as a valid frame (checksum included) of other content than its digest names, stored table updated; an install, which does not hash what it decoded from authenticated stored bytes, reads the frame's content"},
	"version-1.tandem":                 {"version", "a bundle of format version 1 (80-byte chunk table entries), made by the version 1 writer: refused, not misparsed"},
	"header-too-large.tandem":          {"too-large", "header_size above 1 MiB"},
	"header-reserved.tandem":           {"format", "reserved u16 at offset 10 not zero"},
	"header-changed.tandem":            {"bad-signature", "a header byte changed: the bundle hash no longer matches the signature"},
	"signature-changed.tandem":         {"bad-signature", "a byte of the ed25519 signature changed"},
	"signature-reserved.tandem":        {"format", "a reserved byte of the signature section set"},
	"table-changed.tandem":             {"digest", "a chunk table byte changed"},
	"table-stored-size.tandem":         {"digest", "a stored_size in the chunk table changed (caught by the table digest first)"},
	"chunk-changed.tandem":             {"digest", "a byte of a zstd chunk changed: its stored digest no longer matches"},
	"raw-chunk-changed.tandem":         {"digest", "a byte of a raw chunk (stored_size = size) changed"},
	"stored-larger-than-size.tandem":   {"format", "re-signed: a chunk table entry with stored_size > size"},
	"stored-digest-mismatch.tandem":    {"digest", "re-signed: chunk 0 re-compressed (same content, correct chunk table), the stored table left as it was: refused by an install too"},
	"chunk-two-frames.tandem":          {"chunk", "re-signed: chunk 0 stored as two zstd frames that together give its content"},
	"truncated-header.tandem":          {"truncated", "ends inside the header"},
	"truncated-signatures.tandem":      {"truncated", "ends inside the signature section"},
	"truncated-table.tandem":           {"truncated", "ends inside the chunk table"},
	"truncated-chunk.tandem":           {"truncated", "ends inside the last chunk"},
	"trailing-byte.tandem":             {"trailing", "one byte after the last payload"},
}

func TestVectors(t *testing.T) {
	if *updateVectors {
		files := makeVectors(t)
		expect := expectations()
		// Frozen files that the current writer cannot make (version-1.tandem,
		// v2-*.tandem).
		for name := range expect {
			if _, ok := files[name]; !ok {
				b, err := os.ReadFile(filepath.Join(vectorDir, name))
				if err != nil {
					t.Fatal(err)
				}
				files[name] = b
			}
		}
		var list []vector
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(vectorDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
			if v, ok := expect[name]; ok {
				if v.Expect == "success" {
					got, r, err := readAllWith(b, vectorVerify(t, v.Clock))
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					v.Hash, v.Payloads = r.Hash.String(), map[string]string{}
					for n, d := range got {
						sum := sha256sum(d)
						v.Payloads[n] = hex.EncodeToString(sum[:])
					}
				}
				list = append(list, v)
			}
		}
		sortVectors(list)
		j, _ := json.MarshalIndent(list, "", "  ")
		if err := os.WriteFile(filepath.Join(vectorDir, "vectors.json"), append(j, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j, err := os.ReadFile(filepath.Join(vectorDir, "vectors.json"))
	if err != nil {
		t.Fatalf("%v (run go test -run TestVectors -update-vectors)", err)
	}
	var list []vector
	if err := json.Unmarshal(j, &list); err != nil {
		t.Fatal(err)
	}
	if want := len(expectations()); len(list) != want {
		t.Fatalf("vectors.json lists %d vectors, want %d", len(list), want)
	}
	for _, v := range list {
		t.Run(v.File, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(vectorDir, v.File))
			if err != nil {
				t.Fatal(err)
			}
			got, r, err := readAllWith(b, vectorVerify(t, v.Clock))
			if v.Expect == "success" {
				if err != nil {
					t.Fatalf("want success: %v", err)
				}
				if r.Hash.String() != v.Hash {
					t.Fatalf("hash %s, want %s", r.Hash, v.Hash)
				}
				for n, d := range got {
					sum := sha256sum(d)
					if hex.EncodeToString(sum[:]) != v.Payloads[n] {
						t.Fatalf("payload %s digest differs", n)
					}
				}
				return
			}
			if want := classes[v.Expect]; !errors.Is(err, want) {
				t.Fatalf("got %v, want class %s", err, v.Expect)
			}
		})
	}
}

// chunkData is one chunk of a payload: its table entry and stored bytes.
type chunkData struct {
	e      Entry
	stored []byte
}

// rebuild splits the single-payload bundle b into chunks, lets change edit
// them, and joins them again with a table, sizes, table digest and (unless
// keepStoredDigest) stored table or stored digest that match, signed by the
// test key.
func rebuild(t *testing.T, b []byte, keepStoredDigest bool, change func([]chunkData)) []byte {
	t.Helper()
	h, _, rest := splitBundle(t, b)
	p := &h.Payloads[0]
	entries, err := ParseTable(rest[:p.TableSize()], p)
	if err != nil {
		t.Fatal(err)
	}
	off := int(p.TableSize())
	oldStored := rest[off : off+int(h.StoredTableSize(p))]
	off += len(oldStored)
	var chunks []chunkData
	for _, e := range entries {
		chunks = append(chunks, chunkData{e, bytes.Clone(rest[off : off+int(e.StoredSize)])})
		off += int(e.StoredSize)
	}
	change(chunks)
	var table, storedTable, data []byte
	for i := range chunks {
		chunks[i].e.StoredSize = uint32(len(chunks[i].stored))
		table = MarshalEntry(table, &chunks[i].e)
		sd := sha256.Sum256(chunks[i].stored)
		storedTable = append(storedTable, sd[:]...)
		data = append(data, chunks[i].stored...)
	}
	p.StoredSize, p.TableDigest = uint64(len(data)), TableDigest(table)
	switch {
	case !h.HasStoredTable():
		storedTable = nil
		if !keepStoredDigest {
			p.StoredDigest = sha256.Sum256(data)
		}
	case keepStoredDigest:
		storedTable = oldStored
	default:
		p.StoredTableDigest = TableDigest(storedTable)
	}
	hb, err := MarshalHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := sign(Hash(sha256.Sum256(hb)))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := MarshalSignatures(sigs)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Concat(hb, sb, table, storedTable, data)
}

func decode(t *testing.T, frame []byte) []byte {
	t.Helper()
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out, err := dec.DecodeAll(frame, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// firstStored returns the stored size of chunk 0 of the first payload of
// b, which r read.
func firstStored(t *testing.T, r *Reader, b []byte) uint32 {
	t.Helper()
	off, _ := r.PayloadOffsets(0)
	return UnmarshalEntry(b[off:]).StoredSize
}

// encodeCRC compresses data at the fastest level, with or without zstd's
// content checksum.
func encodeCRC(t *testing.T, data []byte, crc bool) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(crc))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

// reencode compresses a zstd chunk's content again, differently, with or
// without the content checksum.
func reencode(t *testing.T, frame []byte, crc bool) []byte {
	t.Helper()
	content := decode(t, frame)
	again := encodeCRC(t, content, crc)
	if bytes.Equal(again, frame) || len(again) >= len(content) {
		t.Fatal("re-encoding gave the same frame or no compression")
	}
	return again
}

// An install reads two vectors that a check of the file refuses
// (docs/bundle-format.md, "An install"): in format 2, the one that only
// stored_digest tells from, as the signed content (the same as the valid
// bundle it was made from); in format 3, the one whose authenticated stored
// bytes decode to other content than the chunk digest names, as exactly
// that decoding. Format 3's stored-digest-mismatch.tandem is refused by an
// install too.
func TestVectorsAsInstalled(t *testing.T) {
	read := func(name string) (map[string][]byte, error) {
		b, err := os.ReadFile(filepath.Join(vectorDir, name))
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := readAllAs(b, vectorVerify(t, vectorClock.Unix()), false)
		return got, err
	}
	must := func(name string) []byte {
		got, err := read(name)
		if err != nil || len(got["system"]) == 0 {
			t.Fatalf("%s as an install reads it: %v", name, err)
		}
		return got["system"]
	}
	if !bytes.Equal(must("v2-valid-signed.tandem"), must("v2-stored-digest-mismatch.tandem")) {
		t.Fatal("v2-stored-digest-mismatch.tandem: an install read other content than the signed one")
	}
	want := must("valid-signed.tandem")
	got := must("chunk-content-differs.tandem")
	if len(got) != len(want) || got[0] != want[0]^1 || !bytes.Equal(got[1:], want[1:]) {
		t.Fatal("chunk-content-differs.tandem: an install read other content than the frame's")
	}
	for _, name := range []string{"stored-digest-mismatch.tandem", "chunk-changed.tandem", "chunk-checksum-wrong.tandem", "chunk-no-checksum.tandem"} {
		if _, err := read(name); err == nil {
			t.Fatalf("%s: an install read it", name)
		}
	}
}
