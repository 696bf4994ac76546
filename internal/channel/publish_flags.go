package channel

import (
	"errors"
	"fmt"

	"github.com/tandem-ota/tandem/internal/signature"
)

// PublishFlags are channel publish's options as its command line gives
// them (docs/cli.md): Check turns them into a Publication, Load adds its
// signers and trust.
type PublishFlags struct {
	Channel, Bundle, URL, Relative, Out, Rollout, Expires, Patches string
	Keys, Trust, Selects, Devices                                  []string
	Sequence                                                       uint64
}

// Check checks the options that need no file (its errors name the flags):
// the required ones, the bundle's URL (--url or --relative, not both), the
// validity, the rollout and the selector; it returns the Publication
// without signers and trust.
func (f *PublishFlags) Check() (Publication, error) {
	p := Publication{Out: f.Out, Channel: f.Channel, BundleFile: f.Bundle, Sequence: f.Sequence,
		Release: Release{Bundle: f.URL}, PatchDir: f.Patches}
	if f.Channel == "" || f.Bundle == "" || f.Out == "" || len(f.Keys) == 0 {
		return p, errors.New("--channel, --bundle, --key and -o are required")
	}
	if f.URL != "" && f.Relative != "" {
		return p, errors.New("--url and --relative exclude each other")
	}
	if f.Relative != "" {
		p.Release.Bundle = f.Relative
	}
	var err error
	if p.Validity, err = ParseValidity(f.Expires); err != nil {
		return p, fmt.Errorf("--expires %w", err)
	}
	if p.Release.Rollout, err = ParseRollout(f.Rollout); err != nil {
		return p, err
	}
	if p.Release.Select, err = NewSelector(f.Devices, f.Selects); err != nil {
		return p, fmt.Errorf("--select %w", err)
	}
	return p, nil
}

// Load loads p's signers from keys (PATH[:CHAIN], LoadSigners) and, when
// trust files are given, the trust that verifies the bundle (otherwise
// Publish derives it from the signers).
func (p *Publication) Load(keys, trust []string) error {
	var err error
	if p.Signers, err = LoadSigners(keys); err != nil {
		return err
	}
	if len(trust) > 0 {
		p.Trust, err = signature.LoadTrust("", trust)
	}
	return err
}
