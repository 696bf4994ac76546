package signature

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Errors of Verify, for errors.Is. When several signatures fail, the error
// is the most specific one: ErrBadSignature, then ErrExpired, then
// ErrUntrusted.
var (
	// ErrNoTrust: the trust store is empty, so nothing can verify; the
	// bundle is refused (verification fails closed).
	ErrNoTrust = errors.New("signature: no trusted keys or certificates (empty trust store)")
	// ErrUnsigned: the bundle carries no signature.
	ErrUnsigned = errors.New("signature: bundle is not signed")
	// ErrUntrusted: no signature is by a trusted key or chains to a trusted
	// certificate (unknown keys, unknown roots, missing intermediates,
	// certificates not allowed to sign bundles).
	ErrUntrusted = errors.New("signature: no signature by a trusted key")
	// ErrBadSignature: a signature that the device can check does not
	// verify (one by a trusted key, or one carrying a certificate, whose
	// leaf key is always known): wrong hash, damaged signature bytes, an
	// algorithm that does not match the key; or a signature is not
	// canonical (Signature.Check: unknown algorithm, high-s ECDSA,
	// certificates that do not parse or do not form the carried chain); or
	// there are more than MaxSignatures. Any one such signature makes
	// Verify fail, even beside a valid one.
	ErrBadSignature = errors.New("signature: invalid signature by a trusted key")
	// ErrExpired: a certificate chain to a trusted root and the signature
	// are fine, but a certificate is not valid at the time TimePolicy chose.
	ErrExpired = errors.New("signature: certificate not valid at the checked time")
)

// TimePolicy says which instant certificate validity is checked at, for
// devices whose clock may be wrong (no real-time clock: they boot in 1970).
//
//   - Now after Floor: the clock has been set (it is later than anything
//     this build could have been made before), so certificates are checked
//     at Now.
//   - Otherwise the clock is not trustworthy, and certificates are checked
//     at Created, the bundle's creation time from its header. The header is
//     covered by the bundle hash, so Created is as authentic as the
//     signature itself.
//   - Created unknown too (the zero time.Time, or the Unix epoch, which is
//     what time.Unix(0, 0) gives for an unset header field): validity
//     periods are not checked. Verify reports it: Signer.TimeChecked is
//     false. The chain must still verify at some single instant (crypto/x509
//     has no "ignore time" switch, so Verify tries the instants at which the
//     chain's certificates become valid).
//
// The zero Now means time.Now(); the zero Floor means DefaultFloor(). So the
// zero TimePolicy checks at the real clock when it looks set.
//
// Note that falling back to Created trusts the signer's own statement of
// time: the holder of an expired (but not removed) certificate key can still
// sign bundles with an old Created that devices without a clock accept.
type TimePolicy struct {
	Now     time.Time
	Floor   time.Time
	Created time.Time
}

// DefaultFloor is the build-time floor: 2026-01-01 00:00:00 UTC, a date
// before this package was written, so a clock showing anything earlier has
// not been set. Raising it with each release tightens the check.
func DefaultFloor() time.Time { return time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC) }

// TimeSource says where the instant certificates were checked at came from.
type TimeSource uint8

const (
	// TimeNotChecked: validity periods were not checked (raw keys have
	// none; for certificates neither the clock nor Created was usable).
	TimeNotChecked TimeSource = iota
	// TimeClock: checked at TimePolicy.Now.
	TimeClock
	// TimeCreated: checked at TimePolicy.Created, the bundle creation time.
	TimeCreated
)

func (s TimeSource) String() string {
	switch s {
	case TimeClock:
		return "device clock"
	case TimeCreated:
		return "bundle creation time"
	}
	return "not checked"
}

// resolve picks the checking instant.
func (p TimePolicy) resolve() (time.Time, TimeSource) {
	now, floor := p.Now, p.Floor
	if now.IsZero() {
		now = time.Now()
	}
	if floor.IsZero() {
		floor = DefaultFloor()
	}
	if now.After(floor) {
		return now, TimeClock
	}
	if !p.Created.IsZero() && p.Created.Unix() != 0 {
		return p.Created, TimeCreated
	}
	return time.Time{}, TimeNotChecked
}

