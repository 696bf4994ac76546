package channel

import (
	"fmt"

	"github.com/tandem-ota/tandem/internal/signature"
)

// LoadSigners loads signing keys given as PATH[:CHAIN] (channel publish's
// --key, as signature.LoadSigningKeys reads them) as channel signers. On an
// error it returns the signers of the keys before the failing one.
func LoadSigners(keys []string) ([]Signer, error) {
	ks, err := signature.LoadSigningKeys(keys)
	var ss []Signer
	for _, k := range ks {
		ss = append(ss, Signer{Key: k.Key, Chain: k.Chain})
	}
	return ss, err
}

// VerifyFile is what `tandem channel verify` checks: it loads the channel
// file name (a path or an http(s) URL, Load), verifies it as a device would
// (CheckFile; its errors name the file) and, when bundleFile is not "",
// that bundleFile is the bundle the channel pins, verified under the same
// trust (CheckBundle). It returns the file and who signed it.
func VerifyFile(name string, o CheckOptions, bundleFile string) (*File, *Accepted, error) {
	f, err := Load(name)
	if err != nil {
		return nil, nil, err
	}
	acc, err := CheckFile(f, o)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if bundleFile != "" {
		if err := f.CheckBundle(bundleFile, o.Trust, o.Now); err != nil {
			return nil, nil, err
		}
	}
	return f, acc, nil
}

// ParseRollout parses a release's rollout as channel publish's --rollout
// gives it (ParsePercent); "" is nil, every selected device.
func ParseRollout(s string) (*Percent, error) {
	if s == "" {
		return nil, nil
	}
	p, err := ParsePercent(s)
	if err != nil {
		return nil, err
	}
	return &p, nil
}
