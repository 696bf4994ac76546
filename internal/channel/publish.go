package channel

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/patch"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/signature"
)

// This file is the publisher's side (`tandem channel publish`, `inspect`
// and `verify`): what a release engineer's tools do with channel files.

// Publication is a channel file to publish.
type Publication struct {
	// Out is the channel file to write (atomically). When it exists it must
	// be a valid file of the same channel, and its sequence is a floor.
	Out     string
	Channel string
	// BundleFile is the bundle to publish. It is verified first, as a
	// device would (its signature under Trust, every chunk); its hash,
	// version and compatible go into the file.
	BundleFile string
	// Release gives the bundle reference (Bundle; "" = BundleFile's base
	// name, resolved against the channel file's URL), Rollout and Select;
	// Publish fills in Version and BundleHash.
	Release Release
	// Sequence is the file's sequence number: it must be above the
	// existing file's. 0 picks the larger of the Unix time in seconds and
	// the existing file's sequence + 1, so that CI needs no state.
	Sequence uint64
	// Validity is how long devices accept the file after it was issued.
	Validity time.Duration
	Signers  []Signer
	// Trust verifies the bundle. Nil: the public keys of the Signers that
	// have no certificate chain (a release key usually signs both).
	Trust *signature.TrustStore
	// Now is the issue time (zero: the clock), truncated to seconds.
	Now time.Time
	// PatchDir holds the bundle's patches (`tandem bundle delta`): each
	// *.tpatch in it is verified and listed in the release, with its URL
	// next to the bundle's. "" = BundleFile + patch.Dir when it exists;
	// "-" = none.
	PatchDir string
}

// Published is the channel file Publish wrote.
type Published struct {
	File *File
	// BundleSigner is who signed the bundle the file pins.
	BundleSigner signature.Signer
}