// Signer describes the signature Verify accepted.
type Signer struct {
	Algorithm Algorithm
	// KeyID is the signing key's id in hex (64 digits).
	KeyID string
	// Subject is the leaf certificate's subject common name; empty for a
	// raw key.
	Subject string
	// Chain is the verified chain, leaf first, trusted certificate last;
	// nil for a raw key.
	Chain []*x509.Certificate
	// Source is the trust file that holds the trusted key or certificate,
	// when the store came from LoadTrustDir.
	Source string
	// TimeChecked reports whether certificate validity periods were checked
	// (at CheckedAt, taken from TimeSource). Always false for raw keys.
	TimeChecked bool
	CheckedAt   time.Time
	TimeSource  TimeSource
}

// String is a one-line description for logs.
func (s Signer) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s key %s", s.Algorithm, s.KeyID)
	if s.Chain != nil {
		fmt.Fprintf(&b, ", certificate %q", s.Subject)
		if s.TimeChecked {
			fmt.Fprintf(&b, " valid at %s (%s)", s.CheckedAt.UTC().Format(time.RFC3339), s.TimeSource)
		} else {
			b.WriteString(", validity NOT checked (no trustworthy time)")
		}
	}
	if s.Source != "" {
		fmt.Fprintf(&b, ", trusted by %s", s.Source)
	}
	return oneLine(b.String())
}

// Verify checks sigs, signatures of bundleHash, under trust, and describes
// the first valid one by a trusted key (see the package documentation for
// the rules). Every signature must be canonical (Check), and every
// signature whose key is known must verify: the key of a raw-key signature
// is known when the trust store holds it, the key of a certificate
// signature always (it is the leaf's). One signature that fails makes the
// whole call fail with ErrBadSignature, even beside a valid one, so that no
// byte of a signature section that a device can check goes unchecked. Only
// raw-key signatures by keys the trust store does not hold are left as
// they are (their shape is checked). The error wraps ErrNoTrust,
// ErrUnsigned, ErrUntrusted, ErrBadSignature or ErrExpired and is one line
// naming every key id tried.
func Verify(sigs []Signature, trust *TrustStore, bundleHash [32]byte, policy TimePolicy) (Signer, error) {
	return verify(sigs, trust, Message(bundleHash), policy)
}

// outcome is what verify found about one signature.
type outcome struct {
	why  string
	kind error // ErrUntrusted, ErrExpired or ErrBadSignature
}

// verify checks sigs over msg (see Verify). It works in two passes, so that
// no signature can use up work that a valid one needs:
//
//  1. every signature: Check, then one signature verification when its key
//     is known (a trusted raw key, or the leaf certificate's). This is
//     bounded by MaxSignatures and Check's limits.
//  2. when no trusted raw key signed: the certificate signatures whose chain
//     holds a trusted certificate or a certificate a trusted one issued
//     (found through the trust store's subject index, at most one
//     signature check per trusted certificate of that name) get the full
//     crypto/x509 path check, within maxChainVerifications. A chain that no
//     trusted certificate touches costs no path check, so junk chains placed
//     before a valid one cannot exhaust the budget.
func verify(sigs []Signature, trust *TrustStore, msg []byte, policy TimePolicy) (Signer, error) {
	if trust.Len() == 0 {
		return Signer{}, ErrNoTrust
	}
	if len(sigs) == 0 {
		return Signer{}, ErrUnsigned
	}
	if len(sigs) > MaxSignatures {
		return Signer{}, fmt.Errorf("%w: %d signatures (limit %d)", ErrBadSignature, len(sigs), MaxSignatures)
	}
	at, src := policy.resolve()
	v := &verifier{t: trust, msg: msg, at: at, src: src, budget: maxChainVerifications}
	res := make([]outcome, len(sigs))
	certsOf := make([][]*x509.Certificate, len(sigs))
	var (
		raw    *Signer
		chains []int
		bad    bool
	)
	for i := range sigs {
		s := &sigs[i]
		certs, err := s.check()
		if err != nil {
			res[i], bad = outcome{"malformed: " + err.Error(), ErrBadSignature}, true
			continue
		}
		k, trusted := trust.keys[s.KeyID]
		pub, who := k.pub, "trusted key"
		if !trusted {
			if len(certs) == 0 {
				res[i] = outcome{"unknown key", ErrUntrusted}
				continue
			}
			pub, who = certs[0].PublicKey, fmt.Sprintf("certificate %q", certs[0].Subject.CommonName)
		}
		if err := verifyRaw(pub, s.Algorithm, msg, s.Sig); err != nil {
			res[i], bad = outcome{who + ": " + err.Error(), ErrBadSignature}, true
			continue
		}
		if trusted {
			res[i] = outcome{"valid", nil}
			if raw == nil {
				raw = &Signer{Algorithm: s.Algorithm, KeyID: keyIDString(s.KeyID), Source: k.source}
			}
			continue
		}
		res[i] = outcome{"signature valid, certificate chain not checked", ErrUntrusted}
		certsOf[i] = certs
		chains = append(chains, i)
	}
	if bad {
		return Signer{}, failure(sigs, res)
	}
	if raw != nil {
		return *raw, nil
	}
	for _, i := range chains {
		if !trust.touches(certsOf[i]) {
			res[i] = outcome{"no trusted certificate is in the chain or issued one of its certificates", ErrUntrusted}
			continue
		}
		signer, why, kind := v.cert(&sigs[i], certsOf[i])
		if kind == nil {
			return signer, nil
		}
		res[i] = outcome{why, kind}
	}
	return Signer{}, failure(sigs, res)
}

