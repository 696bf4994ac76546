package device

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tandem-ota/tandem/internal/bundle"
)

// ErrDowngrade: the version to install is older than the running one, or
// the running version is unknown or cannot be compared (CheckDowngrade).
var ErrDowngrade = errors.New("downgrade refused")

// ErrVersion: a version tandem cannot order (CompareVersions).
var ErrVersion = errors.New("not a comparable version")

// CompareVersions orders two versions: -1 when a is older than b, 0 when
// they are equal, +1 when a is newer (docs/configuration.md, "Versions").
// A version is either a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])
// or dotted numbers ("12", "2024.06.1"). Two semantic versions compare by
// semver precedence. Otherwise the numbers compare left to right, a missing
// one counting as 0 (so "12" = "12.0.0"), and at equal numbers a semantic
// version with a pre-release is the older. Anything else is refused
// (ErrVersion): tandem never guesses an order.
func CompareVersions(a, b string) (int, error) {
	va, na, err := parseVersion(a)
	if err != nil {
		return 0, err
	}
	vb, nb, err := parseVersion(b)
	if err != nil {
		return 0, err
	}
	if va != nil && vb != nil {
		return va.Compare(*vb), nil
	}
	for i := range max(len(na), len(nb)) {
		var x, y uint64
		if i < len(na) {
			x = na[i]
		}
		if i < len(nb) {
			y = nb[i]
		}
		if c := cmp.Compare(x, y); c != 0 {
			return c, nil
		}
	}
	pre := func(v *bundle.Version) bool { return v != nil && len(v.Pre) > 0 }
	switch {
	case pre(va) && !pre(vb):
		return -1, nil
	case pre(vb) && !pre(va):
		return 1, nil
	}
	return 0, nil
}

// parseVersion returns the semantic version of s (nil if it is none) and
// its numbers (the semantic version's MAJOR, MINOR, PATCH).
func parseVersion(s string) (*bundle.Version, []uint64, error) {
	if v, err := bundle.ParseVersion(s); err == nil {
		return &v, []uint64{v.Major, v.Minor, v.Patch}, nil
	}
	if s == "" || len(s) > 64 {
		return nil, nil, fmt.Errorf("%w: %q (want MAJOR.MINOR.PATCH or dotted numbers such as 2024.06.1)", ErrVersion, s)
	}
	var nums []uint64
	for p := range strings.SplitSeq(s, ".") {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %q (want MAJOR.MINOR.PATCH or dotted numbers such as 2024.06.1)", ErrVersion, s)
		}
		nums = append(nums, n)
	}
	return nil, nums, nil
}

// CheckDowngrade is the downgrade policy of install and watch: it refuses
// (ErrDowngrade) a candidate older than the running version, and, because
// a downgrade cannot then be ruled out, also a running version that is
// unknown ("") or not comparable, unless allow is set.
func CheckDowngrade(running, candidate string, allow bool) error {
	if allow {
		return nil
	}
	if running == "" {
		return fmt.Errorf("%w: the running version is unknown, so version %s may be older; set factory-version in the configuration or IMAGE_VERSION in os-release, or allow downgrades (--allow-downgrade)",
			ErrDowngrade, candidate)
	}
	c, err := CompareVersions(candidate, running)
	switch {
	case err != nil:
		return fmt.Errorf("%w: cannot order version %s against the running %s: %w; allow downgrades (--allow-downgrade) to install it", ErrDowngrade, candidate, running, err)
	case c < 0:
		return fmt.Errorf("%w: version %s is older than the running %s; allow downgrades (--allow-downgrade) to install it", ErrDowngrade, candidate, running)
	}
	return nil
}
