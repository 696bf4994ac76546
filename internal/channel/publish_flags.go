package channel

import (
	"errors"
	"fmt"

	"github.com/spf13/pflag"
	"github.com/tandem-ota/tandem/internal/bundle/spec"
	"github.com/tandem-ota/tandem/internal/signature"
)

// PublishFlags are channel publish's options as its command line gives
// them (docs/cli.md): Check turns them into a Publication, Load adds its
// signers and trust.
type PublishFlags struct {
	Channel, Bundle, URL, Relative, Out, Rollout, Expires, Patches, Cert string
	Keys, Trust, Selects, Devices                                        []string
	Sequence                                                             uint64
	JSON                                                                 bool
}

// Define adds the flags to fs.
func (f *PublishFlags) Define(fs *pflag.FlagSet) {
	fs.StringVar(&f.Channel, "channel", "", "channel name (a-z 0-9 . _ -; devices check it)")
	fs.StringVar(&f.Bundle, "bundle", "", "the bundle file to publish (verified first)")
	fs.StringVar(&f.URL, "url", "", "absolute http(s) URL of the bundle")
	fs.StringVar(&f.Relative, "relative", "", "bundle URL relative to the channel file's URL (default: the bundle's file name)")
	fs.StringArrayVar(&f.Keys, "key", nil, "signing key PATH[:CHAIN] (PEM; repeatable)")
	fs.StringVar(&f.Cert, "cert", "", "X.509 chain (PEM, leaf first) of the single --key")
	fs.StringArrayVar(&f.Trust, "trust", nil, "public key or certificate that must verify the bundle (default: the --key public keys)")
	fs.StringVar(&f.Rollout, "rollout", "", "share of selected devices that install it, in percent (e.g. 10 or 2.5; default 100)")
	fs.StringArrayVar(&f.Selects, "select", nil, "only devices with label LABEL=VALUE (repeatable: all must match)")
	fs.StringArrayVar(&f.Devices, "select-device", nil, "only this device id (repeatable: any of them)")
	fs.Uint64Var(&f.Sequence, "sequence", 0, "sequence number (default: automatic, see above)")
	fs.StringVar(&f.Expires, "expires", "30d", "validity: devices refuse the file after this long (e.g. 30d, 12h)")
	fs.StringVarP(&f.Out, "output", "o", "", "the channel file to write")
	fs.StringVar(&f.Patches, "patches", "", "directory of the bundle's patches to list (default: BUNDLE.patches if it exists; - for none)")
	fs.BoolVar(&f.JSON, "json", false, "print the written file's contents as JSON")
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
	var err error
	if f.Keys, err = spec.WithCert(f.Keys, f.Cert); err != nil {
		return p, err
	}
	if f.URL != "" && f.Relative != "" {
		return p, errors.New("--url and --relative exclude each other")
	}
	if f.Relative != "" {
		p.Release.Bundle = f.Relative
	}
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
