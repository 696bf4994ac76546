package channel

import "github.com/tandem-ota/tandem/internal/signature"

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
