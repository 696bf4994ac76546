// Package bundle reads and writes tandem update bundles (docs/bundle-format.md
// is the normative spec; this code follows it). A bundle is a bounded header,
// whose SHA-256 is the bundle hash, then a signature section outside the hash,
// then per payload a chunk table and the chunk data. The Reader releases a
// chunk only after its content was checked against the hash chain bundle
// hash → header → chunk table → chunk; a full read also checks the digest of
// every stored byte of each payload.
package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/tandem-ota/tandem/internal/wire"
)

// Format constants (docs/bundle-format.md, "Header").
const (
	Magic = "TANDEMBN"
	// FormatVersion is the version a writer makes: 3, whose payloads carry
	// a stored table (the SHA-256 of each chunk's stored bytes).
	FormatVersion = 3
	// MinFormatVersion is the oldest version a reader accepts: 2, whose
	// chunks are checked by their content digest only.
	MinFormatVersion = 2
	fixedSize        = 32

	// MaxHeaderSize bounds the header; it is checked before the rest is read.
	MaxHeaderSize = 1 << 20
	// MaxSigSectionSize bounds the signature section.
	MaxSigSectionSize = 256 << 10
	// MaxPayloads bounds the payloads of one bundle.
	MaxPayloads = 64
	// MaxString bounds every string of the header.
	MaxString = 4096
	// MaxArgs bounds the handler argv of an execute payload.
	MaxArgs = 64
	// EntrySize is the size of one chunk table entry.
	EntrySize = 40
	// StoredEntrySize is the size of one stored table entry (format 3).
	StoredEntrySize = 32
	// MaxTableSize bounds one chunk table (its entries are held in memory):
	// 419 430 entries.
	MaxTableSize = 16 << 20
	// MinChunk and MaxChunk bound chunker parameters and chunk sizes.
	MinChunk = 64
	MaxChunk = 16 << 20
)

// Payload kinds.
type Kind uint8

const (
	KindSlot    Kind = 1 // slot image: written to the target slot of the group
	KindTree    Kind = 2 // file tree: a tar extracted into the target directory slot
	KindExecute Kind = 3 // streamed to a handler program
)

var kindNames = map[Kind]string{KindSlot: "slot", KindTree: "tree", KindExecute: "execute"}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ChunkerType says how a payload was cut into chunks.
type ChunkerType uint8

const (
	ChunkerFixed   ChunkerType = 0
	ChunkerBuzhash ChunkerType = 1 // casync-compatible content-defined chunking
)

// Header flags.
const (
	FlagIncremental uint32 = 1 << 0
	knownFlags             = FlagIncremental
)

// Errors, one per class of invalid input (the test vectors name them).
// The rule between the first and third: a field above a limit of the
// spec's Limits table (a size, a length or a count) is ErrTooLarge; every
// other broken rule, lower bounds included, is ErrFormat.
var (
	ErrFormat    = errors.New("bundle: malformed")             // structure, lengths, reserved fields, padding
	ErrVersion   = errors.New("bundle: unsupported format")    // magic or version
	ErrTooLarge  = errors.New("bundle: over a size limit")     // a size, length or count above its limit
	ErrTruncated = errors.New("bundle: truncated")             // the input ended early
	ErrTrailing  = errors.New("bundle: data after the end")    // bytes after the last payload
	ErrDigest    = errors.New("bundle: digest mismatch")       // a table, chunk, payload or its stored bytes do not match
	ErrChunk     = errors.New("bundle: bad chunk")             // decompression failed or size differs
	ErrVerify    = errors.New("bundle: verification required") // payloads read before verification
)

// VersionError is a bundle of another format version (class ErrVersion).
// Its Hint says what to do about it.
type VersionError struct{ Version uint16 }

func (e *VersionError) Error() string {
	return fmt.Sprintf("%s: format version %d (this tandem reads %d and %d)", ErrVersion, e.Version, MinFormatVersion, FormatVersion)
}

func (e *VersionError) Unwrap() error { return ErrVersion }

// Hint tells the user how to get a bundle this tandem reads.
func (e *VersionError) Hint() string {
	if e.Version < MinFormatVersion {
		return fmt.Sprintf("the bundle was made by an older tandem; re-create it with `tandem bundle create` of this release (format version %d)", FormatVersion)
	}
	return "the bundle was made by a newer tandem; update tandem on this machine first"
}

