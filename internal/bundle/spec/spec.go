// Package spec is the bundle spec: the TOML file that describes a bundle to
// make (`tandem bundle create --spec`, docs/bundle-spec.md) — its metadata,
// its signing keys and, per payload, the file its content comes from and how
// to chunk it. Load reads one strictly; Create makes the bundle file. The
// command line's `--slot ALIAS=IMAGE` flags make the same Spec.
package spec

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/signature"
)

// MaxSize bounds a spec file in bytes.
const MaxSize = 1 << 20

// Spec describes a bundle to make.
type Spec struct {
	// Header holds the metadata (Compatible, Version, Name, MinVersion,
	// Flags); Create leaves Created as the caller set it.
	Header bundle.Header
	Level  bundle.Level
	// Keys are signing keys as signature.LoadSigningKeys reads them
	// (PATH[:CHAIN]); Load resolves relative paths against the spec file.
	Keys     []string
	Payloads []Payload

	source string // the spec file, for errors ("" when made from flags)
}

// Payload is one payload to make: PayloadSpec without its Source, which
// Create opens from File (a host path).
type Payload struct {
	bundle.PayloadSpec
	File string
}

// file is the TOML form (docs/bundle-spec.md).
type file struct {
	Compatible  string        `toml:"compatible"`
	Version     string        `toml:"version"`
	Name        string        `toml:"name"`
	MinVersion  string        `toml:"min-version"`
	Incremental bool          `toml:"incremental"`
	Compression string        `toml:"compression"`
	Keys        []string      `toml:"keys"`
	Payloads    []filePayload `toml:"payload"`
}

type filePayload struct {
	Name      string   `toml:"name"`
	Kind      string   `toml:"kind"`   // slot (default), tree, execute
	Target    string   `toml:"target"` // slot alias; default: the name (slot, tree)
	File      string   `toml:"file"`   // the content: image, tar or script
	Handler   []string `toml:"handler"`
	Chunker   string   `toml:"chunker"`    // buzhash (default) or fixed
	ChunkSize string   `toml:"chunk-size"` // default 64K
}

var kinds = map[string]bundle.Kind{"": bundle.KindSlot, "slot": bundle.KindSlot, "tree": bundle.KindTree, "execute": bundle.KindExecute}

var chunkers = map[string]bundle.ChunkerType{"": bundle.ChunkerBuzhash, "buzhash": bundle.ChunkerBuzhash, "fixed": bundle.ChunkerFixed}

// Load reads the spec file name strictly: at most MaxSize bytes, no unknown
// key (an error gives its line and column), a known kind and chunker for
// every payload and a file for each. Relative paths of payload files and
// keys (both parts of KEY:CHAIN) are resolved against the spec's directory.
// The payload files are opened by Create, not here.
func Load(name string) (*Spec, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, MaxSize)
	}
	var f file
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		var se *toml.StrictMissingError
		var de *toml.DecodeError
		switch {
		case errors.As(err, &se) && len(se.Errors) > 0:
			row, col := se.Errors[0].Position()
			return nil, fmt.Errorf("%s:%d:%d: unknown key %s", name, row, col, strings.Join(se.Errors[0].Key(), "."))
		case errors.As(err, &de):
			row, col := de.Position()
			return nil, fmt.Errorf("%s:%d:%d: %s", name, row, col, de.Error())
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	dir := filepath.Dir(name)
	s := &Spec{Level: bundle.Level(f.Compression), source: name,
		Header: bundle.Header{Compatible: f.Compatible, Version: f.Version, Name: f.Name, MinVersion: f.MinVersion}}
	if f.Incremental {
		s.Header.Flags |= bundle.FlagIncremental
	}
	for _, k := range f.Keys {
		key, chain, ok := strings.Cut(k, ":")
		k = rel(dir, key)
		if ok {
			k += ":" + rel(dir, chain)
		}
		s.Keys = append(s.Keys, k)
	}
	if len(f.Payloads) == 0 {
		return nil, fmt.Errorf("%s: no [[payload]]", name)
	}
	for i, p := range f.Payloads {
		ps := bundle.PayloadSpec{Name: p.Name, Target: p.Target, Handler: p.Handler}
		var ok bool
		if ps.Kind, ok = kinds[p.Kind]; !ok {
			return nil, fmt.Errorf("%s: payload %d: kind %q (want slot, tree or execute)", name, i+1, p.Kind)
		}
		if ps.Target == "" && ps.Kind != bundle.KindExecute {
			ps.Target = p.Name
		}
		if ps.Chunker, ok = chunkers[p.Chunker]; !ok {
			return nil, fmt.Errorf("%s: payload %d: chunker %q (want buzhash or fixed)", name, i+1, p.Chunker)
		}
		if p.ChunkSize != "" {
			n, err := ParseSize(p.ChunkSize)
			if err != nil {
				return nil, fmt.Errorf("%s: payload %d: chunk-size: %w", name, i+1, err)
			}
			ps.ChunkSize = int(n)
		}
		if p.File == "" {
			return nil, fmt.Errorf("%s: payload %d: no file", name, i+1)
		}
		s.Payloads = append(s.Payloads, Payload{ps, rel(dir, p.File)})
	}
	return s, nil
}

