package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testFile is the file name used in errors of parsed test documents.
const testFile = "/x/etc/tandem/system.toml"

// lines joins TOML lines; tests count lines and columns from it.
func lines(l ...string) []byte {
	return []byte(strings.Join(l, "\n") + "\n")
}

// mustParse parses data, fails the test on error, and checks that the
// result survives a marshal and parse round trip.
func mustParse(t *testing.T, data []byte) *Config {
	t.Helper()
	cfg, err := Parse(testFile, data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	checkRoundTrip(t, cfg)
	return cfg
}

func defaultSlots() map[string]Slot {
	return map[string]Slot{
		"system-a": {Type: SlotBlock, Partition: 2},
		"system-b": {Type: SlotBlock, Partition: 3},
	}
}

func defaultGroups() map[string]Group {
	return map[string]Group{
		"a": {Slots: map[string]string{"system": "system-a"}},
		"b": {Slots: map[string]string{"system": "system-b"}},
	}
}

func TestParseFull(t *testing.T) {
	data, err := os.ReadFile("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	got := mustParse(t, data)
	want := &Config{
		File:          testFile,
		Compatible:    "acme-gw-v2",
		DataDir:       "/data/tandem",
		KeysDir:       "/etc/tandem/keys.d",
		HooksDir:      "/etc/tandem/hooks.d",
		RootDisk:      "/dev/mmcblk0",
		RebootCommand: []string{"/sbin/reboot", "-f"},
		Slots: map[string]Slot{
			"boot-a":   {Type: SlotBlock, Partition: 1},
			"boot-b":   {Type: SlotBlock, Device: "/dev/mmcblk0p4"},
			"system-a": {Type: SlotBlock, Partition: 2},
			"system-b": {Type: SlotBlock, Partition: 3},
			"app-a":    {Type: SlotFile, Path: "/data/app-a.img"},
			"app-b":    {Type: SlotFile, Path: "/data/app-b.img"},
			"config-a": {Type: SlotDirectory, Path: "/data/config-a"},
			"config-b": {Type: SlotDirectory, Path: "/data/config-b"},
			"mcu-a":    {Type: SlotCustom, Handler: []string{"/usr/libexec/flash-mcu", "--bank", "0"}},
			"mcu-b":    {Type: SlotCustom, Handler: []string{"/usr/libexec/flash-mcu", "--bank", "1"}},
		},
		Groups: map[string]Group{
			"a": {Slots: map[string]string{"boot": "boot-a", "system": "system-a", "app": "app-a", "config": "config-a", "mcu": "mcu-a"}, FactoryVersion: "1.0.0"},
			"b": {Slots: map[string]string{"boot": "boot-b", "system": "system-b", "app": "app-b", "config": "config-b", "mcu": "mcu-b"}, FactoryVersion: "1.0.0"},
		},
		BootFlow: BootFlow{Type: FlowGrub, BootDir: "/boot/efi", Attempts: 3},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got, want := got.SlotNames(), []string{"app-a", "app-b", "boot-a", "boot-b", "config-a", "config-b", "mcu-a", "mcu-b", "system-a", "system-b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("SlotNames() = %q, want %q", got, want)
	}
	if got, want := got.GroupNames(), []string{"a", "b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("GroupNames() = %q, want %q", got, want)
	}
	for slot, want := range map[string]string{"boot-b": "b", "mcu-a": "a", "system-b": "b"} {
		if g, ok := got.GroupOfSlot(slot); !ok || g != want {
			t.Errorf("GroupOfSlot(%q) = %q, %v, want %q, true", slot, g, ok, want)
		}
	}
	if g, ok := got.GroupOfSlot("nope"); ok {
		t.Errorf("GroupOfSlot(nope) = %q, true, want false", g)
	}
}

func TestParseDefaults(t *testing.T) {
	got := mustParse(t, lines(`compatible = "gw"`, `[boot-flow]`, `type = "grub"`))
	want := &Config{
		File:          testFile,
		Compatible:    "gw",
		DataDir:       DefaultDataDir,
		KeysDir:       DefaultKeysDir,
		HooksDir:      DefaultHooksDir,
		RebootCommand: []string{"reboot"},
		Slots:         defaultSlots(),
		Groups:        defaultGroups(),
		BootFlow:      BootFlow{Type: FlowGrub, BootDir: "/boot", Attempts: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestParseDefaultHalves checks that slots and groups default independently.
func TestParseDefaultHalves(t *testing.T) {
	slotsOnly := mustParse(t, lines(
		`compatible = "gw"`,
		`[slots]`,
		`system-a = { type = "file", path = "/images/a.img" }`,
		`system-b = { type = "file", path = "/images/b.img" }`,
		`[boot-flow]`,
		`type = "grub"`,
	))
	if !reflect.DeepEqual(slotsOnly.Groups, defaultGroups()) {
		t.Errorf("groups = %+v, want the default", slotsOnly.Groups)
	}
	groupsOnly := mustParse(t, lines(
		`compatible = "gw"`,
		`groups.one.slots.system = "system-a"`,
		`groups.two.slots.system = "system-b"`,
		`[boot-flow]`,
		`type = "grub"`,
	))
	if !reflect.DeepEqual(groupsOnly.Slots, defaultSlots()) {
		t.Errorf("slots = %+v, want the default", groupsOnly.Slots)
	}
}

func TestParseFlows(t *testing.T) {
	tests := []struct {
		name string
		flow []string // lines of [boot-flow] after type
		want BootFlow
	}{
		{"grub", []string{`type = "grub"`},
			BootFlow{Type: FlowGrub, BootDir: "/boot", Attempts: 1}},
		{"grub options", []string{`type = "grub"`, `boot-dir = "/boot/efi/"`, `attempts = 9`},
			BootFlow{Type: FlowGrub, BootDir: "/boot/efi", Attempts: 9}},
		{"uboot defaults", []string{`type = "uboot"`},
			BootFlow{Type: FlowUBoot, BootDir: "/boot", Attempts: 1, Backend: UBootBackendFile,
				EnvFile: "/boot/uboot.env", EnvFileRedund: "/boot/uboot-redund.env", EnvSize: 0x4000, FwEnvConfig: "/etc/fw_env.config"}},
		{"uboot env under boot-dir", []string{`type = "uboot"`, `boot-dir = "/mnt/boot"`, `env-size = 0x2000`, `attempts = 3`},
			BootFlow{Type: FlowUBoot, BootDir: "/mnt/boot", Attempts: 3, Backend: UBootBackendFile,
				EnvFile: "/mnt/boot/uboot.env", EnvFileRedund: "/mnt/boot/uboot-redund.env", EnvSize: 0x2000, FwEnvConfig: "/etc/fw_env.config"}},
		{"uboot file", []string{`type = "uboot"`, `backend = "file"`, `env-file = "/uboot/env1"`, `env-file-redund = "/uboot/env2"`, `env-size = 256`},
			BootFlow{Type: FlowUBoot, BootDir: "/boot", Attempts: 1, Backend: UBootBackendFile,
				EnvFile: "/uboot/env1", EnvFileRedund: "/uboot/env2", EnvSize: 256, FwEnvConfig: "/etc/fw_env.config"}},
		{"uboot fw-setenv", []string{`type = "uboot"`, `backend = "fw-setenv"`, `fw-env-config = "/etc/fw_env-emmc.config"`, `env-size = 1048576`},
			BootFlow{Type: FlowUBoot, BootDir: "/boot", Attempts: 1, Backend: UBootBackendFwSetenv,
				EnvFile: "/boot/uboot.env", EnvFileRedund: "/boot/uboot-redund.env", EnvSize: 1 << 20, FwEnvConfig: "/etc/fw_env-emmc.config"}},
		{"rpi-tryboot defaults", []string{`type = "rpi-tryboot"`},
			BootFlow{Type: FlowRPiTryboot, BootDir: "/boot", Attempts: 1, Partitions: map[string]int{"a": 2, "b": 3}}},
		{"rpi-tryboot partitions", []string{`type = "rpi-tryboot"`, `boot-dir = "/boot/firmware"`, `attempts = 1`, `partitions = { a = 5, b = 63 }`},
			BootFlow{Type: FlowRPiTryboot, BootDir: "/boot/firmware", Attempts: 1, Partitions: map[string]int{"a": 5, "b": 63}}},
		{"systemd-boot defaults", []string{`type = "systemd-boot"`},
			BootFlow{Type: FlowSystemdBoot, BootDir: "/boot", Attempts: 1, EFIVarsDir: "/sys/firmware/efi/efivars",
				Entries: map[string]string{"a": "tandem-a.conf", "b": "tandem-b.conf"}}},
		{"systemd-boot entries", []string{`type = "systemd-boot"`, `boot-dir = "/efi"`, `efivars-dir = "/run/efivars"`, `entries = { a = "os-a.conf", b = "os-b.conf" }`},
			BootFlow{Type: FlowSystemdBoot, BootDir: "/efi", Attempts: 1, EFIVarsDir: "/run/efivars",
				Entries: map[string]string{"a": "os-a.conf", "b": "os-b.conf"}}},
		{"custom", []string{`type = "custom"`, `controller = ["/usr/bin/boot-ctl", "--verbose"]`, `attempts = 5`},
			BootFlow{Type: FlowCustom, Attempts: 5, Controller: []string{"/usr/bin/boot-ctl", "--verbose"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := append([]string{`compatible = "gw"`, `[boot-flow]`}, tt.flow...)
			got := mustParse(t, lines(doc...))
			if !reflect.DeepEqual(got.BootFlow, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got.BootFlow, tt.want)
			}
		})
	}
}

// TestParseTrybootOtherGroups covers rpi-tryboot with groups other than a
// and b, which must name their partitions.
func TestParseTrybootOtherGroups(t *testing.T) {
	got := mustParse(t, lines(
		`compatible = "rpi4"`,
		`groups.blue.slots.system = "system-a"`,
		`groups.green.slots.system = "system-b"`,
		`[boot-flow]`,
		`type = "rpi-tryboot"`,
		`partitions = { blue = 2, green = 3 }`,
	))
	if want := map[string]int{"blue": 2, "green": 3}; !reflect.DeepEqual(got.BootFlow.Partitions, want) {
		t.Errorf("partitions = %v, want %v", got.BootFlow.Partitions, want)
	}
	sd := mustParse(t, lines(
		`compatible = "pc"`,
		`groups.blue.slots.system = "system-a"`,
		`groups.green.slots.system = "system-b"`,
		`[boot-flow]`,
		`type = "systemd-boot"`,
	))
	if want := map[string]string{"blue": "tandem-blue.conf", "green": "tandem-green.conf"}; !reflect.DeepEqual(sd.BootFlow.Entries, want) {
		t.Errorf("entries = %v, want %v", sd.BootFlow.Entries, want)
	}
}

// TestParseAccepts lists documents that must parse: corner cases of the
// rules that reject.
func TestParseAccepts(t *testing.T) {
	tests := map[string][]byte{
		"bare reboot program":  lines(`compatible = "gw"`, `reboot-command = ["systemctl", "reboot"]`, `[boot-flow]`, `type = "grub"`),
		"128-byte compatible":  lines(`compatible = "`+strings.Repeat("x", 128)+`"`, `[boot-flow]`, `type = "grub"`),
		"printable compatible": lines(`compatible = "a!~{}#=\"'"`, `[boot-flow]`, `type = "grub"`),
		"dotted slot names": lines(`compatible = "gw"`,
			`slots."root.a" = { type = "block", partition = 2 }`,
			`slots."root.b" = { type = "block", partition = 3 }`,
			`groups.a.slots.system = "root.a"`,
			`groups.b.slots.system = "root.b"`,
			`[boot-flow]`, `type = "grub"`),
		"slot in no group": lines(`compatible = "gw"`,
			`slots.system-a = { type = "block", partition = 2 }`,
			`slots.system-b = { type = "block", partition = 3 }`,
			`slots.spare = { type = "block", partition = 4 }`,
			`[boot-flow]`, `type = "grub"`),
		"three groups": lines(`compatible = "gw"`,
			`slots.r1 = { type = "block", partition = 2 }`,
			`slots.r2 = { type = "block", partition = 3 }`,
			`slots.r3 = { type = "block", partition = 4 }`,
			`groups = { a = { slots = { system = "r1" } }, b = { slots = { system = "r2" } }, c = { slots = { system = "r3" } } }`,
			`[boot-flow]`, `type = "grub"`),
		"sibling directories": lines(`compatible = "gw"`,
			`slots.system-a = { type = "directory", path = "/data/a" }`,
			`slots.system-b = { type = "directory", path = "/data/a-b" }`,
			`[boot-flow]`, `type = "grub"`),
		"empty factory version": lines(`compatible = "gw"`,
			`[groups]`, `a = { slots = { system = "system-a" }, factory-version = "" }`, `b.slots.system = "system-b"`,
			`[boot-flow]`, `type = "grub"`),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) { mustParse(t, data) })
	}
}

func TestParseHints(t *testing.T) {
	tests := []struct {
		name string
		doc  []byte
		hint string
	}{
		{"no boot-flow", lines(`compatible = "gw"`), flowHint},
		{"no type", lines(`compatible = "gw"`, `[boot-flow]`), flowHint},
		{"unknown type", lines(`compatible = "gw"`, `[boot-flow]`, `type = "lilo"`), flowHint},
		{"no compatible", lines(`[boot-flow]`, `type = "grub"`), `add a line such as compatible = "acme-gateway-v2" before the first table`},
		{"no hint", lines(`compatible = ""`, `[boot-flow]`, `type = "grub"`), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(testFile, tt.doc)
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if got := Hint(err); got != tt.hint {
				t.Errorf("Hint() = %q, want %q", got, tt.hint)
			}
		})
	}
	if got := Hint(errors.New("x")); got != "" {
		t.Errorf("Hint(plain error) = %q", got)
	}
}

func TestParseDownload(t *testing.T) {
	cfg, err := Parse(testFile, withFlow(grubType, `[download]`, `min-rate = 4096`, `stall-window = "30s"`, `deadline = "2h30m"`, `redirect-headers = "any"`))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Download
	w, dl := d.Windows()
	if d.MinRate != 4096 || w != 30*time.Second || dl != 150*time.Minute || d.RedirectHeaders != RedirectAnyHost {
		t.Errorf("download %+v: windows %v, %v", d, w, dl)
	}
	checkRoundTrip(t, cfg)
	// Left out: empty, tandem's defaults apply.
	cfg, err = Parse(testFile, withFlow(grubType))
	if err != nil {
		t.Fatal(err)
	}
	if w, dl := cfg.Download.Windows(); cfg.Download != (Download{}) || w != 0 || dl != 0 {
		t.Errorf("download %+v without a [download] table", cfg.Download)
	}
}
