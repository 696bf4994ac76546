package install

import (
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/patch"
)

// PatchRef is a patch that the fleet side offers with a bundle (a channel's
// signed list, hawkBit artifacts, a Memfault release, a Mender
// descriptor; docs/delta.md, "Publishing patches"): where it is and which
// source it claims to start from. The claim only chooses which patch to
// try: the patch's signature, the bundle it makes and the source slot are
// checked as for a patch found next to the bundle.
type PatchRef struct {
	URL string `json:"url"`
	// FromBundle and FromVersion are the source the patch claims: the
	// bundle hash of the release it starts from, or that release's
	// version. Both empty: the file name of URL says (patch.ParseName).
	FromBundle  string `json:"fromBundle,omitempty"`
	FromVersion string `json:"fromVersion,omitempty"`
	// Hash, when given, is the patch's header hash: another patch at URL is
	// not used.
	Hash string `json:"hash,omitempty"`
}

// Limits of an offer (it comes from a fleet server or a channel file).
const (
	MaxPatchOffers = 64      // patches listed for one bundle
	MaxPatchURL    = 8 << 10 // bytes of one patch URL
	// maxPatchTries bounds the patches one install opens (their headers
	// are fetched and verified) before it gives up on patches.
	maxPatchTries = 3
)

// Claim returns the source r claims: its FromBundle and FromVersion, or
// what its file name says when both are empty.
func (r PatchRef) Claim() (fromBundle, fromVersion string) {
	if r.FromBundle != "" || r.FromVersion != "" {
		return r.FromBundle, r.FromVersion
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return "", ""
	}
	h, v, _ := patch.ParseName(path.Base(u.Path))
	return h, v
}

// CheckPatchRefs checks an offer: at most MaxPatchOffers patches, each an
// http(s) URL of at most MaxPatchURL bytes that claims a source (a bundle
// hash or a version), with a well-formed hash when one is given. Adapters
// call it on what their server sent before they keep it in a job.
func CheckPatchRefs(refs []PatchRef) error {
	if len(refs) > MaxPatchOffers {
		return fmt.Errorf("%d patches offered (at most %d)", len(refs), MaxPatchOffers)
	}
	for _, r := range refs {
		if len(r.URL) > MaxPatchURL {
			return fmt.Errorf("patch url of %d bytes (at most %d)", len(r.URL), MaxPatchURL)
		}
		if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("patch url %.128q: want an http(s) URL", r.URL)
		}
		h, v := r.Claim()
		if h == "" && v == "" {
			return fmt.Errorf("patch %.128q claims no source: give fromBundle or fromVersion, or name it <bundle hash>%s or version-<version>%s", r.URL, patch.Ext, patch.Ext)
		}
		if h != "" {
			if _, err := bundle.ParseHash(h); err != nil {
				return fmt.Errorf("patch %.128q: fromBundle: %w", r.URL, err)
			}
		}
		if len(v) > 128 {
			return fmt.Errorf("patch %.128q: fromVersion of %d bytes (at most 128)", r.URL, len(v))
		}
		if r.Hash != "" {
			if _, err := bundle.ParseHash(r.Hash); err != nil {
				return fmt.Errorf("patch %.128q: hash: %w", r.URL, err)
			}
		}
	}
	return nil
}

// NamedPatches is the offer a fleet side makes by naming artifacts as
// `tandem bundle delta` names patches (<bundle hash>.tpatch,
// version-<version>.tpatch; hawkBit chunks, Memfault releases): the
// artifacts (file name and URL, in pairs) with such a name that pass
// CheckPatchRefs, at most MaxPatchOffers. skip, when not nil, hears why a
// patch-named artifact is left out.
func NamedPatches(artifacts [][2]string, skip func(string)) []PatchRef {
	var refs []PatchRef
	for _, a := range artifacts {
		from, version, ok := patch.ParseName(a[0])
		if !ok {
			continue
		}
		r := PatchRef{URL: a[1], FromBundle: from, FromVersion: version}
		err := CheckPatchRefs([]PatchRef{r})
		if err == nil && len(refs) == MaxPatchOffers {
			err = fmt.Errorf("more than %d patches offered", MaxPatchOffers)
		}
		if err != nil {
			if skip != nil {
				skip(fmt.Sprintf("artifact %.64q is not used as a patch: %v", a[0], err))
			}
			continue
		}
		refs = append(refs, r)
	}
	return refs
}

// patchCandidates returns the patches to try, in order, for a source
// group installed from bundle hash (or at version, for a group tandem
// never installed), and why there are none. Without an offer the device
// looks next to the bundle (patch.URLs); with one it uses only the
// offered patches that claim its source, those naming its bundle hash
// first.
func patchCandidates(o Options, hash, version string) ([]PatchRef, string) {
	if len(o.Patches) == 0 {
		urls := patch.URLs(o.Source, hash, version)
		if len(urls) == 0 {
			return nil, "no patch to look for: the active group has no recorded bundle hash or version"
		}
		return []PatchRef{{URL: urls[0]}}, ""
	}
	if err := CheckPatchRefs(o.Patches); err != nil {
		return nil, "the offered patches are not usable: " + oneLine(err)
	}
	var byHash, byVersion []PatchRef
	for _, r := range o.Patches {
		h, v := r.Claim()
		switch {
		case h != "" && h == hash:
			byHash = append(byHash, r)
		case v != "" && v == version:
			byVersion = append(byVersion, r)
		}
	}
	if c := append(byHash, byVersion...); len(c) > 0 {
		return c, ""
	}
	var src []string
	if hash != "" {
		src = append(src, "bundle "+hash)
	}
	if version != "" {
		src = append(src, "version "+version)
	}
	return nil, fmt.Sprintf("none of the %d patches offered with the bundle starts from this device's source (%s)", len(o.Patches), strings.Join(src, ", "))
}

// sameOrigin reports whether URLs a and b have the same scheme, host and
// port: the install's --header headers go to the bundle's origin only.
func sameOrigin(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host)
}