// Header is the hashed, signed part of a bundle.
type Header struct {
	// Format is the format version: 2 or 3 (0 when marshalling: the
	// current FormatVersion).
	Format     uint16
	Created    int64 // seconds since the Unix epoch (SOURCE_DATE_EPOCH when reproducible)
	Flags      uint32
	Compatible string
	Name       string
	Version    string
	MinVersion string // minimum installed version the bundle applies to ("" = any)
	Payloads   []Payload
}

// Incremental reports whether the bundle updates only part of a group.
func (h *Header) Incremental() bool { return h.Flags&FlagIncremental != 0 }

// Payload describes one payload.
type Payload struct {
	Kind         Kind
	Chunker      ChunkerType
	ChunkMin     uint32
	ChunkAvg     uint32
	ChunkMax     uint32
	Size         uint64   // uncompressed size: the sum of chunk sizes
	StoredSize   uint64   // bytes of chunk data in the bundle: the sum of stored sizes
	Chunks       uint32   // number of chunk table entries
	TableDigest  [32]byte // SHA-256 of the chunk table
	StoredDigest [32]byte // format 2: SHA-256 of the payload's chunk data, as stored
	// StoredTableDigest (format 3, in the place of StoredDigest) is the
	// SHA-256 of the stored table: the SHA-256 of each chunk's stored bytes.
	StoredTableDigest [32]byte
	Digest            [32]byte // SHA-256 of the whole uncompressed payload
	Name              string
	Target            string   // slot alias for slot and tree payloads; "" for execute
	Handler           []string // execute: argv of the handler program
}

// TableSize is the byte size of the payload's chunk table.
func (p *Payload) TableSize() uint64 { return uint64(p.Chunks) * EntrySize }

// HasStoredTable reports whether the bundle's payloads carry a stored table
// after their chunk table (format 3).
func (h *Header) HasStoredTable() bool { return h.format() >= 3 }

// StoredTableSize is the byte size of payload p's stored table: 0 in format 2.
func (h *Header) StoredTableSize(p *Payload) uint64 {
	if !h.HasStoredTable() {
		return 0
	}
	return uint64(p.Chunks) * StoredEntrySize
}

func (h *Header) format() uint16 {
	if h.Format == 0 {
		return FormatVersion
	}
	return h.Format
}

// Entry is one chunk table entry.
type Entry struct {
	Digest     [32]byte // SHA-256 of the uncompressed chunk: its identity
	Size       uint32   // uncompressed size
	StoredSize uint32   // size in the bundle: = Size when stored raw, < Size when a zstd frame
}

// Compressed reports whether the chunk is stored as a zstd frame (else its
// stored bytes are its content).
func (e *Entry) Compressed() bool { return e.StoredSize < e.Size }

// Hash is a bundle hash: SHA-256 of the header bytes.
type Hash [32]byte

func (h Hash) String() string { return fmt.Sprintf("%x", h[:]) }

// ParseHash parses the 64 hex digits String prints.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("bundle hash %q: want 64 hex digits", s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("bundle hash %q: %w", s, err)
	}
	if h.String() != s {
		return h, fmt.Errorf("bundle hash %q: want lower-case hex", s)
	}
	return h, nil
}

// encoder appends little-endian fields.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.LittleEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *encoder) str(s string) { e.u16(uint16(len(s))); e.b = append(e.b, s...) }

// MarshalHeader encodes h. It validates h first, so a bundle the writer makes
// is always one the reader accepts.
func MarshalHeader(h *Header) ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	return encodeHeader(h)
}

