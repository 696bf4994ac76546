package config

import (
	"errors"
	"strings"
	"testing"
)

// Parts of test documents; comments give their line numbers where used.
const (
	compat    = `compatible = "gw"`
	slotA     = `[slots.system-a]`
	blockType = `type = "block"`
	grubFlow  = `[boot-flow]`
	grubType  = `type = "grub"`
)

// withSlotB returns a document whose [slots.system-b] table is on line 5
// and its first key on line 6.
func withSlotB(keys ...string) []byte {
	doc := []string{compat, slotA, blockType, `partition = 2`, `[slots.system-b]`}
	doc = append(doc, keys...)
	return lines(append(doc, grubFlow, grubType)...)
}

// withGroups returns a document with the default slots and [groups] on line 2.
func withGroups(keys ...string) []byte {
	doc := append([]string{compat, `[groups]`}, keys...)
	return lines(append(doc, grubFlow, grubType)...)
}

// withFlow returns a document with the default slots and groups and
// [boot-flow] on line 2, its type on line 3.
func withFlow(keys ...string) []byte {
	return lines(append([]string{compat, grubFlow}, keys...)...)
}

func TestParseErrors(t *testing.T) {
	configList := "compatible, data-dir, keys-dir, hooks-dir, root-disk, reboot-command, slots, groups, boot-flow, download"
	flowList := "type, boot-dir, attempts, backend, env-file, env-file-redund, env-size, fw-env-config, partitions, efivars-dir, entries, boot-counting, options, controller, env-dir, grubenv, names"
	tests := []struct {
		name string
		doc  []byte
		want string // the message after "<testFile>:"
	}{
		// TOML and decoding
		{"syntax", lines(`compatible = "gw`), `1:17: invalid TOML: basic strings cannot have new lines`},
		{"missing value", lines(`compatible =`), `1:13: invalid TOML: unexpected character U+000A at start of value`},
		{"duplicate key", lines(compat, compat), `2:1: invalid TOML: key compatible is already defined`},
		{"unknown top-level key", lines(compat, `colour = "red"`, grubFlow, grubType),
			`2:1: colour: unknown key (valid here: ` + configList + `)`},
		{"unknown table", lines(compat, `[network]`, `dhcp = true`),
			`2:2: network: unknown key (valid here: ` + configList + `)`},
		{"unknown slot key", withSlotB(blockType, `partition = 3`, `size = "2G"`),
			`8:1: slots.system-b.size: unknown key (valid here: type, device, partition, path, handler, resize)`},
		{"unknown key in inline slot", lines(compat, `slots = { system-a = { type = "block", partition = 2 }, system-b = { type = "block", size = 3 } }`),
			`2:86: slots.system-b.size: unknown key (valid here: type, device, partition, path, handler, resize)`},
		{"unknown group key", withGroups(`a = { slots = { system = "system-a" }, version = "1" }`),
			`3:40: groups.a.version: unknown key (valid here: slots, factory-version)`},
		{"unknown boot-flow key", withFlow(grubType, `kernel = "/vmlinuz"`),
			`4:1: boot-flow.kernel: unknown key (valid here: ` + flowList + `)`},
		{"unknown boot-flow table", withFlow(grubType, `[boot-flow.grub]`),
			`4:12: boot-flow.grub: unknown key (valid here: ` + flowList + `)`},
		{"unknown dotted key", withFlow(grubType, `grub.env = "x"`),
			`4:1: boot-flow.grub: unknown key (valid here: ` + flowList + `)`},
		{"string for integer", withSlotB(blockType, `partition = "3"`),
			`7:13: slots.system-b.partition: expected an integer, found string`},
		{"float for integer", withFlow(grubType, `attempts = 1.5`), `4:12: boot-flow.attempts: expected an integer, found float`},
		{"integer for string", lines(`compatible = 7`), `1:14: compatible: expected a string, found integer`},
		{"string for array", lines(compat, `reboot-command = "reboot"`), `2:18: reboot-command: expected an array of strings, found string`},
		{"integer in array", lines(compat, `reboot-command = ["reboot", 1]`), `2:29: reboot-command[1]: expected a string, found integer`},
		{"string for table", lines(compat, `slots = "system-a"`), `2:9: slots: expected a table, found string`},
		{"integer in inline table", lines(compat, `groups = { a = { slots = { system = 2 } } }`), `2:37: groups.a.slots.system: expected a string, found integer`},
		{"array of tables", lines(compat, `[[slots]]`), `2:3: slots: cannot store an array table in a map`},
		{"too large integer", withFlow(grubType, `attempts = 99999999999999999999`),
			`4:12: invalid TOML: decimal number is too large to fit in a 64-bit signed integer`},

		// top level
		{"no compatible", lines(grubFlow, grubType), `compatible is required: it names the bundles that fit this device`},
		{"empty compatible", lines(`compatible = ""`, grubFlow, grubType), `1:14: compatible: must not be empty`},
		{"space in compatible", lines(`compatible = "acme gw"`, grubFlow, grubType), `1:14: compatible: "acme gw" contains " "; use printable ASCII without spaces`},
		{"non-ASCII compatible", lines(`compatible = "gé"`, grubFlow, grubType), `1:14: compatible: "gé" contains "\xc3"; use printable ASCII without spaces`},
		{"long compatible", lines(`compatible = "`+strings.Repeat("x", 129)+`"`, grubFlow, grubType), `1:14: compatible: is 129 bytes long; the limit is 128`},
		{"relative data-dir", lines(compat, `data-dir = "var/lib/tandem"`, grubFlow, grubType), `2:12: data-dir: "var/lib/tandem" is not an absolute path`},
		{"dot-dot keys-dir", lines(compat, `keys-dir = "/etc/tandem/../keys"`, grubFlow, grubType), `2:12: keys-dir: "/etc/tandem/../keys" contains a ".." element`},
		{"empty hooks-dir", lines(compat, `hooks-dir = ""`, grubFlow, grubType), `2:13: hooks-dir: must be an absolute path, not empty`},
		{"control character in root-disk", lines(compat, `root-disk = "/dev/sd\ta"`, grubFlow, grubType), `2:13: root-disk: "/dev/sd\ta" contains a control character`},
		{"empty reboot-command", lines(compat, `reboot-command = []`, grubFlow, grubType), `2:1: reboot-command: must not be empty`},
		{"relative reboot program", lines(compat, `reboot-command = ["sbin/reboot"]`, grubFlow, grubType),
			`2:19: reboot-command[0]: "sbin/reboot" must be an absolute path or a program name without '/'`},
		{"empty reboot program", lines(compat, `reboot-command = [""]`, grubFlow, grubType), `2:19: reboot-command[0]: the program must not be empty`},

		// slots
		{"no slots", lines(compat, `[slots]`, grubFlow, grubType),
			`2:2: slots: no slots are defined; leave out [slots] for the default system-a (partition 2) and system-b (partition 3)`},
		{"slot name", lines(compat, slotA, blockType, `partition = 2`, `[slots.System-B]`, blockType, `partition = 3`, grubFlow, grubType),
			`5:8: slots.System-B: invalid slot name "System-B": use 1 to 64 characters a-z 0-9 . _ - starting with a letter or digit`},
		{"slot name starts with dot", lines(compat, `slots.".b" = { type = "block", partition = 3 }`, grubFlow, grubType),
			`2:7: slots.".b": invalid slot name ".b": use 1 to 64 characters a-z 0-9 . _ - starting with a letter or digit`},
		{"slot name too long", lines(compat, `slots.`+strings.Repeat("s", 65)+` = { type = "block", partition = 3 }`, grubFlow, grubType),
			`2:7: slots.` + strings.Repeat("s", 65) + `: invalid slot name "` + strings.Repeat("s", 65) + `": use 1 to 64 characters a-z 0-9 . _ - starting with a letter or digit`},
		{"no slot type", withSlotB(`partition = 3`), `5:8: slots.system-b: type is missing (block, file, directory or custom)`},
		{"unknown slot type", withSlotB(`type = "disk"`), `6:8: slots.system-b.type: unknown slot type "disk" (use block, file, directory or custom)`},
		{"device and partition", withSlotB(blockType, `device = "/dev/sda3"`, `partition = 3`), `8:1: slots.system-b: set device or partition, not both`},
		{"neither device nor partition", withSlotB(blockType),
			`5:8: slots.system-b: a block slot needs device (a path) or partition (a number on the root disk)`},
		{"partition 0", withSlotB(blockType, `partition = 0`), `7:13: slots.system-b.partition: must be between 1 and 128, got 0`},
		{"partition 129", withSlotB(blockType, `partition = 129`), `7:13: slots.system-b.partition: must be between 1 and 128, got 129`},
		{"relative device", withSlotB(blockType, `device = "sda3"`), `7:10: slots.system-b.device: "sda3" is not an absolute path`},
		{"path on block slot", withSlotB(blockType, `partition = 3`, `path = "/x"`), `8:1: slots.system-b.path does not apply to a block slot`},
		{"handler on block slot", withSlotB(blockType, `partition = 3`, `handler = ["/x"]`), `8:1: slots.system-b.handler does not apply to a block slot`},
		{"file without path", withSlotB(`type = "file"`), `5:8: slots.system-b: path is missing: a file slot needs an absolute path`},
		{"partition on file slot", withSlotB(`type = "file"`, `partition = 3`, `path = "/b.img"`), `7:1: slots.system-b.partition does not apply to a file slot`},
		{"relative directory", withSlotB(`type = "directory"`, `path = "data/b"`), `7:8: slots.system-b.path: "data/b" is not an absolute path`},
		{"device on directory slot", withSlotB(`type = "directory"`, `path = "/data/b"`, `device = "/dev/sdb"`), `8:1: slots.system-b.device does not apply to a directory slot`},
		{"custom without handler", withSlotB(`type = "custom"`),
			`5:8: slots.system-b: handler is missing: a custom slot needs the program that receives the payload on stdin`},
		{"empty handler", withSlotB(`type = "custom"`, `handler = []`), `7:1: slots.system-b.handler: must not be empty`},
		{"relative handler", withSlotB(`type = "custom"`, `handler = ["flash-mcu"]`), `7:12: slots.system-b.handler[0]: "flash-mcu" must be an absolute path`},
		{"dot-dot handler", withSlotB(`type = "custom"`, `handler = ["/usr/../flash"]`), `7:12: slots.system-b.handler[0]: "/usr/../flash" contains a ".." element`},
		{"newline in handler argument", withSlotB(`type = "custom"`, `handler = ["/flash", "a\nb"]`), `7:22: slots.system-b.handler[1]: "a\nb" contains a control character`},
		{"path on custom slot", withSlotB(`type = "custom"`, `handler = ["/flash"]`, `path = "/x"`), `8:1: slots.system-b.path does not apply to a custom slot`},
		{"same partition", withSlotB(blockType, `partition = 2`), `7:13: slots.system-b.partition: partition 2 is also used by slot "system-a"`},
		{"same path", lines(compat, `[slots]`, `system-a = { type = "file", path = "/img" }`, `system-b = { type = "file", path = "/img/" }`, grubFlow, grubType),
			`4:36: slots.system-b.path: path "/img" is also used by slot "system-a"`},
		{"path inside directory slot", lines(compat, `[slots]`, `system-a = { type = "directory", path = "/data" }`, `system-b = { type = "file", path = "/data/b/c.img" }`, grubFlow, grubType),
			`4:36: slots.system-b.path: "/data/b/c.img" lies inside directory slot "system-a"`},

		// groups
		{"one group", withGroups(`a.slots.system = "system-a"`), `2:2: groups: at least two groups are needed, found 1`},
		{"empty groups", withGroups(), `2:2: groups: at least two groups are needed, found 0`},
		{"group without slots", withGroups(`a.slots.system = "system-a"`, `b.factory-version = "1.0"`), `4:1: groups.b: has no slots; add slots = { system = "<slot>" }`},
		{"group with empty slots", withGroups(`a.slots.system = "system-a"`, `b.slots = {}`), `4:3: groups.b: has no slots; add slots = { system = "<slot>" }`},
		{"undefined slot", withGroups(`a = { slots = { system = "system-a" } }`, `b = { slots = { system = "system-c" } }`),
			`4:26: groups.b.slots.system: slot "system-c" is not defined`},
		{"shared slot", withGroups(`a = { slots = { system = "system-a" } }`, `b = { slots = { system = "system-a" } }`),
			`4:26: groups.b.slots.system: slot "system-a" is in groups "a" and "b"; a slot shared by two groups would be written while it is active`},
		{"slot twice in a group", withGroups(`a = { slots = { system = "system-a", root = "system-a" } }`, `b.slots.system = "system-b"`),
			`3:45: groups.a.slots.root: slot "system-a" is already used by alias "system" of this group`},
		{"group name", withGroups(`A.slots.system = "system-a"`, `b.slots.system = "system-b"`),
			`3:1: groups.A: invalid group name "A": use 1 to 64 characters a-z 0-9 . _ - starting with a letter or digit`},
		{"alias name", withGroups(`a.slots."root fs" = "system-a"`, `b.slots.system = "system-b"`),
			`3:9: groups.a.slots."root fs": invalid alias name "root fs": use 1 to 64 characters a-z 0-9 . _ - starting with a letter or digit`},
		{"factory-version control character", withGroups(`a = { slots = { system = "system-a" }, factory-version = "1\r" }`, `b.slots.system = "system-b"`),
			`3:58: groups.a.factory-version: "1\r" contains a control character`},
		// Issue 11, hardening 1: a factory-version tandem cannot order is refused at load time.
		{"factory-version not comparable", withGroups(`a = { slots = { system = "system-a" }, factory-version = "bookworm" }`, `b.slots.system = "system-b"`),
			`3:58: groups.a.factory-version: "bookworm" is not a version tandem can compare: use MAJOR.MINOR.PATCH (semver) or dotted numbers such as 2024.06.1`},
		{"default groups without their slots", lines(compat, `slots.root-a = { type = "block", partition = 2 }`, `slots.root-b = { type = "block", partition = 3 }`, grubFlow, grubType),
			`groups: not set, so group a defaults to system = "system-a", but slot "system-a" is not defined`},

		// boot flow
		{"no boot-flow", lines(compat), `the [boot-flow] table is missing: it says how tandem switches the boot loader between groups`},
		{"no type", withFlow(`attempts = 2`), `2:2: boot-flow: type is missing (grub, uboot, rpi-tryboot, systemd-boot or custom)`},
		{"unknown type", withFlow(`type = "lilo"`), `3:8: boot-flow.type: unknown boot flow "lilo" (use grub, uboot, rpi-tryboot, systemd-boot, custom, mender-grub, mender-uboot, rauc-grub, rauc-uboot or rugix-grub)`},
		{"partitions on grub", withFlow(grubType, `partitions = { a = 2, b = 3 }`), `4:1: boot-flow.partitions does not apply to the grub flow`},
		{"backend on grub", withFlow(grubType, `backend = "file"`), `4:1: boot-flow.backend does not apply to the grub flow`},
		{"entries on uboot", withFlow(`type = "uboot"`, `entries = { a = "a.conf", b = "b.conf" }`), `4:1: boot-flow.entries does not apply to the uboot flow`},
		{"env-file on rpi-tryboot", withFlow(`type = "rpi-tryboot"`, `env-file = "/boot/uboot.env"`), `4:1: boot-flow.env-file does not apply to the rpi-tryboot flow`},
		{"controller on systemd-boot", withFlow(`type = "systemd-boot"`, `controller = ["/x"]`), `4:1: boot-flow.controller does not apply to the systemd-boot flow`},
		{"boot-dir on custom", withFlow(`type = "custom"`, `controller = ["/x"]`, `boot-dir = "/boot"`), `5:1: boot-flow.boot-dir does not apply to the custom flow`},
		{"relative boot-dir", withFlow(grubType, `boot-dir = "boot"`), `4:12: boot-flow.boot-dir: "boot" is not an absolute path`},
		{"attempts 0", withFlow(grubType, `attempts = 0`), `4:12: boot-flow.attempts: must be between 1 and 9, got 0`},
		{"attempts 10", withFlow(`type = "uboot"`, `attempts = 10`), `4:12: boot-flow.attempts: must be between 1 and 9, got 10`},
		{"attempts on rpi-tryboot", withFlow(`type = "rpi-tryboot"`, `attempts = 2`),
			`4:12: boot-flow.attempts: the boot loader of the rpi-tryboot flow cannot count boot attempts; leave attempts out or set it to 1`},
		{"attempts on systemd-boot", withFlow(`type = "systemd-boot"`, `attempts = 3`),
			`4:12: boot-flow.attempts: systemd-boot counts boot attempts only with boot-counting = true; set it or leave attempts out`},
		{"uboot backend", withFlow(`type = "uboot"`, `backend = "mtd"`), `4:11: boot-flow.backend: unknown U-Boot backend "mtd" (use file or fw-setenv)`},
		{"env-size small", withFlow(`type = "uboot"`, `env-size = 255`), `4:12: boot-flow.env-size: must be between 256 and 1048576 bytes, got 255`},
		{"env-size large", withFlow(`type = "uboot"`, `env-size = 0x100001`), `4:12: boot-flow.env-size: must be between 256 and 1048576 bytes, got 1048577`},
		{"relative env-file", withFlow(`type = "uboot"`, `env-file = "uboot.env"`), `4:12: boot-flow.env-file: "uboot.env" is not an absolute path`},
		{"same env files", withFlow(`type = "uboot"`, `env-file = "/boot/env"`, `env-file-redund = "/boot//env"`),
			`5:19: boot-flow.env-file-redund: "/boot/env" is also env-file; the two copies of the environment must be different files`},
		{"dot-dot fw-env-config", withFlow(`type = "uboot"`, `backend = "fw-setenv"`, `fw-env-config = "/etc/../fw_env.config"`),
			`5:17: boot-flow.fw-env-config: "/etc/../fw_env.config" contains a ".." element`},
		{"tryboot partitions required", lines(compat, `groups.x.slots.system = "system-a"`, `groups.y.slots.system = "system-b"`, grubFlow, `type = "rpi-tryboot"`),
			`4:2: boot-flow.partitions: is required when the groups are not exactly a and b (they are x, y)`},
		{"tryboot missing group", withFlow(`type = "rpi-tryboot"`, `partitions = { a = 2 }`), `4:1: boot-flow.partitions: group "b" is missing`},
		{"tryboot unknown group", withFlow(`type = "rpi-tryboot"`, `partitions = { a = 2, b = 3, c = 4 }`), `4:30: boot-flow.partitions.c: there is no group "c"`},
		{"tryboot partition 64", withFlow(`type = "rpi-tryboot"`, `partitions = { a = 2, b = 64 }`), `4:27: boot-flow.partitions.b: must be between 1 and 63, got 64`},
		{"tryboot partition 0", withFlow(`type = "rpi-tryboot"`, `partitions = { a = 0, b = 3 }`), `4:20: boot-flow.partitions.a: must be between 1 and 63, got 0`},
		{"tryboot same partition", withFlow(`type = "rpi-tryboot"`, `partitions = { a = 2, b = 2 }`),
			`4:27: boot-flow.partitions.b: partition 2 is also the boot partition of group "a"`},
		{"relative efivars-dir", withFlow(`type = "systemd-boot"`, `efivars-dir = "efivars"`), `4:15: boot-flow.efivars-dir: "efivars" is not an absolute path`},
		{"entries missing group", withFlow(`type = "systemd-boot"`, `entries = { b = "b.conf" }`), `4:1: boot-flow.entries: group "a" is missing`},
		{"entries unknown group", withFlow(`type = "systemd-boot"`, `entries = { a = "a.conf", b = "b.conf", c = "c.conf" }`), `4:41: boot-flow.entries.c: there is no group "c"`},
		{"empty entry", withFlow(`type = "systemd-boot"`, `entries = { a = "", b = "b.conf" }`), `4:17: boot-flow.entries.a: the loader entry must not be empty`},
		{"entry with slash", withFlow(`type = "systemd-boot"`, `entries = { a = "loader/a.conf", b = "b.conf" }`),
			`4:17: boot-flow.entries.a: loader entry "loader/a.conf" must not contain '/'`},
		{"same entry", withFlow(`type = "systemd-boot"`, `entries = { a = "os.conf", b = "os.conf" }`),
			`4:32: boot-flow.entries.b: entry "os.conf" is also the entry of group "a"`},
		{"custom without controller", withFlow(`type = "custom"`),
			`2:2: boot-flow: controller is missing: the custom flow needs the program that switches boot groups`},
		{"empty controller", withFlow(`type = "custom"`, `controller = []`), `4:1: boot-flow.controller: must not be empty`},
		{"relative controller", withFlow(`type = "custom"`, `controller = ["bin/ctl"]`), `4:15: boot-flow.controller[0]: "bin/ctl" must be an absolute path`},

		// [download] (issue 11, hardening 6 and 7)
		{"min-rate 0", withFlow(grubType, `[download]`, `min-rate = 0`), `5:12: download.min-rate: must be between 1 and 1073741824 bytes per second, got 0`},
		{"stall-window not a duration", withFlow(grubType, `[download]`, `stall-window = "15"`),
			`5:16: download.stall-window: "15" is not a duration such as "90s" or "2h30m"`},
		{"stall-window too long", withFlow(grubType, `[download]`, `stall-window = "2h"`), `5:16: download.stall-window: must be between 1s and 1h0m0s, got 2h0m0s`},
		{"deadline too short", withFlow(grubType, `[download]`, `deadline = "10s"`), `5:12: download.deadline: must be between 1m0s and 8760h0m0s, got 10s`},
		{"redirect-headers", withFlow(grubType, `[download]`, `redirect-headers = "all"`), `5:20: download.redirect-headers: must be "same-host" or "any", got "all"`},
		{"unknown download key", withFlow(grubType, `[download]`, `timeout = "1m"`),
			`5:1: download.timeout: unknown key (valid here: min-rate, stall-window, deadline, redirect-headers)`},

		// several problems: the first in the file is reported
		{"first in file order", lines(`compatible = ""`, `[slots.system-b]`, `type = "disk"`, grubFlow, `type = "lilo"`), `1:14: compatible: must not be empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(testFile, tt.doc)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", cfg)
			}
			want := testFile + ":" + tt.want // "<line>:<col>: ..."
			if !strings.ContainsAny(tt.want[:1], "0123456789") {
				want = testFile + ": " + tt.want // no place
			}
			if got := err.Error(); got != want {
				t.Errorf("error\n got: %s\nwant: %s", got, want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != testFile {
				t.Errorf("error is not an *Error for %s: %#v", testFile, err)
			}
		})
	}
}
