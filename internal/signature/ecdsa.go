package signature

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"math/big"
)

// ecdsaSig is the ASN.1 form of an ECDSA signature.
type ecdsaSig struct {
	R, S *big.Int
}

// canonicalECDSA checks that sig is the canonical DER encoding of a
// SEQUENCE of two positive INTEGERs with no trailing bytes: re-encoding the
// parsed values must give sig back. (crypto/ecdsa is strict too; this keeps
// the rule explicit and independent of it.) Range checks against the curve
// order are ecdsa.VerifyASN1's.
func canonicalECDSA(sig []byte) error {
	var v ecdsaSig
	rest, err := asn1.Unmarshal(sig, &v)
	if err != nil {
		return errors.New("ecdsa signature: malformed DER")
	}
	if len(rest) != 0 {
		return errors.New("ecdsa signature: trailing bytes after the DER")
	}
	if v.R.Sign() <= 0 || v.S.Sign() <= 0 {
		return errors.New("ecdsa signature: r or s not positive")
	}
	again, err := asn1.Marshal(v)
	if err != nil || !bytes.Equal(again, sig) {
		return errors.New("ecdsa signature: non-canonical DER")
	}
	return nil
}
