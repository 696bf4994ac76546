// Package channel is the update channel file: a small signed JSON document,
// served by any HTTP server, object store or CDN, that names the current
// release of a channel (bundle URL, bundle hash, version, rollout
// percentage, device selector). Devices running `tandem watch` poll it;
// `tandem channel publish` writes it. The byte-level specification is
// docs/integrations/channels.md; this package follows it.
//
// A channel file is an envelope whose "signed" member holds the exact
// signed bytes (base64), so that nothing depends on how JSON is
// re-serialised. Its signatures cover
//
//	"tandem channel signature v1\x00" || SHA-256(signed bytes)
//
// (signature.SignDigest with Domain), which no bundle signature can be.
// Parsing is strict: a size limit, no unknown or duplicate members, no
// trailing data, valid UTF-8. Accept adds what a device must check beyond
// the signature: the channel name and compatible, the sequence number
// against the highest one seen (no replay of older files) and the expiry
// time.
package channel

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/signature"
)

// Format is the channel file format version this package reads and writes.
const Format = 1

// MaxSize bounds a channel file (the envelope) in bytes.
const MaxSize = 64 << 10

// MaxSignatures bounds the signatures of one channel file.
const MaxSignatures = 16

// MaxSequence is the largest sequence number (2^53-1: exact in every JSON
// implementation).
const MaxSequence = 1<<53 - 1

// Domain separates channel signatures from bundle signatures and anything
// else a release key signs.
const Domain = "tandem channel signature v1\x00"

// Errors, for errors.Is.
var (
	// ErrFormat: the file is not a well-formed channel file.
	ErrFormat = errors.New("malformed channel file")
	// ErrWrongChannel: a valid file for another channel or device type.
	ErrWrongChannel = errors.New("channel file is not for this channel")
	// ErrReplay: the sequence number is below the highest one this device
	// has seen (an old file replayed), or equal with different content.
	ErrReplay = errors.New("channel file is older than one already seen")
	// ErrExpired: the file's expiry time has passed.
	ErrExpired = errors.New("channel file has expired")
)

// Channel is the signed document.
type Channel struct {
	Format     int       `json:"format"`
	Channel    string    `json:"channel"`
	Compatible string    `json:"compatible"`
	Sequence   uint64    `json:"sequence"`
	Issued     time.Time `json:"-"`
	Expires    time.Time `json:"-"`
	Release    Release   `json:"release"`
}

// Release is the bundle a channel names.
type Release struct {
	Version string `json:"version"`
	// Bundle is an absolute http(s) URL or a reference relative to the
	// channel file's URL (Resolve).
	Bundle     string `json:"bundle"`
	BundleHash string `json:"bundleHash"`
	// Rollout is the share of selected devices that install the release,
	// in basis points (0..10000; 10000 = every device). Nil = everyone.
	Rollout *Percent `json:"rollout,omitempty"`
	// Select limits the release to matching devices (nil = every device).
	Select *Selector `json:"select,omitempty"`
	// Patches are the patches published for the bundle, at most
	// MaxPatches: a device whose source one of them starts from uses it;
	// with a list, devices do not look for patches next to the bundle.
	Patches []Patch `json:"patches,omitempty"`
}

// MaxPatches bounds the patches of one release.
const MaxPatches = 64

// Patch is a patch of the release's bundle (docs/delta.md, "Publishing
// patches"): the device uses it only after checking its signature, that
// it makes the bundle, and that its active slot holds exactly its source.
type Patch struct {
	// URL is absolute or relative to the channel file's URL, like Bundle.
	URL string `json:"url"`
	// FromBundle or FromVersion (exactly one) is the source the patch
	// starts from: the bundle hash of a release, or (for a group tandem
	// never installed, a factory image) its version.
	FromBundle  string `json:"fromBundle,omitempty"`
	FromVersion string `json:"fromVersion,omitempty"`
	// Hash is the patch's header hash: a device uses no other file at URL.
	Hash string `json:"hash"`
}

