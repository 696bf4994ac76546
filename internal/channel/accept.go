package channel

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/signature"
)

// Percent is a share in basis points (1/100 of a percent): 0..10000. In
// JSON it is a number of percent with at most two decimals ("12.5").
type Percent uint16

var percentRE = regexp.MustCompile(`^(100(\.0{1,2})?|[1-9]?[0-9](\.[0-9]{1,2})?)$`)

// ParsePercent parses "12.5", "12.5%", "100".
func ParsePercent(s string) (Percent, error) {
	s = strings.TrimSuffix(s, "%")
	if !percentRE.MatchString(s) {
		return 0, fmt.Errorf("rollout %q: want a percentage from 0 to 100 with at most two decimals", s)
	}
	whole, frac, _ := strings.Cut(s, ".")
	w, _ := strconv.Atoi(whole)
	f, _ := strconv.Atoi((frac + "00")[:2])
	return Percent(w*100 + f), nil
}

// String prints the percentage without a sign: "12.5".
func (p Percent) String() string {
	s := fmt.Sprintf("%d.%02d", p/100, p%100)
	return strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(s, "0"), "0"), ".")
}

// MarshalJSON writes the percentage as a JSON number.
func (p Percent) MarshalJSON() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalJSON reads a JSON number of percent with at most two decimals.
func (p *Percent) UnmarshalJSON(b []byte) error {
	v, err := ParsePercent(string(b))
	if err != nil || strings.HasSuffix(string(b), "%") {
		return fmt.Errorf("rollout %s: want a number from 0 to 100 with at most two decimals", b)
	}
	*p = v
	return nil
}

// Device is what a device says about itself for selection and rollout.
type Device struct {
	ID         string
	Compatible string
	Labels     map[string]string
}

// Matches reports whether the selector selects d (nil selects everyone).
func (s *Selector) Matches(d Device) bool {
	if s == nil {
		return true
	}
	if len(s.Devices) > 0 && !slices.Contains(s.Devices, d.ID) {
		return false
	}
	for k, v := range s.Labels {
		if got, ok := d.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Bucket is the device's stable place in the rollout of one release:
// the first 8 bytes of SHA-256("tandem rollout v1\x00" || device id ||
// "\x00" || channel || "\x00" || version), big-endian, modulo 10000. A
// device is in a rollout of p basis points iff its bucket is below p, so
// raising the percentage only adds devices, and each release picks a
// different first group.
func Bucket(deviceID, channel, version string) Percent {
	h := sha256.New()
	h.Write([]byte("tandem rollout v1\x00" + deviceID + "\x00" + channel + "\x00" + version))
	return Percent(binary.BigEndian.Uint64(h.Sum(nil)[:8]) % 10000)
}

// Decision says whether a device takes a release.
type Decision struct {
	Take   bool
	Reason string // why not (or "selected")
}

// Decide tells whether device d takes c's release: selected by the
// selector and inside the rollout percentage.
func (c *Channel) Decide(d Device) Decision {
	r := c.Release
	if !r.Select.Matches(d) {
		return Decision{Reason: "this device is not selected by the release's selector"}
	}
	if r.Rollout == nil || *r.Rollout == 10000 {
		return Decision{Take: true, Reason: "selected"}
	}
	if d.ID == "" {
		return Decision{Reason: "the release rolls out to " + r.Rollout.String() + "% and this device has no id"}
	}
	b := Bucket(d.ID, c.Channel, r.Version)
	if b >= *r.Rollout {
		return Decision{Reason: fmt.Sprintf("outside the rollout: %s%% of devices, this device's bucket is %s%%", r.Rollout, b)}
	}
	return Decision{Take: true, Reason: fmt.Sprintf("inside the rollout (%s%%, bucket %s%%)", r.Rollout, b)}
}

// Seen is what a device remembers of the newest channel file it accepted.
type Seen struct {
	Sequence uint64    `json:"sequence"`
	Digest   string    `json:"digest"` // SHA-256 of the signed bytes, hex
	Issued   time.Time `json:"issued"`
}

// Policy is what a device checks a channel file against.
type Policy struct {
	Trust      *signature.TrustStore
	Channel    string // the channel name the device follows
	Compatible string // the device's compatible
	Last       *Seen  // the newest file accepted before (nil: none)
	Now        time.Time
	// Floor is the earliest trustworthy time (zero = signature.DefaultFloor).
	Floor time.Time
}

// Accepted describes a channel file that passed Accept.
type Accepted struct {
	Channel *Channel
	Signer  signature.Signer
	Seen    Seen
	// CheckedAt is the instant the expiry was checked at; Clock says
	// whether it was the device clock (else the floor or the newest issued
	// time seen, for a device without a trustworthy clock).
	CheckedAt time.Time
	Clock     bool
}

// Effective returns the instant expiry is checked at: the device clock
// when it is past the floor; otherwise (a device without a real-time
// clock) the later of the floor and the issued time of the newest file
// accepted before. A device without a clock thus refuses a file that
// expired before a newer one it has seen was issued.
func (p Policy) Effective() (time.Time, bool) {
	floor := p.Floor
	if floor.IsZero() {
		floor = signature.DefaultFloor()
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	if now.After(floor) {
		return now, true
	}
	at := floor
	if p.Last != nil && p.Last.Issued.After(at) {
		at = p.Last.Issued
	}
	return at, false
}

// Accept verifies f as a device must before acting on it: a valid signature
// under p.Trust, the channel name and compatible the device expects, a
// sequence number not below the newest one accepted (equal only for the
// very same signed bytes), and not expired. The result's Seen is what the
// device records.
func Accept(f *File, p Policy) (*Accepted, error) {
	c := f.Channel
	who, err := f.Verify(p.Trust, p.Now, p.Floor)
	if err != nil {
		return nil, err
	}
	if c.Channel != p.Channel {
		return nil, fmt.Errorf("%w: it is for channel %q, this device follows %q", ErrWrongChannel, c.Channel, p.Channel)
	}
	if c.Compatible != p.Compatible {
		return nil, fmt.Errorf("%w: it is for compatible %q, this device is %q", ErrWrongChannel, c.Compatible, p.Compatible)
	}
	digest := fmt.Sprintf("%x", f.Digest)
	if l := p.Last; l != nil {
		if c.Sequence < l.Sequence {
			return nil, fmt.Errorf("%w: sequence %d, this device has seen %d (an old file replayed?)", ErrReplay, c.Sequence, l.Sequence)
		}
		if c.Sequence == l.Sequence && digest != l.Digest {
			return nil, fmt.Errorf("%w: sequence %d was seen with other content (each publish needs a new sequence)", ErrReplay, c.Sequence)
		}
	}
	at, clock := p.Effective()
	if !at.Before(c.Expires) {
		src := "device clock"
		if !clock {
			src = "no trustworthy clock: the floor or the newest issued time seen"
		}
		return nil, fmt.Errorf("%w: it expired at %s, checked at %s (%s)", ErrExpired, c.Expires.Format(timeLayout), at.UTC().Format(timeLayout), src)
	}
	return &Accepted{Channel: c, Signer: who, Seen: Seen{Sequence: c.Sequence, Digest: digest, Issued: c.Issued},
		CheckedAt: at, Clock: clock}, nil
}
