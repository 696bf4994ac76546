package patch

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/signature"
)

// Dir is the directory of a bundle's patches, next to it: the patches of
// https://host/v2.tandem are https://host/v2.tandem.patches/NAME.
const Dir = ".patches"

// Ext ends the name of a patch file.
const Ext = ".tpatch"

// NameByHash is the file name of the patch a device finds through the
// bundle hash its active group was installed from.
func NameByHash(from bundle.Hash) string { return from.String() + Ext }

// NameByVersion is the file name of the patch a device finds through the
// version of its active group when it has no recorded bundle hash (a
// factory image).
func NameByVersion(version string) string { return "version-" + version + Ext }

// URLs returns where a device looks for a patch of the bundle at
// bundleURL: by the bundle hash of its active group when it has one, else
// by its version (docs/delta.md, "Patches").
func URLs(bundleURL, fromHash, fromVersion string) []string {
	base, _, _ := strings.Cut(bundleURL, "?")
	base, _, _ = strings.Cut(base, "#")
	var out []string
	if fromHash != "" {
		out = append(out, base+Dir+"/"+fromHash+Ext)
	} else if fromVersion != "" && validVersionName(fromVersion) {
		out = append(out, base+Dir+"/"+NameByVersion(fromVersion))
	}
	return out
}

// ParseName reads the source a patch file name claims (NameByHash or
// NameByVersion): the bundle hash or the version of the release it starts
// from; ok is false for any other name.
func ParseName(name string) (fromHash, fromVersion string, ok bool) {
	base, found := strings.CutSuffix(name, Ext)
	if !found {
		return "", "", false
	}
	if v, isVersion := strings.CutPrefix(base, "version-"); isVersion {
		return "", v, validVersionName(v)
	}
	if _, err := bundle.ParseHash(base); err != nil {
		return "", "", false
	}
	return base, "", true
}

// validVersionName: a version that can be part of a URL path as it is.
func validVersionName(v string) bool {
	for _, c := range v {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.ContainsRune(".-+_~", c)) {
			return false
		}
	}
	return v != "" && len(v) <= 128
}

// From is what a patch starts from: a previous release's bundle, or its
// slot images by slot alias (with the version they carry, if known).
type From struct {
	Bundle  string
	Images  map[string]string // slot alias → image file
	Version string
}

// Options of Create.
type Options struct {
	Bundle string // the new bundle
	From   From
	Keys   []signature.SigningKey
	// Trust verifies the bundles read (the new one and a From bundle); nil:
	// the public keys of Keys.
	Trust  *signature.TrustStore
	OutDir string    // "" = Bundle + Dir
	Now    time.Time // the signature time policy's clock (zero = time.Now)
	// SegmentSize is the output a segment aims at (0 = SegmentTarget).
	SegmentSize int
}

// Result is what Create wrote.
type Result struct {
	Paths    []string
	Hash     Hash
	Sections []SectionInfo
}

// SectionInfo is one payload of a written patch.
type SectionInfo struct {
	Name       string
	Size       uint64 // the payload's size
	SourceSize uint64
	PatchSize  uint64 // its segments' stored bytes
}

// String words a Result as `tandem bundle delta` prints it.
func (r *Result) String() string {
	b := &strings.Builder{}
	for i, p := range r.Paths {
		if i == 0 {
			fmt.Fprintf(b, "wrote %s (patch %s)\n", p, r.Hash)
		} else {
			fmt.Fprintf(b, "wrote %s (the same patch)\n", p)
		}
	}
	for _, s := range r.Sections {
		fmt.Fprintf(b, "  payload %s: %d bytes from a %d-byte source in %d patch bytes (%.4f)\n",
			s.Name, s.Size, s.SourceSize, s.PatchSize, float64(s.PatchSize)/float64(max(s.Size, 1)))
	}
	return b.String()
}