// encodeHeader encodes h without validating it (the test vectors use it to
// make headers that break one rule).
func encodeHeader(h *Header) ([]byte, error) {
	e := &encoder{b: make([]byte, 0, 512)}
	e.b = append(e.b, Magic...)
	e.u16(h.format())
	e.u16(0)
	e.u32(0) // header size, patched below
	e.u64(uint64(h.Created))
	e.u32(h.Flags)
	e.u16(uint16(len(h.Payloads)))
	e.u16(0)
	e.str(h.Compatible)
	e.str(h.Name)
	e.str(h.Version)
	e.str(h.MinVersion)
	for i := range h.Payloads {
		p := &h.Payloads[i]
		e.u8(uint8(p.Kind))
		e.u8(uint8(p.Chunker))
		e.u16(0)
		e.u32(p.ChunkMin)
		e.u32(p.ChunkAvg)
		e.u32(p.ChunkMax)
		e.u64(p.Size)
		e.u64(p.StoredSize)
		e.u32(p.Chunks)
		e.u32(0)
		e.b = append(e.b, p.TableDigest[:]...)
		if h.HasStoredTable() {
			e.b = append(e.b, p.StoredTableDigest[:]...)
		} else {
			e.b = append(e.b, p.StoredDigest[:]...)
		}
		e.b = append(e.b, p.Digest[:]...)
		e.str(p.Name)
		e.str(p.Target)
		e.u16(uint16(len(p.Handler)))
		for _, a := range p.Handler {
			e.str(a)
		}
	}
	if len(e.b) > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header of %d bytes (limit %d)", ErrTooLarge, len(e.b), MaxHeaderSize)
	}
	binary.LittleEndian.PutUint32(e.b[12:], uint32(len(e.b)))
	return e.b, nil
}

// decoder reads the header's fields (internal/wire), its errors wrapping
// ErrFormat and ErrTooLarge.
type decoder = wire.Decoder

func newDecoder(b []byte, off int) *decoder {
	return &decoder{B: b, Off: off, Malformed: ErrFormat, TooLarge: ErrTooLarge}
}

// HeaderSize reads the total header size from the first 16 bytes and checks
// magic, version and limits, so that a reader knows how much to read.
func HeaderSize(prefix []byte) (int, error) {
	if len(prefix) < 16 {
		return 0, fmt.Errorf("%w: %d bytes, the header starts with 16", ErrTruncated, len(prefix))
	}
	if string(prefix[:8]) != Magic {
		return 0, fmt.Errorf("%w: not a tandem bundle (it does not start with %q)", ErrVersion, Magic)
	}
	if v := binary.LittleEndian.Uint16(prefix[8:]); v < MinFormatVersion || v > FormatVersion {
		return 0, &VersionError{Version: v}
	}
	if binary.LittleEndian.Uint16(prefix[10:]) != 0 {
		return 0, fmt.Errorf("%w: reserved field at offset 10 is not zero", ErrFormat)
	}
	n := binary.LittleEndian.Uint32(prefix[12:])
	switch {
	case n > MaxHeaderSize:
		return 0, fmt.Errorf("%w: header of %d bytes (limit %d)", ErrTooLarge, n, MaxHeaderSize)
	case n < fixedSize:
		return 0, fmt.Errorf("%w: header size %d is below %d", ErrFormat, n, fixedSize)
	}
	return int(n), nil
}

// ParseHeader decodes and validates the header bytes (exactly HeaderSize long).
func ParseHeader(b []byte) (*Header, error) {
	n, err := HeaderSize(b)
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, fmt.Errorf("%w: header is %d bytes, its size field says %d", ErrFormat, len(b), n)
	}
	d := newDecoder(b, 16)
	h := &Header{Format: binary.LittleEndian.Uint16(b[8:]), Created: int64(d.U64()), Flags: d.U32()}
	np := int(d.U16())
	d.Zero(2, "header.reserved2")
	h.Compatible, h.Name, h.Version, h.MinVersion = d.Str(MaxString), d.Str(MaxString), d.Str(MaxString), d.Str(MaxString)
	if np > MaxPayloads {
		return nil, fmt.Errorf("%w: %d payloads (limit %d)", ErrTooLarge, np, MaxPayloads)
	}
	for i := 0; i < np && d.Err == nil; i++ {
		var p Payload
		p.Kind, p.Chunker = Kind(d.U8()), ChunkerType(d.U8())
		d.Zero(2, "payload.reserved")
		p.ChunkMin, p.ChunkAvg, p.ChunkMax = d.U32(), d.U32(), d.U32()
		p.Size, p.StoredSize, p.Chunks = d.U64(), d.U64(), d.U32()
		d.Zero(4, "payload.reserved2")
		copy(p.TableDigest[:], d.Take(32))
		if h.HasStoredTable() {
			copy(p.StoredTableDigest[:], d.Take(32))
		} else {
			copy(p.StoredDigest[:], d.Take(32))
		}
		copy(p.Digest[:], d.Take(32))
		p.Name, p.Target = d.Str(MaxString), d.Str(MaxString)
		argc := int(d.U16())
		if argc > MaxArgs {
			d.Over("handler with %d arguments (limit %d)", argc, MaxArgs)
		}
		for j := 0; j < argc && d.Err == nil; j++ {
			p.Handler = append(p.Handler, d.Str(MaxString))
		}
		h.Payloads = append(h.Payloads, p)
	}
	if d.Err != nil {
		return nil, d.Err
	}
	if d.Off != len(b) {
		return nil, fmt.Errorf("%w: %d unused bytes at the end of the header", ErrFormat, len(b)-d.Off)
	}
	if err := h.validate(); err != nil {
		return nil, err
	}
	return h, nil
}