// failure is the error for outcomes that are all failures: the most
// specific kind, and the reasons of the first few signatures.
func failure(sigs []Signature, res []outcome) error {
	var (
		worst   error
		reasons []string
	)
	const maxListed = 8
	for i, r := range res {
		if rank(r.kind) > rank(worst) {
			worst = r.kind
		}
		if len(reasons) < maxListed {
			reasons = append(reasons, fmt.Sprintf("key %s (%s): %s", keyIDString(sigs[i].KeyID), sigs[i].Algorithm, r.why))
		} else if len(reasons) == maxListed {
			reasons = append(reasons, fmt.Sprintf("and %d more", len(sigs)-maxListed))
		}
	}
	return fmt.Errorf("%w: %d signature(s) tried: %s", worst, len(sigs), oneLine(strings.Join(reasons, "; ")))
}

// rank orders failure kinds, most specific last.
func rank(err error) int {
	switch err {
	case ErrUntrusted:
		return 1
	case ErrExpired:
		return 2
	case ErrBadSignature:
		return 3
	}
	return 0
}

// maxChainVerifications bounds the crypto/x509 chain verifications of one
// Verify call (each is itself bounded by crypto/x509), so that a bundle
// stuffed with certificate signatures cannot keep a device busy. Only
// chains that a trusted certificate touches use it (see verify).
const maxChainVerifications = 64

// verifier is the state of one Verify call.
type verifier struct {
	t      *TrustStore
	msg    []byte
	at     time.Time
	src    TimeSource
	budget int // chain verifications left
}

// cert checks the chain of a certificate signature that passed Check and
// whose signature verified under its leaf. kind is nil on success, else
// ErrUntrusted or ErrExpired, with the reason in why.
func (v *verifier) cert(s *Signature, certs []*x509.Certificate) (signer Signer, why string, kind error) {
	t, at, src := v.t, v.at, v.src
	if v.budget <= 0 {
		return Signer{}, "certificate chain not checked: too many certificate signatures in one bundle", ErrUntrusted
	}
	leaf := certs[0]
	if err := checkLeafUsage(leaf); err != nil {
		return Signer{}, "leaf certificate: " + err.Error(), ErrUntrusted
	}
	opts := x509.VerifyOptions{
		Roots:         t.roots,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	var (
		chain []*x509.Certificate
		err   error
	)
	// kind stays nil, or becomes ErrExpired when the chain is trusted but
	// not valid at the checked time.
	if src == TimeNotChecked {
		chain, err = v.anyTime(leaf, certs[1:], opts)
	} else {
		opts.CurrentTime = at
		chain, err = v.path(leaf, opts)
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			// Only ErrExpired if the chain would be trusted otherwise.
			if _, err2 := v.anyTime(leaf, certs[1:], opts); err2 == nil {
				return Signer{}, fmt.Sprintf("certificate chain (checked at %s, %s): %v", at.UTC().Format(time.RFC3339), src, err), ErrExpired
			} else {
				err = err2 // why it would not verify at any time
			}
		}
	}
	if err != nil {
		return Signer{}, "certificate chain: " + err.Error(), ErrUntrusted
	}
	return Signer{
		Algorithm:   s.Algorithm,
		KeyID:       keyIDString(s.KeyID),
		Subject:     leaf.Subject.CommonName,
		Chain:       chain,
		Source:      t.rootsRaw[string(chain[len(chain)-1].Raw)],
		TimeChecked: src != TimeNotChecked,
		CheckedAt:   at,
		TimeSource:  src,
	}, "", nil
}

