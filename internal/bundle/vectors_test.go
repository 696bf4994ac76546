package bundle

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

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
	Note     string            `json:"note"`
}

var classes = map[string]error{
	"format": ErrFormat, "version": ErrVersion, "too-large": ErrTooLarge, "truncated": ErrTruncated,
	"trailing": ErrTrailing, "digest": ErrDigest, "chunk": ErrChunk,
	"unsigned": signature.ErrUnsigned, "untrusted": signature.ErrUntrusted, "bad-signature": signature.ErrBadSignature,
}

// vectorVerify trusts the test key (its public key is testdata/vectors/test-key.pub).
func vectorVerify(t *testing.T) Verifier {
	trust := trustTestKey(t)
	return func(h *Header, hash Hash, sigs []signature.Signature) error {
		_, err := signature.Verify(sigs, trust, hash, signature.TimePolicy{})
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
	data := table + int(r.Header.Payloads[0].TableSize())
	mod := func(name string, f func(b []byte) []byte) { files[name] = f(bytes.Clone(signed)) }
	mod("bad-magic.tandem", func(b []byte) []byte { b[0] = 'X'; return b })
	mod("bad-version.tandem", func(b []byte) []byte { b[8] = 2; return b })
	mod("header-too-large.tandem", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], MaxHeaderSize+1); return b })
	mod("header-reserved.tandem", func(b []byte) []byte { b[10] = 1; return b })
	mod("header-changed.tandem", func(b []byte) []byte { b[40] ^= 1; return b })
	mod("signature-changed.tandem", func(b []byte) []byte { b[table-10] ^= 1; return b })
	mod("signature-reserved.tandem", func(b []byte) []byte { b[hl+10] = 1; return b })
	mod("table-changed.tandem", func(b []byte) []byte { b[table+3] ^= 1; return b })
	mod("table-reserved.tandem", func(b []byte) []byte { b[table+75] = 1; return b })
	mod("chunk-changed.tandem", func(b []byte) []byte { b[data+20] ^= 1; return b })
	mod("truncated-header.tandem", func(b []byte) []byte { return b[:hl-1] })
	mod("truncated-signatures.tandem", func(b []byte) []byte { return b[:table-1] })
	mod("truncated-table.tandem", func(b []byte) []byte { return b[:data-1] })
	mod("truncated-chunk.tandem", func(b []byte) []byte { return b[:len(b)-1] })
	mod("trailing-byte.tandem", func(b []byte) []byte { return append(b, 0) })
	files["test-key.pub"] = pemPublic(t, testKey.Public())
	return files
}

var vectorExpect = map[string]struct{ expect, note string }{
	"valid-signed.tandem":         {"success", "one slot payload, signed by test-key.pub"},
	"valid-multi.tandem":          {"success", "slot, empty slot and execute payloads"},
	"valid-stored.tandem":         {"success", "chunks stored without compression"},
	"unsigned.tandem":             {"unsigned", "well-formed, no signature"},
	"bad-magic.tandem":            {"version", "first byte of the magic changed"},
	"bad-version.tandem":          {"version", "format version 2"},
	"header-too-large.tandem":     {"too-large", "header_size above 1 MiB"},
	"header-reserved.tandem":      {"format", "reserved u16 at offset 10 not zero"},
	"header-changed.tandem":       {"bad-signature", "a header byte changed: the bundle hash no longer matches the signature"},
	"signature-changed.tandem":    {"bad-signature", "a byte of the ed25519 signature changed"},
	"signature-reserved.tandem":   {"format", "a reserved byte of the signature section set"},
	"table-changed.tandem":        {"digest", "a chunk table byte changed"},
	"table-reserved.tandem":       {"digest", "a reserved chunk table byte set (caught by the table digest first)"},
	"chunk-changed.tandem":        {"digest", "a byte of stored chunk data changed"},
	"truncated-header.tandem":     {"truncated", "ends inside the header"},
	"truncated-signatures.tandem": {"truncated", "ends inside the signature section"},
	"truncated-table.tandem":      {"truncated", "ends inside the chunk table"},
	"truncated-chunk.tandem":      {"truncated", "ends inside the last chunk"},
	"trailing-byte.tandem":        {"trailing", "one byte after the last payload"},
}

func TestVectors(t *testing.T) {
	if *updateVectors {
		files := makeVectors(t)
		var list []vector
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(vectorDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
			if exp, ok := vectorExpect[name]; ok {
				v := vector{File: name, Expect: exp.expect, Note: exp.note}
				if exp.expect == "success" {
					got, r, err := readAllWith(b, vectorVerify(t))
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
	if len(list) != len(vectorExpect) {
		t.Fatalf("vectors.json lists %d vectors, want %d", len(list), len(vectorExpect))
	}
	for _, v := range list {
		t.Run(v.File, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(vectorDir, v.File))
			if err != nil {
				t.Fatal(err)
			}
			got, r, err := readAllWith(b, vectorVerify(t))
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
