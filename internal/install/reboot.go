package install

import "fmt"

// ParseReboot checks a reboot mode as a caller of Activate gives it: no,
// set or yes.
func ParseReboot(s string) (Reboot, error) {
	switch m := Reboot(s); m {
	case RebootNo, RebootSet, RebootYes:
		return m, nil
	}
	return "", fmt.Errorf("%q: want no, yes or set", s)
}