// path runs one crypto/x509 verification (it counts against the budget)
// and returns the first chain it built that also meets tandem's own path
// rules (checkPath).
func (v *verifier) path(leaf *x509.Certificate, opts x509.VerifyOptions) ([]*x509.Certificate, error) {
	if v.budget <= 0 {
		return nil, errors.New("certificate chain not checked: too many certificate signatures in one bundle")
	}
	v.budget--
	chains, err := leaf.Verify(opts)
	if err != nil {
		return nil, err
	}
	for _, c := range chains {
		if err = checkPath(c); err == nil {
			return c, nil
		}
	}
	return nil, err
}

// allowedCritical are the extensions a certificate of a path may mark
// critical; a path with any other critical extension is refused, whatever
// crypto/x509 would make of it.
var allowedCritical = []asn1.ObjectIdentifier{
	oidKeyUsage,
	{2, 5, 29, 19}, // basicConstraints
	{2, 5, 29, 37}, // extKeyUsage
	{2, 5, 29, 17}, // subjectAltName
	{2, 5, 29, 30}, // nameConstraints
}

// checkPath adds tandem's rules to a path crypto/x509 built (leaf first,
// trusted certificate last): every certificate that issues another is a CA
// allowed to sign certificates (checkIssuer; crypto/x509 accepts version 1
// issuers and ignores keyCertSign), and no certificate has a critical
// extension outside allowedCritical.
func checkPath(chain []*x509.Certificate) error {
	for i, c := range chain {
		if i > 0 {
			if err := checkIssuer(c); err != nil {
				return err
			}
		}
		for _, e := range c.Extensions {
			if e.Critical && !slices.ContainsFunc(allowedCritical, e.Id.Equal) {
				return fmt.Errorf("certificate %q: critical extension %s is not one tandem handles", c.Subject.CommonName, e.Id)
			}
		}
	}
	return nil
}

// anyTime verifies the chain without a clock, as far as crypto/x509 allows
// (it has no "ignore validity" switch): a chain is valid at some instant iff
// it is valid at the latest NotBefore of its certificates, so anyTime tries
// the NotBefore of the leaf and of every carried intermediate and trusted
// certificate that falls inside the leaf's validity, earliest first, until
// one verifies or the budget runs out. A chain whose certificates were never
// valid together fails.
func (v *verifier) anyTime(leaf *x509.Certificate, inter []*x509.Certificate, opts x509.VerifyOptions) ([]*x509.Certificate, error) {
	candidates := []time.Time{leaf.NotBefore}
	for _, c := range slices.Concat(inter, v.t.rootList) {
		if c.NotBefore.After(leaf.NotBefore) && !c.NotBefore.After(leaf.NotAfter) {
			candidates = append(candidates, c.NotBefore)
		}
	}
	slices.SortFunc(candidates, time.Time.Compare)
	candidates = slices.CompactFunc(candidates, time.Time.Equal)
	var err error
	for _, c := range candidates {
		opts.CurrentTime = c
		var chain []*x509.Certificate
		if chain, err = v.path(leaf, opts); err == nil {
			return chain, nil
		}
	}
	return nil, err
}

// oidKeyUsage is the KeyUsage extension (RFC 5280, 4.2.1.3).
var oidKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 15}

// checkLeafUsage enforces the leaf's usages: digitalSignature when it has a
// KeyUsage extension; codeSigning or any when it has an ExtKeyUsage
// extension (crypto/x509 checks the EKU too, for the whole chain).
func checkLeafUsage(leaf *x509.Certificate) error {
	if hasExtension(leaf, oidKeyUsage) && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return errors.New("key usage does not include digitalSignature")
	}
	if len(leaf.ExtKeyUsage) == 0 && len(leaf.UnknownExtKeyUsage) == 0 {
		return nil
	}
	for _, u := range leaf.ExtKeyUsage {
		if u == x509.ExtKeyUsageAny || u == x509.ExtKeyUsageCodeSigning {
			return nil
		}
	}
	return errors.New("extended key usage includes neither codeSigning nor any")
}

// oneLine makes text (which may quote certificate names) safe for a log
// line: control characters become '?', and it is cut at 2000 bytes.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > 2000 {
		s = strings.ToValidUTF8(s[:2000], "") + "..."
	}
	return s
}