// Create writes the patch that turns the source o.From into the slot
// payloads of the bundle o.Bundle, signed with o.Keys. Both bundles are
// verified first (signature and every chunk). The patch gets a section for
// each slot payload whose slot alias has a source; a payload without one
// is installed by chunk reuse or downloaded. The file is written
// atomically, as NameByHash(from bundle hash) and, when the source's version
// is known, NameByVersion too.
func Create(o Options) (*Result, error) {
	if len(o.Keys) == 0 {
		return nil, errors.New("a patch must be signed: give --key")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	trust := o.Trust
	if trust == nil {
		trust = &signature.TrustStore{}
		for _, k := range o.Keys {
			pem, err := signature.PublicKeyPEM(k.Key)
			if err == nil {
				err = trust.Add(pem)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	verify := bundle.TrustVerifier(trust, o.Now, nil)
	nb, err := readBundle(o.Bundle, verify, nil)
	if err != nil {
		return nil, err
	}
	var sources map[string][]byte // by slot alias
	fromVersion, fromHash := o.From.Version, ""
	switch {
	case o.From.Bundle != "" && len(o.From.Images) == 0:
		want := map[string]bool{}
		for _, p := range nb.header.Payloads {
			if p.Kind == bundle.KindSlot {
				want[p.Target] = true
			}
		}
		ob, err := readBundle(o.From.Bundle, verify, want)
		if err != nil {
			return nil, fmt.Errorf("from: %w", err)
		}
		sources, fromHash = ob.byTarget, ob.hash.String()
		if fromVersion == "" {
			fromVersion = ob.header.Version
		}
	case o.From.Bundle == "" && len(o.From.Images) > 0:
		sources = map[string][]byte{}
		for alias, f := range o.From.Images {
			if sources[alias], err = os.ReadFile(f); err != nil {
				return nil, fmt.Errorf("from image: %w", err)
			}
		}
	default:
		return nil, errors.New("give the source as a bundle or as slot images, not both and not neither")
	}
	if fromHash == "" && fromVersion == "" {
		return nil, errors.New("a patch from slot images needs the version they carry (--from-version): devices find it by version")
	}
	if fromVersion != "" && !validVersionName(fromVersion) {
		return nil, fmt.Errorf("from-version %q: only letters, digits and . - + _ ~ can name a patch file", fromVersion)
	}
	h := &Header{Created: nb.header.Created, BundleHash: nb.hash, FromVersion: fromVersion}
	var stored [][]byte
	var off uint64
	res := &Result{}
	for i, p := range nb.header.Payloads {
		src, ok := sources[p.Target]
		if p.Kind != bundle.KindSlot || !ok || p.Size == 0 {
			continue
		}
		b, err := buildSection(src, nb.content[i], &p, nb.entries[i], o.SegmentSize)
		if err != nil {
			return nil, fmt.Errorf("payload %s: %w", p.Name, err)
		}
		b.Payload, b.Name = uint16(i), p.Name
		b.Table.Offset += off
		n := uint64(b.Table.StoredSize)
		for k := range b.Segments {
			b.Segments[k].Offset += off
			n += uint64(b.Segments[k].StoredSize)
		}
		off += n
		h.Sections = append(h.Sections, b.Section)
		stored = append(append(stored, b.table), b.stored...)
		res.Sections = append(res.Sections, SectionInfo{Name: p.Name, Size: p.Size, SourceSize: b.SourceSize, PatchSize: n})
	}
	if len(h.Sections) == 0 {
		return nil, errors.New("no slot payload of the bundle has a source: nothing to patch")
	}
	dir := o.OutDir
	if dir == "" {
		dir = o.Bundle + Dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var names []string
	if fromHash != "" {
		names = append(names, filepath.Join(dir, fromHash+Ext))
	}
	if fromVersion != "" {
		names = append(names, filepath.Join(dir, NameByVersion(fromVersion)))
	}
	for _, name := range names {
		a, err := rootfs.CreateHostFile(name, 0o644)
		if err != nil {
			return nil, err
		}
		bw := bufio.NewWriterSize(a, 1<<20)
		res.Hash, err = Write(bw, h, stored, func(hash Hash) ([]signature.Signature, error) { return Sign(o.Keys, hash) })
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			a.Abort()
			return nil, err
		}
		if err := a.Commit(); err != nil {
			return nil, err
		}
		res.Paths = append(res.Paths, name)
	}
	return res, nil
}

// readBundle is a verified bundle read whole into memory.
type release struct {
	header   *bundle.Header
	hash     bundle.Hash
	content  [][]byte          // by payload index (slot payloads only)
	entries  [][]bundle.Entry  // by payload index
	byTarget map[string][]byte // slot payload content by slot alias
}

// readBundle verifies the bundle file name and reads its slot payloads
// (only those for the slot aliases in targets, when targets is not nil).
func readBundle(name string, verify bundle.Verifier, targets map[string]bool) (*release, error) {
	f, err := bundle.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Verify(verify); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	rb := &release{header: f.Header, hash: f.Hash, content: make([][]byte, len(f.Header.Payloads)),
		entries: make([][]bundle.Entry, len(f.Header.Payloads)), byTarget: map[string][]byte{}}
	for i := 0; ; i++ {
		pr, err := f.NextPayload()
		if errors.Is(err, io.EOF) {
			return rb, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		p := pr.Payload
		if p.Kind != bundle.KindSlot || (targets != nil && !targets[p.Target]) {
			if err := pr.Skip(); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			continue
		}
		b := make([]byte, p.Size)
		if _, err := io.ReadFull(pr, b); err != nil {
			return nil, fmt.Errorf("%s: payload %s: %w", name, p.Name, err)
		}
		// The reader checks the whole-payload digest at its end.
		if _, err := pr.Next(); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: payload %s: %w", name, p.Name, err)
		}
		rb.content[i], rb.entries[i], rb.byTarget[p.Target] = b, pr.Entries, b
	}
}

// Load fills o's keys, trust and source images from `tandem bundle delta`'s
// --key (PATH[:CHAIN]), --trust and --from-image ALIAS=IMAGE values.
func (o *Options) Load(keys, trust, images []string) error {
	var err error
	if o.Keys, err = signature.LoadSigningKeys(keys); err != nil {
		return err
	}
	if len(trust) > 0 {
		if o.Trust, err = signature.LoadTrust("", trust); err != nil {
			return err
		}
	}
	for _, kv := range images {
		alias, file, ok := strings.Cut(kv, "=")
		if !ok || alias == "" || file == "" {
			return fmt.Errorf("--from-image %q: want ALIAS=IMAGE", kv)
		}
		if o.From.Images == nil {
			o.From.Images = map[string]string{}
		}
		o.From.Images[alias] = file
	}
	return nil
}