func validString(what, s string, required bool) error {
	switch {
	case required && s == "":
		return fmt.Errorf("%w: %s is empty", ErrFormat, what)
	case len(s) > MaxString:
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrTooLarge, what, MaxString)
	case !utf8.ValidString(s) || bytes.ContainsAny([]byte(s), "\x00\n\r"):
		return fmt.Errorf("%w: %s is not a one-line UTF-8 string", ErrFormat, what)
	}
	return nil
}

// validate checks every rule of the spec that needs no other data.
func (h *Header) validate() error {
	if f := h.format(); f < MinFormatVersion || f > FormatVersion {
		return &VersionError{Version: f}
	}
	if h.Flags&^knownFlags != 0 {
		return fmt.Errorf("%w: unknown header flags %#x", ErrFormat, h.Flags&^knownFlags)
	}
	for _, s := range []struct {
		what, v  string
		required bool
	}{{"compatible", h.Compatible, true}, {"name", h.Name, false}, {"version", h.Version, true}, {"min-version", h.MinVersion, false}} {
		if err := validString(s.what, s.v, s.required); err != nil {
			return err
		}
	}
	if _, err := ParseVersion(h.Version); err != nil {
		return fmt.Errorf("%w: version: %w", ErrFormat, err)
	}
	if h.MinVersion != "" {
		if _, err := ParseVersion(h.MinVersion); err != nil {
			return fmt.Errorf("%w: min-version: %w", ErrFormat, err)
		}
	}
	if len(h.Payloads) > MaxPayloads {
		return fmt.Errorf("%w: %d payloads (limit %d)", ErrTooLarge, len(h.Payloads), MaxPayloads)
	}
	if len(h.Payloads) == 0 {
		return fmt.Errorf("%w: no payloads", ErrFormat)
	}
	names := map[string]bool{}
	for i := range h.Payloads {
		p := &h.Payloads[i]
		if err := p.validate(); err != nil {
			return fmt.Errorf("payload %d (%s): %w", i, p.Name, err)
		}
		if names[p.Name] {
			return fmt.Errorf("%w: two payloads named %q", ErrFormat, p.Name)
		}
		names[p.Name] = true
	}
	return nil
}

