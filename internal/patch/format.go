// Package patch is tandem's binary (static) delta: a signed file that turns
// one known slot image (the source) into the payloads of one bundle
// (docs/patch-format.md is the normative spec; this code follows it). A
// patch names the bundle it produces by its bundle hash and, per slot
// payload, the size and SHA-256 of the source image it expects. Its body is
// a list of independent segments, each covering a run of the bundle's
// chunks, each checked by a digest in the signed header before it is
// decoded; the decoded output is never trusted either: an installer hands it
// to the bundle's PayloadReader, which checks every chunk against the signed
// chunk table before a byte is written.
//
// A segment holds bsdiff-style instructions (diff: source bytes plus a byte
// difference; extra: new bytes) compressed as one zstd frame. The encoder
// (Diff) finds matches through a hash index of the source; the decoder
// (Applier) reads the source by offset, so a device never loads it whole.
package patch

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/signature"
	"github.com/tandem-ota/tandem/internal/wire"
)

// Format constants (docs/patch-format.md, "Header").
const (
	Magic         = "TANDEMPT"
	FormatVersion = 1
	fixedSize     = 60
	// Domain is the signature domain of patches: a patch signature covers
	// Domain || patch hash, which no bundle or channel signature can be.
	Domain = "tandem patch signature v1\x00"

	// MaxHeaderSize bounds the header (checked before the rest is read).
	MaxHeaderSize = 4 << 20
	// MaxSections bounds the payload sections of one patch.
	MaxSections = bundle.MaxPayloads
	// MaxSegments bounds the segments of one section.
	MaxSegments = 65536
	// MaxSegmentOutput bounds the output of one segment (a segment holds at
	// least one chunk, and a chunk is at most bundle.MaxChunk).
	MaxSegmentOutput = bundle.MaxChunk
	// MaxSegmentRaw bounds a segment's decoded instructions and bytes.
	MaxSegmentRaw = MaxSegmentOutput + 1<<20
	// SegmentEntrySize is the size of one segment entry in the header.
	SegmentEntrySize = 60
	// MaxTableRaw bounds a compact chunk table (at most 42 bytes an entry).
	MaxTableRaw = bundle.MaxTableSize / bundle.EntrySize * 42
	// MaxString bounds the strings of the header.
	MaxString = 4096
)

// Segment flags.
const (
	FlagZstd  = 1 << 0 // the stored bytes are one zstd frame of the raw bytes
	knownFlag = FlagZstd
)

// Errors, one per class of invalid patch.
var (
	ErrFormat   = errors.New("patch: malformed")          // structure, lengths, reserved fields
	ErrVersion  = errors.New("patch: unsupported format") // magic or version
	ErrTooLarge = errors.New("patch: over a size limit")
	ErrDigest   = errors.New("patch: digest mismatch") // a segment's stored bytes
	ErrSource   = errors.New("patch: wrong source")    // the source is not the one the patch names
	ErrMismatch = errors.New("patch: not for this bundle")
)

// Header is the hashed, signed part of a patch.
type Header struct {
	Created     int64       // seconds since the Unix epoch (the signature time policy uses it)
	BundleHash  bundle.Hash // the bundle the patch produces
	FromVersion string      // the version of the source, for humans ("" = unknown)
	Sections    []Section
}

// Section is the patch of one slot payload of the bundle.
type Section struct {
	Payload      uint16   // index of the payload in the bundle
	Name         string   // the payload's name (must equal the bundle's)
	Size         uint64   // the payload's size: what the section produces
	SourceSize   uint64   // bytes of the source image, from offset 0 of the slot
	SourceDigest [32]byte // SHA-256 of those bytes
	// Table is the payload's chunk table in its compact form (table.go),
	// stored before the segments; StoredSize 0 when the section has none.
	// FirstChunk and Chunks are 0.
	Table    Segment
	Segments []Segment
}

// Segment is one independently decodable part of a section.
type Segment struct {
	FirstChunk uint32   // index of its first chunk in the payload's chunk table
	Chunks     uint32   // how many chunks it produces
	Offset     uint64   // of its stored bytes, from the start of the patch data
	StoredSize uint32   // bytes in the patch
	RawSize    uint32   // bytes once decompressed
	Flags      uint8    // FlagZstd
	Digest     [32]byte // SHA-256 of the stored bytes
}

// Hash is a patch hash: SHA-256 of the header bytes.
type Hash [32]byte

func (h Hash) String() string { return fmt.Sprintf("%x", h[:]) }

