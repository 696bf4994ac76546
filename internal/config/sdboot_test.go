package config

import (
	"reflect"
	"strings"
	"testing"
)

// countingDoc is a systemd-boot configuration with boot-counting: each group
// has its kernel, initramfs and command line as file slots on the ESP.
func countingDoc(extra ...string) []byte {
	doc := []string{compat}
	for _, g := range []string{"a", "b"} {
		doc = append(doc,
			`[slots.system-`+g+`]`, `type = "block"`, `device = "/dev/vda`+map[string]string{"a": "2", "b": "3"}[g]+`"`,
			`[slots.kernel-`+g+`]`, `type = "file"`, `path = "/efi/tandem/`+g+`/vmlinuz"`, `resize = true`,
			`[slots.initrd-`+g+`]`, `type = "file"`, `path = "/efi/tandem/`+g+`/initrd.img"`, `resize = true`,
			`[slots.cmdline-`+g+`]`, `type = "file"`, `path = "/efi/tandem/`+g+`/cmdline"`, `resize = true`,
			`[groups.`+g+`]`, `slots = { system = "system-`+g+`", kernel = "kernel-`+g+`", initrd = "initrd-`+g+`", cmdline = "cmdline-`+g+`" }`)
	}
	doc = append(doc, `[boot-flow]`, `type = "systemd-boot"`, `boot-dir = "/efi"`, `boot-counting = true`)
	return lines(append(doc, extra...)...)
}

func TestParseBootCounting(t *testing.T) {
	got := mustParse(t, countingDoc(`attempts = 3`, `options = { a = "root=/dev/vda2", b = "root=/dev/vda3 quiet" }`))
	want := BootFlow{Type: FlowSystemdBoot, BootDir: "/efi", Attempts: 3, EFIVarsDir: DefaultEFIVarsDir,
		Entries: map[string]string{"a": "tandem-a.conf", "b": "tandem-b.conf"}, BootCounting: true,
		Options: map[string]string{"a": "root=/dev/vda2", "b": "root=/dev/vda3 quiet"}}
	if !reflect.DeepEqual(got.BootFlow, want) {
		t.Errorf("got  %+v\nwant %+v", got.BootFlow, want)
	}
	if s := got.Slots["kernel-b"]; !s.Resize || s.Path != "/efi/tandem/b/vmlinuz" {
		t.Errorf("kernel-b = %+v", s)
	}
	if got := mustParse(t, countingDoc()).BootFlow.Options; got == nil || len(got) != 0 {
		t.Errorf("options default to %v, want an empty map", got)
	}
}

func TestParseBootCountingErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  []byte
		want string
	}{
		{"options without counting", withFlow(`type = "systemd-boot"`, `options = { a = "x", b = "y" }`),
			"boot-flow.options: applies only with boot-counting = true"},
		{"no kernel", withFlow(`type = "systemd-boot"`, `boot-counting = true`),
			`groups.a.slots: with boot-counting each group needs exactly one of the slots "kernel" (a Linux kernel) or "uki" (a unified kernel image)`},
		{"not resized", []byte(strings.Replace(string(countingDoc()), "resize = true", "resize = false", 1)),
			`slots.kernel-a: slot "kernel" of group "a" is a boot file of the systemd-boot flow: set resize = true so that it takes its payload's size`},
		{"not on the ESP", []byte(strings.Replace(string(countingDoc()), `"/efi/tandem/a/vmlinuz"`, `"/boot/vmlinuz-a"`, 1)),
			`slots.kernel-a.path: "/boot/vmlinuz-a" is not on the boot partition /efi, where systemd-boot reads it`},
		{"options for an unknown group", countingDoc(`options = { a = "x", b = "y", c = "z" }`), `boot-flow.options.c: there is no group "c"`},
		{"resize on a block slot", withSlotB(`type = "block"`, `partition = 3`, `resize = true`), "slots.system-b.resize does not apply to a block slot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(testFile, tt.doc)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n got: %v\nwant: …%s", err, tt.want)
			}
		})
	}
}
