package signature

import "os"

// ReadDetached reads a signature made elsewhere from sigFile and its
// signer from pubFile (a PEM public key) or, when chainFile is not "", from
// chainFile (a PEM certificate chain, leaf first) — the files `tandem
// bundle attach` takes — and returns the function that checks the
// signature over a bundle hash and makes it a Signature (Detached).
func ReadDetached(sigFile, pubFile, chainFile string) (func(bundleHash [32]byte) (Signature, error), error) {
	raw, err := os.ReadFile(sigFile)
	if err != nil {
		return nil, err
	}
	var chain [][]byte
	var pubPEM []byte
	if chainFile != "" {
		if chain, err = ReadCertChain(chainFile); err != nil {
			return nil, err
		}
	} else if pubPEM, err = os.ReadFile(pubFile); err != nil {
		return nil, err
	}
	return func(h [32]byte) (Signature, error) { return Detached(raw, pubPEM, chain, h) }, nil
}