// DataSize is the size of the patch data (the stored sizes of the tables
// and segments).
func (h *Header) DataSize() uint64 {
	var n uint64
	for i := range h.Sections {
		n += uint64(h.Sections[i].Table.StoredSize)
		for _, g := range h.Sections[i].Segments {
			n += uint64(g.StoredSize)
		}
	}
	return n
}

// Section returns the section of payload i, or nil.
func (h *Header) Section(i int) *Section {
	for j := range h.Sections {
		if int(h.Sections[j].Payload) == i {
			return &h.Sections[j]
		}
	}
	return nil
}

// Marshal encodes h after validating it.
func (h *Header) Marshal() ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 256)
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint16(b, FormatVersion)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 0) // size, patched below
	b = binary.LittleEndian.AppendUint64(b, uint64(h.Created))
	b = append(b, h.BundleHash[:]...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(h.Sections)))
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = appendStr(b, h.FromVersion)
	for i := range h.Sections {
		s := &h.Sections[i]
		b = binary.LittleEndian.AppendUint16(b, s.Payload)
		b = binary.LittleEndian.AppendUint16(b, 0)
		b = appendStr(b, s.Name)
		b = binary.LittleEndian.AppendUint64(b, s.Size)
		b = binary.LittleEndian.AppendUint64(b, s.SourceSize)
		b = append(b, s.SourceDigest[:]...)
		b = appendSegment(b, s.Table)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Segments)))
		for _, g := range s.Segments {
			b = appendSegment(b, g)
		}
	}
	if len(b) > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header of %d bytes (limit %d)", ErrTooLarge, len(b), MaxHeaderSize)
	}
	binary.LittleEndian.PutUint32(b[12:], uint32(len(b)))
	return b, nil
}

func appendSegment(b []byte, g Segment) []byte {
	b = binary.LittleEndian.AppendUint32(b, g.FirstChunk)
	b = binary.LittleEndian.AppendUint32(b, g.Chunks)
	b = binary.LittleEndian.AppendUint64(b, g.Offset)
	b = binary.LittleEndian.AppendUint32(b, g.StoredSize)
	b = binary.LittleEndian.AppendUint32(b, g.RawSize)
	b = append(b, g.Flags, 0, 0, 0)
	return append(b, g.Digest[:]...)
}

func segment(r *wire.Decoder) Segment {
	var g Segment
	g.FirstChunk, g.Chunks, g.Offset = r.U32(), r.U32(), r.U64()
	g.StoredSize, g.RawSize, g.Flags = r.U32(), r.U32(), r.U8()
	r.Zero(3, "segment.reserved")
	copy(g.Digest[:], r.Take(32))
	return g
}

func appendStr(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// HeaderSize reads the header size from the first 16 bytes and checks
// magic, version and limits.
func HeaderSize(prefix []byte) (int, error) {
	if len(prefix) < 16 {
		return 0, fmt.Errorf("%w: %d bytes, the header starts with 16", ErrFormat, len(prefix))
	}
	if string(prefix[:8]) != Magic {
		return 0, fmt.Errorf("%w: not a tandem patch (it does not start with %q)", ErrVersion, Magic)
	}
	if v := binary.LittleEndian.Uint16(prefix[8:]); v != FormatVersion {
		return 0, fmt.Errorf("%w: format version %d (this tandem reads %d)", ErrVersion, v, FormatVersion)
	}
	if binary.LittleEndian.Uint16(prefix[10:]) != 0 {
		return 0, fmt.Errorf("%w: reserved field at offset 10 is not zero", ErrFormat)
	}
	switch n := binary.LittleEndian.Uint32(prefix[12:]); {
	case n > MaxHeaderSize:
		return 0, fmt.Errorf("%w: header of %d bytes (limit %d)", ErrTooLarge, n, MaxHeaderSize)
	case n < fixedSize:
		return 0, fmt.Errorf("%w: header size %d is below %d", ErrFormat, n, fixedSize)
	default:
		return int(n), nil
	}
}

// ParseHeader decodes and validates the header bytes (exactly HeaderSize
// long).
func ParseHeader(b []byte) (*Header, error) {
	n, err := HeaderSize(b)
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, fmt.Errorf("%w: header is %d bytes, its size field says %d", ErrFormat, len(b), n)
	}
	r := &wire.Decoder{B: b, Off: 16, Malformed: ErrFormat, TooLarge: ErrTooLarge}
	h := &Header{Created: int64(r.U64())}
	copy(h.BundleHash[:], r.Take(32))
	ns := int(r.U16())
	r.Zero(2, "header.reserved")
	h.FromVersion = r.Str(MaxString)
	if ns > MaxSections {
		return nil, fmt.Errorf("%w: %d sections (limit %d)", ErrTooLarge, ns, MaxSections)
	}
	for i := 0; i < ns && r.Err == nil; i++ {
		var s Section
		s.Payload = r.U16()
		r.Zero(2, "section.reserved")
		s.Name = r.Str(MaxString)
		s.Size, s.SourceSize = r.U64(), r.U64()
		copy(s.SourceDigest[:], r.Take(32))
		s.Table = segment(r)
		count := int(r.U32())
		if count > MaxSegments {
			return nil, fmt.Errorf("%w: %d segments (limit %d)", ErrTooLarge, count, MaxSegments)
		}
		if count > (len(b)-r.Off)/SegmentEntrySize {
			return nil, fmt.Errorf("%w: %d segments do not fit in the header", ErrFormat, count)
		}
		s.Segments = make([]Segment, count)
		for j := range s.Segments {
			s.Segments[j] = segment(r)
		}
		h.Sections = append(h.Sections, s)
	}
	if r.Err != nil {
		return nil, r.Err
	}
	if r.Off != len(b) {
		return nil, fmt.Errorf("%w: %d unused bytes at the end of the header", ErrFormat, len(b)-r.Off)
	}
	if err := h.validate(); err != nil {
		return nil, err
	}
	return h, nil
}