// Selector limits a release to some devices. A device matches when its id
// is listed (or Devices is empty) AND it has every label with exactly the
// given value (or Labels is empty).
type Selector struct {
	Devices []string          `json:"devices,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// wire is the signed document as JSON.
type wire struct {
	Format     int     `json:"format"`
	Channel    string  `json:"channel"`
	Compatible string  `json:"compatible"`
	Sequence   uint64  `json:"sequence"`
	Issued     string  `json:"issued"`
	Expires    string  `json:"expires"`
	Release    Release `json:"release"`
}

// envelope is the channel file as JSON.
type envelope struct {
	Signed     string    `json:"signed"`
	Signatures []wireSig `json:"signatures"`
}

type wireSig struct {
	Algorithm string   `json:"algorithm"`
	KeyID     string   `json:"keyId"`
	Certs     []string `json:"certs,omitempty"`
	Sig       string   `json:"sig"`
}

// File is a parsed channel file: the document and its signatures, not yet
// verified.
type File struct {
	Channel *Channel
	// Signed is the exact signed bytes; Digest their SHA-256.
	Signed []byte
	Digest [32]byte
	// Signatures are those with an algorithm this build knows; Skipped
	// counts the others (ignored, as for bundles).
	Signatures []signature.Signature
	Skipped    int
}

// timeLayout is the only accepted time format: RFC 3339 in UTC, whole
// seconds.
const timeLayout = "2006-01-02T15:04:05Z"

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	labelRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	hashRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// Read reads and parses one channel file of at most MaxSize bytes.
func Read(r io.Reader) (*File, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Parse parses a channel file strictly (see the package documentation). It
// checks the shape of everything but verifies no signature.
func Parse(data []byte) (*File, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, formatErr("empty file")
	}
	if len(data) > MaxSize {
		return nil, formatErr("larger than %d bytes", MaxSize)
	}
	var env envelope
	if err := strictJSON(data, &env); err != nil {
		return nil, err
	}
	if env.Signed == "" {
		return nil, formatErr(`no "signed" document`)
	}
	signed, err := base64.StdEncoding.Strict().DecodeString(env.Signed)
	if err != nil {
		return nil, formatErr(`"signed" is not standard padded base64: %v`, err)
	}
	if base64.StdEncoding.EncodeToString(signed) != env.Signed {
		return nil, formatErr(`"signed" is not canonical base64`)
	}
	ch, err := parseSigned(signed)
	if err != nil {
		return nil, err
	}
	f := &File{Channel: ch, Signed: signed, Digest: sha256.Sum256(signed)}
	if len(env.Signatures) == 0 {
		return nil, formatErr("no signatures")
	}
	if len(env.Signatures) > MaxSignatures {
		return nil, formatErr("%d signatures (limit %d)", len(env.Signatures), MaxSignatures)
	}
	for i, ws := range env.Signatures {
		s, known, err := parseSig(ws)
		if err != nil {
			return nil, formatErr("signature %d: %v", i, err)
		}
		if !known {
			f.Skipped++
			continue
		}
		f.Signatures = append(f.Signatures, s)
	}
	return f, nil
}

// ParseDocument parses the signed document alone (its exact bytes).
func ParseDocument(signed []byte) (*Channel, error) { return parseSigned(signed) }

func parseSigned(signed []byte) (*Channel, error) {
	var w wire
	if err := strictJSON(signed, &w); err != nil {
		return nil, fmt.Errorf("signed document: %w", err)
	}
	ch := &Channel{Format: w.Format, Channel: w.Channel, Compatible: w.Compatible, Sequence: w.Sequence, Release: w.Release}
	var err error
	if ch.Issued, err = parseTime("issued", w.Issued); err != nil {
		return nil, err
	}
	if ch.Expires, err = parseTime("expires", w.Expires); err != nil {
		return nil, err
	}
	if err := ch.Validate(); err != nil {
		return nil, err
	}
	return ch, nil
}

func parseTime(name, s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil || t.Format(timeLayout) != s {
		return time.Time{}, formatErr("%s %q: want UTC time like 2026-11-25T16:00:00Z", name, s)
	}
	return t, nil
}

// ValidName checks a channel name: 1-64 of a-z 0-9 . _ -, starting with a
// letter or digit.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("channel name %q: want 1-64 of a-z 0-9 . _ -, starting with a letter or digit", name)
	}
	return nil
}

// Validate checks every field's rules (docs/integrations/channels.md).
func (c *Channel) Validate() error {
	if c.Format != Format {
		return formatErr("format %d: this tandem reads format %d", c.Format, Format)
	}
	if err := ValidName(c.Channel); err != nil {
		return formatErr("%v", err)
	}
	if err := text("compatible", c.Compatible, 256); err != nil {
		return err
	}
	if c.Sequence < 1 || c.Sequence > MaxSequence {
		return formatErr("sequence %d: want 1 to %d", c.Sequence, uint64(MaxSequence))
	}
	if c.Issued.IsZero() || c.Expires.IsZero() {
		return formatErr("issued and expires are required")
	}
	if !c.Expires.After(c.Issued) {
		return formatErr("expires %s is not after issued %s", c.Expires.Format(timeLayout), c.Issued.Format(timeLayout))
	}
	r := &c.Release
	if _, err := bundle.ParseVersion(r.Version); err != nil {
		return formatErr("release version: %v", err)
	}
	if err := checkRef("release bundle", r.Bundle); err != nil {
		return err
	}
	if len(r.Patches) > MaxPatches {
		return formatErr("%d patches (limit %d)", len(r.Patches), MaxPatches)
	}
	for i, p := range r.Patches {
		if err := p.validate(); err != nil {
			return formatErr("patch %d: %v", i, err)
		}
	}
	if !hashRE.MatchString(r.BundleHash) {
		return formatErr("release bundleHash %q: want 64 lower-case hex digits", r.BundleHash)
	}
	if r.Rollout != nil && *r.Rollout > 10000 {
		return formatErr("rollout above 100")
	}
	if s := r.Select; s != nil {
		if len(s.Devices) == 0 && len(s.Labels) == 0 {
			return formatErr("select: empty (omit it to select every device)")
		}
		for _, d := range s.Devices {
			if err := text("select device id", d, 256); err != nil {
				return err
			}
		}
		for k, v := range s.Labels {
			if !labelRE.MatchString(k) {
				return formatErr("select label %q: want 1-64 of a-z 0-9 . _ -, starting with a letter or digit", k)
			}
			if err := text("select label "+k, v, 256); err != nil {
				return err
			}
		}
	}
	return nil
}

// text checks a free-text field: 1..limit bytes of printable UTF-8.
func text(name, s string, limit int) error {
	if s == "" || len(s) > limit {
		return formatErr("%s: want 1 to %d bytes", name, limit)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return formatErr("%s %q: control character", name, s)
		}
	}
	return nil
}

func (p *Patch) validate() error {
	if err := checkRef("url", p.URL); err != nil {
		return err
	}
	switch {
	case (p.FromBundle == "") == (p.FromVersion == ""):
		return errors.New("want exactly one of fromBundle and fromVersion")
	case p.FromBundle != "" && !hashRE.MatchString(p.FromBundle):
		return fmt.Errorf("fromBundle %q: want 64 lower-case hex digits", p.FromBundle)
	case !hashRE.MatchString(p.Hash):
		return fmt.Errorf("hash %q: want 64 lower-case hex digits", p.Hash)
	}
	if p.FromVersion != "" {
		if _, err := bundle.ParseVersion(p.FromVersion); err != nil {
			return fmt.Errorf("fromVersion: %w", err)
		}
	}
	return nil
}

// checkRef accepts an absolute http(s) URL with a host, or a relative
// reference without scheme and host; no fragment either way. what names
// the field in errors.
func checkRef(what, ref string) error {
	if ref == "" || len(ref) > 2048 {
		return formatErr("%s: want a URL of 1 to 2048 bytes", what)
	}
	u, err := url.Parse(ref)
	if err != nil {
		return formatErr("%s %q: %v", what, ref, err)
	}
	switch {
	case strings.ContainsAny(ref, " \t\r\n\\"):
		return formatErr("%s %q: spaces or backslashes", what, ref)
	case u.Fragment != "" || strings.Contains(ref, "#"):
		return formatErr("%s %q: fragment not allowed", what, ref)
	case u.Scheme == "" && u.Host == "" && !strings.HasPrefix(ref, "//"):
		if u.Path == "" {
			return formatErr("%s %q: no path", what, ref)
		}
		return nil
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil:
		return nil
	}
	return formatErr("%s %q: want an http(s) URL with a host (no user info) or a relative reference", what, ref)
}

// Resolve returns the bundle URL: Release.Bundle, resolved against the URL
// the channel file was fetched from when it is relative.
func (c *Channel) Resolve(channelURL string) (string, error) {
	return resolve(channelURL, c.Release.Bundle)
}

// ResolvePatches returns the release's patches with their URLs resolved
// like Resolve's.
func (c *Channel) ResolvePatches(channelURL string) ([]Patch, error) {
	out := make([]Patch, 0, len(c.Release.Patches))
	for _, p := range c.Release.Patches {
		u, err := resolve(channelURL, p.URL)
		if err != nil {
			return nil, err
		}
		p.URL = u
		out = append(out, p)
	}
	return out, nil
}

func resolve(channelURL, r string) (string, error) {
	ref, err := url.Parse(r)
	if err != nil {
		return "", formatErr("reference %q: %v", r, err)
	}
	if ref.IsAbs() {
		return ref.String(), nil
	}
	base, err := url.Parse(channelURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return "", fmt.Errorf("channel url %q: want an http(s) URL to resolve the relative reference %q", channelURL, r)
	}
	return base.ResolveReference(ref).String(), nil
}

var algNames = map[string]signature.Algorithm{
	"ed25519":           signature.Ed25519,
	"ecdsa-p256-sha256": signature.ECDSAP256SHA256,
}

// AlgorithmName is the name of a in channel files.
func AlgorithmName(a signature.Algorithm) string {
	for n, v := range algNames {
		if v == a {
			return n
		}
	}
	return a.String()
}

func parseSig(ws wireSig) (signature.Signature, bool, error) {
	var s signature.Signature
	alg, known := algNames[ws.Algorithm]
	if ws.Algorithm == "" {
		return s, false, errors.New("no algorithm")
	}
	id, err := hex.DecodeString(ws.KeyID)
	if err != nil || len(id) != 32 || ws.KeyID != strings.ToLower(ws.KeyID) {
		return s, false, fmt.Errorf("keyId %q: want 64 lower-case hex digits", ws.KeyID)
	}
	if s.Sig, err = base64.StdEncoding.Strict().DecodeString(ws.Sig); err != nil || len(s.Sig) == 0 {
		return s, false, fmt.Errorf("sig: want standard padded base64")
	}
	if len(s.Sig) > signature.MaxSigSize {
		return s, false, fmt.Errorf("sig of %d bytes (limit %d)", len(s.Sig), signature.MaxSigSize)
	}
	if len(ws.Certs) > signature.MaxCerts {
		return s, false, fmt.Errorf("%d certificates (limit %d)", len(ws.Certs), signature.MaxCerts)
	}
	for i, c := range ws.Certs {
		der, err := base64.StdEncoding.Strict().DecodeString(c)
		if err != nil || len(der) == 0 {
			return s, false, fmt.Errorf("certificate %d: want standard padded base64 DER", i)
		}
		s.Certs = append(s.Certs, der)
	}
	s.Algorithm = alg
	copy(s.KeyID[:], id)
	return s, known, nil
}

// strictJSON decodes exactly one JSON object into v: valid UTF-8, no
// unknown members, no member twice, nothing after it.
func strictJSON(data []byte, v any) error {
	if !utf8.Valid(data) {
		return formatErr("not valid UTF-8")
	}
	if err := noDuplicates(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return formatErr("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return formatErr("data after the JSON object")
	}
	return nil
}

// noDuplicates walks the JSON tokens and refuses an object with a member
// name twice (encoding/json would silently keep the last one).
func noDuplicates(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		obj    bool
		keys   map[string]bool
		expect bool // next token in an object is a key
	}
	var stack []*frame
	for depth := 0; ; {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return formatErr("%v", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if depth++; depth > 16 {
					return formatErr("nested deeper than 16 levels")
				}
				if top != nil && top.obj {
					top.expect = true
				}
				stack = append(stack, &frame{obj: d == '{', keys: map[string]bool{}, expect: true})
			case '}', ']':
				depth--
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if top != nil && top.obj {
			if top.expect {
				k := tok.(string)
				if top.keys[k] {
					return formatErr("member %q twice", k)
				}
				top.keys[k] = true
				top.expect = false
			} else {
				top.expect = true
			}
		}
	}
}

// Signer is one key that signs a channel file, with its certificate chain
// (DER, leaf first; empty for a raw key).
type Signer struct {
	Key   crypto.Signer
	Chain [][]byte
}

// Sign validates c and writes the channel file signed by every signer.
// The signed document is c as compact JSON; the envelope is indented.
func Sign(c *Channel, signers []Signer) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(signers) == 0 {
		return nil, errors.New("sign channel: no key")
	}
	signed, err := json.Marshal(wire{Format: c.Format, Channel: c.Channel, Compatible: c.Compatible, Sequence: c.Sequence,
		Issued: c.Issued.UTC().Format(timeLayout), Expires: c.Expires.UTC().Format(timeLayout), Release: c.Release})
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(signed)
	env := envelope{Signed: base64.StdEncoding.EncodeToString(signed)}
	for _, s := range signers {
		sig, err := signature.SignDigest(s.Key, s.Chain, Domain, digest)
		if err != nil {
			return nil, fmt.Errorf("sign channel: %w", err)
		}
		ws := wireSig{Algorithm: AlgorithmName(sig.Algorithm), KeyID: hex.EncodeToString(sig.KeyID[:]),
			Sig: base64.StdEncoding.EncodeToString(sig.Sig)}
		for _, c := range sig.Certs {
			ws.Certs = append(ws.Certs, base64.StdEncoding.EncodeToString(c))
		}
		env.Signatures = append(env.Signatures, ws)
	}
	out, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, err
	}
	out = append(out, '\n')
	if len(out) > MaxSize {
		return nil, fmt.Errorf("sign channel: the file would have %d bytes (limit %d)", len(out), MaxSize)
	}
	if _, err := Parse(out); err != nil {
		return nil, fmt.Errorf("sign channel: the written file does not parse: %w", err)
	}
	return out, nil
}

// Verify checks the signatures under trust. Certificate validity is checked
// as signature.TimePolicy says, with the document's issued time in the role
// of a bundle's creation time.
func (f *File) Verify(trust *signature.TrustStore, now, floor time.Time) (signature.Signer, error) {
	if len(f.Signatures) == 0 {
		return signature.Signer{}, fmt.Errorf("%w: none of the %d signatures has an algorithm this tandem knows", signature.ErrUntrusted, f.Skipped)
	}
	who, err := signature.VerifyDigest(f.Signatures, trust, Domain, f.Digest,
		signature.TimePolicy{Now: now, Floor: floor, Created: f.Channel.Issued})
	if err != nil {
		return who, fmt.Errorf("channel signature: %w", err)
	}
	return who, nil
}
