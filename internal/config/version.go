package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// maxVersion bounds a factory-version.
const maxVersion = 64

var (
	// semverRe is semver.org's grammar of MAJOR.MINOR.PATCH[-PRE][+BUILD].
	semverRe = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
		`(-(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*)?` +
		`(\+[0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*)?$`)
	dottedRe = regexp.MustCompile(`^\d+(\.\d+)*$`)
)

// CheckVersion accepts the versions tandem can order (device.CompareVersions,
// docs/configuration.md "Versions"): a semantic version or dotted numbers
// such as "12" or "2024.06.1", at most 64 bytes.
func CheckVersion(s string) error {
	core, _, _ := strings.Cut(s, "-")
	core, _, _ = strings.Cut(core, "+")
	ok := len(s) <= maxVersion && (semverRe.MatchString(s) || dottedRe.MatchString(s))
	for n := range strings.SplitSeq(core, ".") {
		if _, err := strconv.ParseUint(n, 10, 64); err != nil {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%q is not a version tandem can compare: use MAJOR.MINOR.PATCH (semver) or dotted numbers such as 2024.06.1", s)
	}
	return nil
}