// validate checks every rule of the spec that needs no other data: strings,
// limits, segments that tile their section's chunks from chunk 0 and data
// offsets that tile the patch data in order.
func (h *Header) validate() error {
	if err := checkString("from-version", h.FromVersion); err != nil {
		return err
	}
	if len(h.Sections) == 0 {
		return fmt.Errorf("%w: no sections", ErrFormat)
	}
	if len(h.Sections) > MaxSections {
		return fmt.Errorf("%w: %d sections (limit %d)", ErrTooLarge, len(h.Sections), MaxSections)
	}
	var off uint64
	seen := map[uint16]bool{}
	for i := range h.Sections {
		s := &h.Sections[i]
		if seen[s.Payload] {
			return fmt.Errorf("%w: two sections for payload %d", ErrFormat, s.Payload)
		}
		seen[s.Payload] = true
		if i > 0 && s.Payload < h.Sections[i-1].Payload {
			return fmt.Errorf("%w: sections not in payload order", ErrFormat)
		}
		if s.Name == "" {
			return fmt.Errorf("%w: section %d has no payload name", ErrFormat, i)
		}
		if err := checkString("payload name", s.Name); err != nil {
			return err
		}
		if len(s.Segments) > MaxSegments {
			return fmt.Errorf("%w: %d segments (limit %d)", ErrTooLarge, len(s.Segments), MaxSegments)
		}
		if (len(s.Segments) == 0) != (s.Size == 0) {
			return fmt.Errorf("%w: section %s: %d segments for %d bytes", ErrFormat, s.Name, len(s.Segments), s.Size)
		}
		switch tb := s.Table; {
		case tb.FirstChunk != 0 || tb.Chunks != 0 || tb.Offset != off || tb.Flags&^knownFlag != 0:
			return fmt.Errorf("%w: section %s: bad table entry", ErrFormat, s.Name)
		case tb.StoredSize == 0 && (tb.RawSize != 0 || tb.Flags != 0 || tb.Digest != [32]byte{}):
			return fmt.Errorf("%w: section %s: an absent table with sizes, flags or a digest", ErrFormat, s.Name)
		case tb.StoredSize > MaxTableRaw || tb.RawSize > MaxTableRaw:
			return fmt.Errorf("%w: section %s: table of %d bytes (limit %d)", ErrTooLarge, s.Name, max(tb.StoredSize, tb.RawSize), MaxTableRaw)
		case tb.StoredSize != 0 && (tb.RawSize == 0 || (tb.Flags&FlagZstd == 0 && tb.StoredSize != tb.RawSize)):
			return fmt.Errorf("%w: section %s: table sizes", ErrFormat, s.Name)
		}
		off += uint64(s.Table.StoredSize)
		var chunk uint32
		for j, g := range s.Segments {
			switch {
			case g.FirstChunk != chunk || g.Chunks == 0 || g.FirstChunk+g.Chunks < g.FirstChunk:
				return fmt.Errorf("%w: section %s: segment %d does not follow the one before", ErrFormat, s.Name, j)
			case g.Offset != off:
				return fmt.Errorf("%w: section %s: segment %d at data offset %d, want %d", ErrFormat, s.Name, j, g.Offset, off)
			case g.Flags&^knownFlag != 0:
				return fmt.Errorf("%w: section %s: segment %d has unknown flags %#x", ErrFormat, s.Name, j, g.Flags)
			case g.RawSize > MaxSegmentRaw || g.StoredSize > MaxSegmentRaw:
				return fmt.Errorf("%w: section %s: segment %d of %d bytes (limit %d)", ErrTooLarge, s.Name, j, max(g.RawSize, g.StoredSize), MaxSegmentRaw)
			case g.Flags&FlagZstd == 0 && g.StoredSize != g.RawSize:
				return fmt.Errorf("%w: section %s: uncompressed segment %d has %d stored and %d raw bytes", ErrFormat, s.Name, j, g.StoredSize, g.RawSize)
			case g.StoredSize == 0 || g.RawSize == 0:
				return fmt.Errorf("%w: section %s: empty segment %d", ErrFormat, s.Name, j)
			}
			chunk += g.Chunks
			off += uint64(g.StoredSize)
		}
	}
	return nil
}

