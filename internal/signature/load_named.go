package signature

import "os"

// LoadTrustNamed is LoadTrust for a keys directory an operator named (as
// channel verify's --keys-dir): one that does not exist is an error, not
// an empty store.
func LoadTrustNamed(dir string, files []string) (*TrustStore, error) {
	if dir != "" {
		d, err := os.Open(dir)
		if err != nil {
			return nil, err
		}
		d.Close()
	}
	return LoadTrust(dir, files)
}