func (p *Payload) validate() error {
	if err := validString("payload name", p.Name, true); err != nil {
		return err
	}
	if err := validString("payload target", p.Target, false); err != nil {
		return err
	}
	switch p.Kind {
	case KindSlot, KindTree:
		if p.Target == "" || len(p.Handler) != 0 {
			return fmt.Errorf("%w: a %s payload needs a target slot alias and no handler", ErrFormat, p.Kind)
		}
	case KindExecute:
		if p.Target != "" || len(p.Handler) == 0 || p.Handler[0] == "" {
			return fmt.Errorf("%w: an execute payload needs a handler and no target", ErrFormat)
		}
	default:
		return fmt.Errorf("%w: unknown payload kind %d", ErrFormat, p.Kind)
	}
	if len(p.Handler) > MaxArgs {
		return fmt.Errorf("%w: handler with %d arguments (limit %d)", ErrTooLarge, len(p.Handler), MaxArgs)
	}
	for _, a := range p.Handler {
		if err := validString("handler argument", a, false); err != nil {
			return err
		}
	}
	switch p.Chunker {
	case ChunkerFixed:
		if p.ChunkMin != p.ChunkAvg || p.ChunkAvg != p.ChunkMax {
			return fmt.Errorf("%w: fixed chunking needs min = avg = max", ErrFormat)
		}
	case ChunkerBuzhash:
		if !(p.ChunkMin <= p.ChunkAvg && p.ChunkAvg <= p.ChunkMax) {
			return fmt.Errorf("%w: chunk sizes need min ≤ avg ≤ max", ErrFormat)
		}
	default:
		return fmt.Errorf("%w: unknown chunker %d", ErrFormat, p.Chunker)
	}
	if p.ChunkMax > MaxChunk {
		return fmt.Errorf("%w: chunk_max %d (limit %d)", ErrTooLarge, p.ChunkMax, MaxChunk)
	}
	if p.ChunkMin < MinChunk {
		return fmt.Errorf("%w: chunk_min %d is below %d", ErrFormat, p.ChunkMin, MinChunk)
	}
	if p.TableSize() > MaxTableSize {
		return fmt.Errorf("%w: chunk table of %d entries (limit %d bytes)", ErrTooLarge, p.Chunks, MaxTableSize)
	}
	if (p.Chunks == 0) != (p.Size == 0) || p.Size > uint64(p.Chunks)*uint64(p.ChunkMax) || p.Size < uint64(p.Chunks) {
		return fmt.Errorf("%w: %d chunks cannot hold %d bytes", ErrFormat, p.Chunks, p.Size)
	}
	if p.StoredSize > p.Size {
		return fmt.Errorf("%w: stored size %d is larger than the payload size %d", ErrFormat, p.StoredSize, p.Size)
	}
	return nil
}

// MarshalEntry appends the 40-byte encoding of e.
func MarshalEntry(b []byte, e *Entry) []byte {
	b = append(b, e.Digest[:]...)
	b = binary.LittleEndian.AppendUint32(b, e.Size)
	b = binary.LittleEndian.AppendUint32(b, e.StoredSize)
	return b
}

// UnmarshalEntry decodes the 40-byte encoding of an entry (not checked).
func UnmarshalEntry(raw []byte) Entry {
	var e Entry
	copy(e.Digest[:], raw[0:32])
	e.Size = binary.LittleEndian.Uint32(raw[32:])
	e.StoredSize = binary.LittleEndian.Uint32(raw[36:])
	return e
}

// ParseTable decodes a chunk table whose digest was already checked, and
// checks every entry against the payload description.
func ParseTable(b []byte, p *Payload) ([]Entry, error) {
	if uint64(len(b)) != p.TableSize() {
		return nil, fmt.Errorf("%w: chunk table of %d bytes, want %d", ErrFormat, len(b), p.TableSize())
	}
	entries := make([]Entry, p.Chunks)
	var size, stored uint64
	for i := range entries {
		e := &entries[i]
		*e = UnmarshalEntry(b[i*EntrySize : (i+1)*EntrySize])
		if err := e.check(p, i == len(entries)-1); err != nil {
			return nil, fmt.Errorf("chunk %d: %w", i, err)
		}
		size += uint64(e.Size)
		stored += uint64(e.StoredSize)
	}
	if size != p.Size || stored != p.StoredSize {
		return nil, fmt.Errorf("%w: chunk table sums to %d bytes (%d stored), the header says %d (%d stored)", ErrFormat, size, stored, p.Size, p.StoredSize)
	}
	return entries, nil
}

func (e *Entry) check(p *Payload, last bool) error {
	if e.Size == 0 || e.Size > p.ChunkMax || (!last && e.Size < p.ChunkMin) || (p.Chunker == ChunkerFixed && !last && e.Size != p.ChunkMax) {
		return fmt.Errorf("%w: size %d outside the payload's chunk sizes", ErrFormat, e.Size)
	}
	if e.StoredSize > e.Size {
		return fmt.Errorf("%w: stored size %d is larger than the chunk's size %d", ErrFormat, e.StoredSize, e.Size)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TableDigest returns the SHA-256 of a chunk table.
func TableDigest(table []byte) [32]byte { return sha256.Sum256(table) }