func checkString(what, s string) error {
	if len(s) > MaxString {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrTooLarge, what, MaxString)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrFormat, what)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %s is not one line of text", ErrFormat, what)
		}
	}
	return nil
}

// Check matches section s against the verified bundle payload p and its
// chunk table: same name and size, segments that cover exactly the table's
// chunks, each segment's output within MaxSegmentOutput.
func (s *Section) Check(p *bundle.Payload, entries []bundle.Entry) error {
	if s.Name != p.Name || s.Size != p.Size {
		return fmt.Errorf("%w: section %s of %d bytes, the bundle's payload is %s of %d bytes", ErrMismatch, s.Name, s.Size, p.Name, p.Size)
	}
	var chunks uint64
	for _, g := range s.Segments {
		end := uint64(g.FirstChunk) + uint64(g.Chunks)
		if end > uint64(len(entries)) {
			return fmt.Errorf("%w: section %s names chunk %d, the payload has %d", ErrMismatch, s.Name, end-1, len(entries))
		}
		if out := SegmentOutput(g, entries); out > MaxSegmentOutput {
			return fmt.Errorf("%w: section %s: a segment of %d output bytes (limit %d)", ErrTooLarge, s.Name, out, MaxSegmentOutput)
		}
		chunks = end
	}
	if chunks != uint64(len(entries)) {
		return fmt.Errorf("%w: section %s covers %d of %d chunks", ErrMismatch, s.Name, chunks, len(entries))
	}
	return nil
}

// SegmentOutput is the number of bytes segment g produces: the sum of the
// sizes of its chunks (g must be within entries).
func SegmentOutput(g Segment, entries []bundle.Entry) uint64 {
	var n uint64
	for _, e := range entries[g.FirstChunk : g.FirstChunk+g.Chunks] {
		n += uint64(e.Size)
	}
	return n
}

// CheckSegment checks a segment's stored bytes against its signed digest.
func CheckSegment(g Segment, stored []byte) error {
	if len(stored) != int(g.StoredSize) || sha256.Sum256(stored) != g.Digest {
		return fmt.Errorf("%w: segment of chunks %d-%d", ErrDigest, g.FirstChunk, g.FirstChunk+g.Chunks-1)
	}
	return nil
}

// Verify checks a patch's signatures over hash under trust with the bundle
// rules (signature.VerifyDigest in Domain, the time policy of bundles with
// the patch's Created).
func Verify(h *Header, hash Hash, sigs []signature.Signature, trust *signature.TrustStore, now time.Time) error {
	_, err := signature.VerifyDigest(sigs, trust, Domain, hash, signature.TimePolicy{
		Now: now, Floor: signature.DefaultFloor(), Created: time.Unix(h.Created, 0)})
	return err
}

// Sign signs hash with every key, in order.
func Sign(keys []signature.SigningKey, hash Hash) ([]signature.Signature, error) {
	var sigs []signature.Signature
	for _, k := range keys {
		s, err := signature.SignDigest(k.Key, k.Chain, Domain, hash)
		if err != nil {
			return nil, err
		}
		sigs = append(sigs, s)
	}
	return sigs, nil
}