// Publish verifies the bundle, makes the next sequence number, signs the
// channel file and writes it (nothing is written when any step fails).
func Publish(p Publication) (*Published, error) {
	trust := p.Trust
	if trust == nil {
		trust = &signature.TrustStore{}
		for _, s := range p.Signers {
			if s.Chain != nil {
				continue
			}
			pub, err := signature.PublicKeyPEM(s.Key)
			if err != nil {
				return nil, err
			}
			if err := trust.Add(pub); err != nil {
				return nil, err
			}
		}
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC().Truncate(time.Second)
	var who signature.Signer
	h, hash, err := bundle.VerifyFile(p.BundleFile, bundle.TrustVerifier(trust, now, &who))
	if err != nil {
		return nil, err
	}
	rel := p.Release
	if rel.Bundle == "" {
		rel.Bundle = filepath.Base(p.BundleFile)
	}
	rel.Version, rel.BundleHash = h.Version, hash.String()
	if rel.Patches, err = listPatches(p.PatchDir, p.BundleFile, rel.Bundle, hash, trust, now); err != nil {
		return nil, err
	}
	c := &Channel{Format: Format, Channel: p.Channel, Compatible: h.Compatible,
		Issued: now, Expires: now.Add(p.Validity), Release: rel, Sequence: p.Sequence}
	if c.Sequence == 0 {
		c.Sequence = uint64(now.Unix())
	}
	if old, err := os.ReadFile(p.Out); err == nil {
		f, err := Parse(old)
		if err != nil {
			return nil, fmt.Errorf("existing %s: %w", p.Out, err)
		}
		if f.Channel.Channel != p.Channel {
			return nil, fmt.Errorf("existing %s is channel %q, not %q", p.Out, f.Channel.Channel, p.Channel)
		}
		if p.Sequence == 0 {
			c.Sequence = max(c.Sequence, f.Channel.Sequence+1)
		} else if p.Sequence <= f.Channel.Sequence {
			return nil, fmt.Errorf("%w: --sequence %d is not above the existing file's %d: devices would refuse it", ErrReplay, p.Sequence, f.Channel.Sequence)
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	b, err := Sign(c, p.Signers)
	if err != nil {
		return nil, err
	}
	f, err := Parse(b)
	if err != nil {
		return nil, err
	}
	if err := rootfs.WriteHostFile(p.Out, b, 0o644); err != nil {
		return nil, err
	}
	return &Published{File: f, BundleSigner: who}, nil
}

// NewSelector makes the selector of a release from device ids (any of
// them) and LABEL=VALUE pairs (all of them); nil when both are empty.
func NewSelector(devices, labels []string) (*Selector, error) {
	if len(devices) == 0 && len(labels) == 0 {
		return nil, nil
	}
	s := &Selector{Devices: devices}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want LABEL=VALUE", l)
		}
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels[k] = v
	}
	return s, nil
}

// ParseValidity parses how long a published file stays valid: a number of
// days ("30d", 1 to 3650) or a positive Go duration ("12h").
func ParseValidity(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d <= 0 || d > 3650 {
			return 0, fmt.Errorf("%q: want 1d to 3650d", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration such as 30d or 12h", s)
	}
	return d, nil
}

// Load reads a channel file from a path or an http(s) URL (a GET that must
// answer 200 within a minute), at most MaxSize bytes.
func Load(name string) (*File, error) {
	var r io.Reader
	if strings.HasPrefix(name, "http://") || strings.HasPrefix(name, "https://") {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, name, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: HTTP %s", name, resp.Status)
		}
		r = resp.Body
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	f, err := Read(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

// CheckOptions say what CheckFile checks a file against.
type CheckOptions struct {
	Trust *signature.TrustStore
	// Channel and Compatible the file must carry ("": the file's own).
	Channel, Compatible string
	// MinSequence refuses a file whose sequence is below it (0: none).
	MinSequence uint64
	// AllowExpired checks the signature but not the expiry.
	AllowExpired bool
	Now          time.Time
}

// CheckFile verifies f as a device running `tandem watch` would (Accept),
// for a publisher who has no device state: the name and compatible default
// to the file's own, and a minimum sequence stands in for the newest file
// seen (a file at exactly that sequence is accepted).
func CheckFile(f *File, o CheckOptions) (*Accepted, error) {
	p := Policy{Trust: o.Trust, Channel: o.Channel, Compatible: o.Compatible, Now: o.Now}
	if p.Channel == "" {
		p.Channel = f.Channel.Channel
	}
	if p.Compatible == "" {
		p.Compatible = f.Channel.Compatible
	}
	if o.MinSequence > 0 {
		p.Last = &Seen{Sequence: o.MinSequence, Digest: "-"}
		if f.Channel.Sequence == o.MinSequence {
			p.Last.Digest = hex.EncodeToString(f.Digest[:])
		}
	}
	if o.AllowExpired {
		p.Now, p.Floor = f.Channel.Issued, f.Channel.Issued.Add(-time.Second)
	}
	return Accept(f, p)
}

// CheckBundle verifies the bundle file name (its signature under trust at
// now, every chunk) and that it is the bundle f pins.
func (f *File) CheckBundle(name string, trust *signature.TrustStore, now time.Time) error {
	_, hash, err := bundle.VerifyFile(name, bundle.TrustVerifier(trust, now, nil))
	if err != nil {
		return err
	}
	if hash.String() != f.Channel.Release.BundleHash {
		return fmt.Errorf("%w: %s has bundle hash %s, the channel pins %s", signature.ErrUntrusted, name, hash, f.Channel.Release.BundleHash)
	}
	return nil
}

// Info describes a channel file as `tandem channel inspect --json` prints
// it (docs/cli.md).
type Info struct {
	Channel    string              `json:"channel"`
	Compatible string              `json:"compatible"`
	Sequence   uint64              `json:"sequence"`
	Issued     time.Time           `json:"issued"`
	Expires    time.Time           `json:"expires"`
	Release    Release             `json:"release"`
	Digest     string              `json:"digest"`
	Signers    []bundle.SignerInfo `json:"signers"`
	// Verified says who signed, when the file was verified.
	Verified string `json:"verified,omitempty"`
}

// Info describes f (verified says by whom, "" when it was not).
func (f *File) Info(verified string) Info {
	c := f.Channel
	ci := Info{Channel: c.Channel, Compatible: c.Compatible, Sequence: c.Sequence, Issued: c.Issued, Expires: c.Expires,
		Release: c.Release, Digest: hex.EncodeToString(f.Digest[:]), Signers: []bundle.SignerInfo{}, Verified: verified}
	for _, s := range f.Signatures {
		ci.Signers = append(ci.Signers, bundle.SignerInfo{Algorithm: AlgorithmName(s.Algorithm), KeyID: hex.EncodeToString(s.KeyID[:]), Certificates: len(s.Certs)})
	}
	return ci
}

// listPatches lists the patches in dir (see Publication.PatchDir) for the
// release whose bundle has hash and is published at bundleRef: each must
// be signed under trust and make this bundle; the source it starts from
// comes from its file name (patch.ParseName), its URL is
// bundleRef + patch.Dir + "/" + name.
func listPatches(dir, bundleFile, bundleRef string, hash bundle.Hash, trust *signature.TrustStore, now time.Time) ([]Patch, error) {
	explicit := dir != ""
	switch dir {
	case "-":
		return nil, nil
	case "":
		dir = bundleFile + patch.Dir
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if !explicit && os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("patches: %w", err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), patch.Ext) && e.Type().IsRegular() {
			names = append(names, filepath.Join(dir, e.Name()))
		}
	}
	base, _, _ := strings.Cut(bundleRef, "?")
	var out []Patch
	for _, name := range names {
		fromBundle, fromVersion, ok := patch.ParseName(filepath.Base(name))
		if !ok {
			return nil, fmt.Errorf("patch %s: want a name <bundle hash>%s or version-<version>%s, as tandem bundle delta writes", name, patch.Ext, patch.Ext)
		}
		head, err := readPatchHead(name)
		if err != nil {
			return nil, err
		}
		if err := patch.Verify(head.Header, head.Hash, head.Signatures, trust, now); err != nil {
			return nil, fmt.Errorf("patch %s: %w", name, err)
		}
		if head.Header.BundleHash != hash {
			return nil, fmt.Errorf("patch %s makes bundle %s, not the published %s", name, head.Header.BundleHash, hash)
		}
		out = append(out, Patch{URL: base + patch.Dir + "/" + url.PathEscape(filepath.Base(name)),
			FromBundle: fromBundle, FromVersion: fromVersion, Hash: head.Hash.String()})
	}
	if len(out) > MaxPatches {
		return nil, fmt.Errorf("%d patches in %s (a channel lists at most %d): keep those of the releases still in the field", len(out), dir, MaxPatches)
	}
	return out, nil
}

// readPatchHead reads the header of the patch file name and checks that
// the file has the size it describes.
func readPatchHead(name string) (*patch.Head, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head, err := patch.ReadHead(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("patch %s: %w", name, err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != head.Size() {
		return nil, fmt.Errorf("patch %s: not the %d bytes its header describes", name, head.Size())
	}
	return head, nil
}
