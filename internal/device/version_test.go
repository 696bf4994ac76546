package device_test

import (
	"errors"
	"testing"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
)

// TestCompareVersions: the documented order (docs/configuration.md,
// "Versions"). Issue 11, hardening 1.
func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1.0.0", "2.0.0", -1},
		{"2.0.0", "2.0.0+build.7", 0},
		{"2.0.0-rc.1", "2.0.0", -1},
		{"2.0.0-rc.2", "2.0.0-rc.10", -1},
		{"12", "12.0.0", 0},
		{"12", "12.0.1", -1},
		{"2.0.0", "12", -1},
		{"2024.06.1", "2024.6.1", 0},
		{"2024.06.1", "2024.06.2", -1},
		{"2024.06.1", "2024.06", 1},
		{"2024.06.1", "3.0.0", 1},
		{"2.0.0-rc.1", "2", -1},
		{"2", "2.0.0-rc.1", 1},
		{"1.2.3.4", "1.2.3", 1},
	} {
		got, err := device.CompareVersions(c.a, c.b)
		if err != nil || got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want %d", c.a, c.b, got, err, c.want)
		}
		if back, _ := device.CompareVersions(c.b, c.a); back != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, not the opposite of %d", c.b, c.a, back, c.want)
		}
	}
	for _, bad := range []string{"", "bookworm", "v2.0.0", "1.2a", "1..2", "-1", "2024.06.1-rc1", "1.0.0 ", "+1"} {
		if _, err := device.CompareVersions(bad, "1.0.0"); !errors.Is(err, device.ErrVersion) {
			t.Errorf("CompareVersions(%q, 1.0.0): %v, want ErrVersion", bad, err)
		}
		// The configuration refuses as factory-version exactly what cannot be compared.
		if err := config.CheckVersion(bad); err == nil && bad != "" {
			t.Errorf("config.CheckVersion(%q) accepts a version tandem cannot compare", bad)
		}
	}
	for _, good := range []string{"1.0.0", "2.0.0-rc.1+b.7", "12", "2024.06.1", "1.2.3.4"} {
		if err := config.CheckVersion(good); err != nil {
			t.Errorf("config.CheckVersion(%q): %v", good, err)
		}
	}
}

// TestCheckDowngrade: the policy fails closed: an unknown or uncomparable
// running version refuses unless downgrades are allowed. Issue 11, hardening 1.
func TestCheckDowngrade(t *testing.T) {
	for _, c := range []struct {
		running, candidate string
		allow, ok          bool
	}{
		{"1.0.0", "2.0.0", false, true},
		{"2.0.0", "2.0.0", false, true},
		{"2.0.0", "1.0.0", false, false},
		{"2.0.0", "1.0.0", true, true},
		{"", "2.0.0", false, false},
		{"", "2.0.0", true, true},
		{"12", "2.0.0", false, false},
		{"2024.06.1", "2024.7.0", false, true},
		{"bookworm", "2.0.0", false, false},
		{"bookworm", "2.0.0", true, true},
	} {
		err := device.CheckDowngrade(c.running, c.candidate, c.allow)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, device.ErrDowngrade)) {
			t.Errorf("CheckDowngrade(%q, %q, %v) = %v, want ok %v", c.running, c.candidate, c.allow, err, c.ok)
		}
	}
}
