package mender

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/install"
)

// MaxDescriptor bounds a descriptor file: it is a few hundred bytes.
const MaxDescriptor = 64 << 10

// Descriptor is the small JSON file an artifact may carry instead of the
// bundle: the module then installs the bundle from URL by delta. The bundle
// must still be signed by a key the device trusts; BundleHash pins which
// bundle (docs/integrations/mender.md).
type Descriptor struct {
	URL        string `json:"url"`
	BundleHash string `json:"bundleHash"`
	// Version, when given, must be the bundle's version.
	Version string `json:"version,omitempty"`
	// Patches are the bundle's patches (docs/delta.md, "Publishing
	// patches"): a device whose source one of them starts from uses it.
	Patches []install.PatchRef `json:"patches,omitempty"`
}

// ParseDescriptor reads a descriptor strictly: at most MaxDescriptor bytes,
// one JSON object, no unknown fields, an http(s) URL and a bundle hash.
func ParseDescriptor(r io.Reader) (*Descriptor, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxDescriptor+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxDescriptor {
		return nil, fmt.Errorf("%w: descriptor is larger than %d bytes", ErrArtifact, MaxDescriptor)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d Descriptor
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: descriptor: %w", ErrArtifact, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: descriptor: data after the JSON object", ErrArtifact)
	}
	u, err := url.Parse(d.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: descriptor: url %q is not an http(s) URL", ErrArtifact, d.URL)
	}
	if _, err := bundle.ParseHash(d.BundleHash); err != nil {
		return nil, fmt.Errorf("%w: descriptor: bundleHash: %w", ErrArtifact, err)
	}
	if len(d.Patches) == 0 {
		d.Patches = nil // "patches": [] is no offer
	}
	if err := install.CheckPatchRefs(d.Patches); err != nil {
		return nil, fmt.Errorf("%w: descriptor: %w", ErrArtifact, err)
	}
	return &d, nil
}
