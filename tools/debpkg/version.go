package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// upstreamVersion is what Debian allows as the version of a package without
// a Debian revision (deb-version(7)): it starts with a digit and uses only
// letters, digits and . + ~.
var upstreamVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// describeRE matches `git describe --tags --long --match 'v[0-9]*'`:
// the tag, the number of commits since it and the abbreviated commit.
var describeRE = regexp.MustCompile(`^v([0-9][A-Za-z0-9.+~-]*)-([0-9]+)-g([0-9a-f]+)$`)

// DebianVersion turns the output of `git describe --tags --long --match
// 'v[0-9]*'` (without --dirty) into a Debian version that sorts as the
// releases do:
//
//	v1.2.0-0-gabc1234      → 1.2.0
//	v1.2.0-5-gabc1234      → 1.2.0+git5.abc1234   (after 1.2.0, before 1.2.1)
//	v1.3.0-rc.1-0-gabc1234 → 1.3.0~rc.1           (before 1.3.0)
//
// dirty appends ".dirty" (a build from a changed work tree).
func DebianVersion(describe string, dirty bool) (string, error) {
	m := describeRE.FindStringSubmatch(strings.TrimSpace(describe))
	if m == nil {
		return "", fmt.Errorf("git describe %q: not vMAJOR.MINOR.PATCH[-PRERELEASE]-N-gHASH", describe)
	}
	// A semantic-version pre-release (the first hyphen) sorts before the
	// release: Debian's tilde. Further hyphens are not allowed without a
	// Debian revision: dots.
	tag, pre, hasPre := strings.Cut(m[1], "-")
	v := tag
	if hasPre {
		v += "~" + strings.ReplaceAll(pre, "-", ".")
	}
	if m[2] != "0" {
		v += "+git" + m[2] + "." + m[3]
	}
	if dirty {
		v += ".dirty"
	}
	if !upstreamVersion.MatchString(v) {
		return "", fmt.Errorf("git describe %q gives %q, which is not a valid Debian version", describe, v)
	}
	return v, nil
}

// untaggedVersion is the version of a build from a history without a
// release tag: 0~git<commits>.<hash>, which sorts before every release.
func untaggedVersion(commits int, hash string, dirty bool) string {
	v := "0~git" + strconv.Itoa(commits) + "." + hash
	if dirty {
		v += ".dirty"
	}
	return v
}

// GitVersion computes the Debian version of the work tree at dir from its
// git history (DebianVersion, or untaggedVersion when no tag v[0-9]* is
// reachable).
func GitVersion(dir string) (string, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	status, err := git("status", "--porcelain", "--untracked-files=no")
	if err != nil {
		return "", err
	}
	dirty := status != ""
	if d, err := git("describe", "--tags", "--long", "--match", "v[0-9]*"); err == nil {
		return DebianVersion(d, dirty)
	}
	count, err := git("rev-list", "--count", "HEAD")
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(count)
	if err != nil {
		return "", fmt.Errorf("git rev-list --count: %q: %w", count, err)
	}
	hash, err := git("rev-parse", "--short=12", "HEAD")
	if err != nil {
		return "", err
	}
	return untaggedVersion(n, hash, dirty), nil
}