func rel(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// Create makes the bundle file out from the spec (bundle.WriteFile: written
// atomically), signed by sign (nil: unsigned), and returns its hash. warn
// (nil: none) hears about slot images that will not take patches once
// mounted (JournalWarning).
func (s *Spec) Create(out string, sign func(bundle.Hash) ([]signature.Signature, error), warn func(string)) (bundle.Hash, error) {
	var specs []bundle.PayloadSpec
	for i, p := range s.Payloads {
		f, err := os.Open(p.File)
		if err != nil {
			if s.source != "" {
				err = fmt.Errorf("%s: payload %d: %w", s.source, i+1, err)
			}
			return bundle.Hash{}, err
		}
		defer f.Close()
		if p.Kind == bundle.KindSlot && warn != nil {
			if w := JournalWarning(f, p.Name); w != "" {
				warn(w)
			}
		}
		ps := p.PayloadSpec
		ps.Source = bufio.NewReaderSize(f, 1<<20)
		specs = append(specs, ps)
	}
	return bundle.WriteFile(out, s.Header, specs, bundle.Options{Level: s.Level, Sign: sign})
}

// ext4 superblock fields (at offset 1024 of the file system).
const (
	ext4Super      = 1024
	ext4MagicOff   = 0x38 // le16 s_magic
	ext4Magic      = 0xEF53
	ext4CompatOff  = 0x5C // le32 s_feature_compat
	ext4HasJournal = 0x4  // COMPAT_HAS_JOURNAL
)

// JournalWarning returns a warning when the slot image r (read from its
// start) is an ext4 file system with a journal, else "". Mounting such a
// file system, even read-only, makes the kernel's jbd2 rewrite the journal
// superblock in the page cache, so the slot no longer reads back as this
// image and a patch made from it will not match the device (docs/delta.md,
// "Patches").
func JournalWarning(r io.ReaderAt, name string) string {
	var sb [ext4CompatOff + 4]byte
	if n, _ := r.ReadAt(sb[:], ext4Super); n < len(sb) ||
		binary.LittleEndian.Uint16(sb[ext4MagicOff:]) != ext4Magic ||
		binary.LittleEndian.Uint32(sb[ext4CompatOff:])&ext4HasJournal == 0 {
		return ""
	}
	return fmt.Sprintf("payload %s is an ext4 image with a journal: once the device mounts it (even read-only), "+
		"its slot no longer reads back as this image and patches from it will not match (the device falls back to "+
		"chunk reuse); make it without one (mkfs.ext4 -O ^has_journal, or tune2fs -O ^has_journal IMAGE)", name)
}

// ParseSize parses a size as specs and tandem's flags write it: bytes, or a
// number with a binary K, M or G suffix ("64K" is 65536).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("%q is not a size (bytes, or a number with K, M or G)", s)
	}
	return n * mult, nil
}
