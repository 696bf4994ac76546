package signature

import "os"

// LoadTrust assembles the trust store of one verification: the keys and
// certificates of the keys directory dir (see LoadTrustDir; "" reads none,
// and a directory that does not exist holds none: a device may have no keys
// yet) and those of the extra trust files an operator named (see AddFiles).
// An empty result is no error here: Verify refuses it with ErrNoTrust.
func LoadTrust(dir string, files []string) (*TrustStore, error) {
	t := &TrustStore{}
	if dir != "" {
		d, err := LoadTrustDir(dir)
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		if d != nil {
			t = d
		}
	}
	if err := t.AddFiles(files); err != nil {
		return nil, err
	}
	return t, nil
}
