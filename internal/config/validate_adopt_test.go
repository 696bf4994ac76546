package config

import (
	"maps"
	"strings"
	"testing"
)

// The flows of other update systems take their defaults and refuse what
// their boot scripts cannot do.
func TestParseAdoptedFlows(t *testing.T) {
	base := []string{`compatible = "x"`, "[boot-flow]"}
	cfg := mustParse(t, lines(append(base, `type = "mender-grub"`)...))
	if bf := cfg.BootFlow; bf.EnvDir != "/boot/grub-mender-grubenv" || !maps.Equal(bf.Partitions, map[string]int{"a": 2, "b": 3}) {
		t.Fatalf("mender-grub defaults: %+v", bf)
	}
	cfg = mustParse(t, lines(append(base, `type = "mender-uboot"`, `backend = "fw-setenv"`)...))
	if bf := cfg.BootFlow; bf.FwEnvConfig != DefaultFwEnvConfig || bf.Partitions["b"] != 3 {
		t.Fatalf("mender-uboot defaults: %+v", bf)
	}
	cfg = mustParse(t, lines(append(base, `type = "rauc-grub"`, `boot-dir = "/boot/efi"`)...))
	if bf := cfg.BootFlow; bf.GrubEnv != "/boot/efi/grub/grubenv" || !maps.Equal(bf.Names, map[string]string{"a": "A", "b": "B"}) {
		t.Fatalf("rauc-grub defaults: %+v", bf)
	}
	cfg = mustParse(t, lines(append(base, `type = "rauc-uboot"`, `attempts = 3`, `names = { a = "system0", b = "system1" }`)...))
	if bf := cfg.BootFlow; bf.Attempts != 3 || bf.Names["b"] != "system1" || bf.EnvFile != "/boot/uboot.env" {
		t.Fatalf("rauc-uboot: %+v", bf)
	}
	cfg = mustParse(t, lines(append(base, `type = "rugix-grub"`, `boot-dir = "/run/rugix/mounts/config"`)...))
	if bf := cfg.BootFlow; bf.BootDir != "/run/rugix/mounts/config" || bf.Partitions["a"] != 2 {
		t.Fatalf("rugix-grub: %+v", bf)
	}

	bad := []struct {
		lines []string
		want  string
	}{
		{[]string{`type = "mender-grub"`, `attempts = 2`}, "cannot count boot attempts"},
		{[]string{`type = "rauc-grub"`, `attempts = 2`}, "cannot count boot attempts"},
		{[]string{`type = "rauc-grub"`, `names = { a = "A", b = "A" }`}, `bootname "A" is also the bootname of group "a"`},
		{[]string{`type = "rauc-uboot"`, `names = { a = "A B", b = "B" }`}, "may hold only letters"},
		{[]string{`type = "rauc-uboot"`, `names = { a = "A" }`}, `group "b" is missing`},
		{[]string{`type = "mender-uboot"`, `grubenv = "/x"`}, "does not apply to the mender-uboot flow"},
		{[]string{`type = "rugix-grub"`, `partitions = { a = 2, b = 2 }`}, "partition 2 is also the boot partition"},
	}
	for _, tt := range bad {
		_, err := Parse(testFile, lines(append(base, tt.lines...)...))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.lines, err, tt.want)
		}
	}
	three := lines(`compatible = "x"`,
		`slots.s1 = { type = "file", path = "/1" }`, `slots.s2 = { type = "file", path = "/2" }`, `slots.s3 = { type = "file", path = "/3" }`,
		`groups.a.slots.system = "s1"`, `groups.b.slots.system = "s2"`, `groups.c.slots.system = "s3"`,
		"[boot-flow]", `type = "mender-uboot"`)
	if _, err := Parse(testFile, three); err == nil || !strings.Contains(err.Error(), "exactly two boot groups") {
		t.Errorf("three groups on mender-uboot: %v", err)
	}
}
