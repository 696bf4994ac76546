package bls

import "strings"

// CompareVersions compares two version strings by the UAPI version format
// specification (systemd's strverscmp_improved): it returns a negative
// number when a is older than b, zero when they are equal, positive when a
// is newer. Only ASCII letters and digits and "~-^." count; every other
// character separates. Segment by segment: "~" (a pre-release) is older
// than anything, even the end; then a string that ended is older; "-" is
// older than anything else, then "^", then "."; a run of digits is newer
// than a run of letters and compares as a number (leading zeros ignored);
// runs of letters compare as ASCII text, a longer one newer when one is a
// prefix of the other.
func CompareVersions(a, b string) int {
	if a == "" || b == "" {
		return strings.Compare(a, b)
	}
	for {
		a, b = strings.TrimLeftFunc(a, invalid), strings.TrimLeftFunc(b, invalid)
		if first(a) == '~' || first(b) == '~' {
			if r := cmpBool(first(a) == '~', first(b) == '~'); r != 0 {
				return -r
			}
			a, b = a[1:], b[1:]
		}
		if a == "" || b == "" {
			return cmpInt(len(a), len(b))
		}
		for _, sep := range []byte{'-', '^', '.'} {
			if first(a) == sep || first(b) == sep {
				if r := cmpBool(first(a) == sep, first(b) == sep); r != 0 {
					return -r
				}
				a, b = a[1:], b[1:]
			}
		}
		if digit(first(a)) || digit(first(b)) {
			na, nb := run(a, digit), run(b, digit)
			if r := cmpBool(na > 0, nb > 0); r != 0 {
				return r
			}
			da, db := strings.TrimLeft(a[:na], "0"), strings.TrimLeft(b[:nb], "0")
			if r := cmpInt(len(da), len(db)); r != 0 {
				return r
			}
			if r := strings.Compare(da, db); r != 0 {
				return r
			}
			a, b = a[na:], b[nb:]
			continue
		}
		na, nb := run(a, letter), run(b, letter)
		if r := strings.Compare(a[:min(na, nb)], b[:min(na, nb)]); r != 0 {
			return r
		}
		if r := cmpInt(na, nb); r != 0 {
			return r
		}
		a, b = a[na:], b[nb:]
	}
}

func first(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

func digit(c byte) bool  { return c >= '0' && c <= '9' }
func letter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func invalid(r rune) bool {
	return r > 0x7f || !digit(byte(r)) && !letter(byte(r)) && !strings.ContainsRune("~-^.", r)
}

// run returns the length of the leading run of s whose bytes satisfy f.
func run(s string, f func(byte) bool) int {
	i := 0
	for i < len(s) && f(s[i]) {
		i++
	}
	return i
}
