package bundle

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/tandem-ota/tandem/internal/signature"
)

// Info describes a bundle as `tandem bundle inspect --json` prints it
// (docs/cli.md). Nothing in it is verified.
type Info struct {
	Hash          string        `json:"hash"`
	FormatVersion int           `json:"formatVersion"`
	Compatible    string        `json:"compatible"`
	Name          string        `json:"name"`
	Version       string        `json:"version"`
	MinVersion    string        `json:"minVersion,omitempty"`
	Incremental   bool          `json:"incremental"`
	Created       time.Time     `json:"created"`
	Signers       []SignerInfo  `json:"signers"`
	Payloads      []PayloadInfo `json:"payloads"`
}

// SignerInfo names one signature (not verified).
type SignerInfo struct {
	Algorithm    string `json:"algorithm"`
	KeyID        string `json:"keyId"`
	Certificates int    `json:"certificates"`
}

// PayloadInfo describes one payload.
type PayloadInfo struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Target      string   `json:"target,omitempty"`
	Handler     []string `json:"handler,omitempty"`
	Chunker     string   `json:"chunker"`
	ChunkMin    uint32   `json:"chunkMin"`
	ChunkAvg    uint32   `json:"chunkAvg"`
	ChunkMax    uint32   `json:"chunkMax"`
	Size        uint64   `json:"size"`
	StoredSize  uint64   `json:"storedSize"`
	ChunkCount  uint32   `json:"chunkCount"`
	Digest      string   `json:"digest"`
	TableDigest string   `json:"tableDigest"`
	// StoredDigest is the SHA-256 of the payload's chunk data as stored
	// (format 2).
	StoredDigest string `json:"storedDigest,omitempty"`
	// StoredTableDigest is the SHA-256 of the payload's stored table
	// (format 3).
	StoredTableDigest string      `json:"storedTableDigest,omitempty"`
	Chunks            []ChunkInfo `json:"chunks,omitempty"`
}

// ChunkInfo is one chunk table entry. Compression is derived from the
// sizes: "zstd" when the chunk is stored smaller than its size, else "stored".
type ChunkInfo struct {
	Offset      uint64 `json:"offset"`
	Size        uint32 `json:"size"`
	StoredSize  uint32 `json:"storedSize"`
	Compression string `json:"compression"`
	Digest      string `json:"digest"`
}

// Describe describes the header and signatures r has read.
func Describe(r *Reader) *Info {
	h := r.Header
	info := &Info{Hash: r.Hash.String(), FormatVersion: int(h.Format), Compatible: h.Compatible,
		Name: h.Name, Version: h.Version, MinVersion: h.MinVersion, Incremental: h.Incremental(),
		Created: time.Unix(h.Created, 0).UTC(), Signers: []SignerInfo{}}
	for _, s := range r.Signatures {
		alg := s.Algorithm.String()
		if s.Algorithm != signature.Ed25519 && s.Algorithm != signature.ECDSAP256SHA256 {
			alg = fmt.Sprintf("unknown(%d)", s.Algorithm)
		}
		info.Signers = append(info.Signers, SignerInfo{alg, hex.EncodeToString(s.KeyID[:]), len(s.Certs)})
	}
	for _, p := range h.Payloads {
		ch := "buzhash"
		if p.Chunker == ChunkerFixed {
			ch = "fixed"
		}
		info.Payloads = append(info.Payloads, PayloadInfo{Name: p.Name, Kind: p.Kind.String(), Target: p.Target,
			Handler: p.Handler, Chunker: ch, ChunkMin: p.ChunkMin, ChunkAvg: p.ChunkAvg, ChunkMax: p.ChunkMax,
			Size: p.Size, StoredSize: p.StoredSize, ChunkCount: p.Chunks,
			Digest: hex.EncodeToString(p.Digest[:]), TableDigest: hex.EncodeToString(p.TableDigest[:]),
		})
		pi := &info.Payloads[len(info.Payloads)-1]
		if h.HasStoredTable() {
			pi.StoredTableDigest = hex.EncodeToString(p.StoredTableDigest[:])
		} else {
			pi.StoredDigest = hex.EncodeToString(p.StoredDigest[:])
		}
	}
	return info
}

// Inspect describes the bundle file name; with chunks, it reads every
// payload's chunk table too (checked against the header, but the signature
// is not: the description is for a person, not for installing).
func Inspect(name string, chunks bool) (*Info, error) {
	f, err := Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info := Describe(f.Reader)
	if !chunks {
		return info, nil
	}
	if err := f.Verify(acceptAny); err != nil {
		return nil, err
	}
	for i := range info.Payloads {
		pr, err := f.NextPayload()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		var off uint64
		for _, e := range pr.Entries {
			comp := "stored"
			if e.Compressed() {
				comp = "zstd"
			}
			info.Payloads[i].Chunks = append(info.Payloads[i].Chunks, ChunkInfo{Offset: off, Size: e.Size,
				StoredSize: e.StoredSize, Compression: comp, Digest: hex.EncodeToString(e.Digest[:])})
			off += uint64(e.Size)
		}
		if err := pr.Skip(); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return info, nil
}
