package config

import (
	"strings"
)

// Slot aliases of a group's boot files under systemd-boot with boot-counting
// (docs/boot-flows.md): the entry tandem writes for the group boots the
// kernel (or the unified kernel image) and initramfs of these file slots,
// with the command line of the cmdline slot.
const (
	AliasKernel  = "kernel"
	AliasUKI     = "uki"
	AliasInitrd  = "initrd"
	AliasCmdline = "cmdline"
)

// bootCounting checks boot-counting and options of the systemd-boot flow:
// with boot-counting every group has a kernel or uki file slot on the boot
// partition, optional initrd and cmdline file slots, all with resize = true.
func (c *checker) bootCounting() {
	bf := &c.cfg.BootFlow
	ok := []string{"boot-flow", "options"}
	if !bf.BootCounting {
		if c.ix.has(ok...) {
			c.fail(c.ix.key(ok...), ok, "applies only with boot-counting = true")
		}
		return
	}
	if c.ix.has(ok...) {
		checkGroupKeys(c, ok, bf.Options)
		for _, g := range sortedKeys(bf.Options) {
			if why := badText(bf.Options[g]); why != "" {
				gk := with(ok, g)
				c.fail(c.ix.value(gk...), gk, "%s", why)
			}
		}
	} else {
		bf.Options = map[string]string{}
	}
	for _, g := range sortedKeys(c.cfg.Groups) {
		gk := []string{"groups", g, "slots"}
		slots := c.cfg.Groups[g].Slots
		_, kernel := slots[AliasKernel]
		_, uki := slots[AliasUKI]
		if kernel == uki {
			c.failHint(c.ix.key(gk...), `e.g. slots = { system = "system-`+g+`", kernel = "kernel-`+g+`", initrd = "initrd-`+g+`" } with file slots on the boot partition; see docs/boot-flows.md`,
				gk, "with boot-counting each group needs exactly one of the slots %q (a Linux kernel) or %q (a unified kernel image)", AliasKernel, AliasUKI)
		}
		for _, alias := range []string{AliasKernel, AliasUKI, AliasInitrd, AliasCmdline} {
			if name, ok := slots[alias]; ok {
				c.bootFile(g, alias, name, alias != AliasCmdline)
			}
		}
	}
}

// bootFile checks the slot behind a boot-file alias of group g: a file slot
// with resize = true, on the boot partition when the boot loader reads it.
func (c *checker) bootFile(g, alias, name string, onESP bool) {
	s, ok := c.cfg.Slots[name]
	if !ok {
		return // reported by the group check
	}
	key := []string{"slots", name}
	bd := c.cfg.BootFlow.BootDir
	switch {
	case s.Type != SlotFile:
		c.fail(c.ix.key(key...), key, "slot %q of group %q is a boot file of the systemd-boot flow: it must be a file slot, not %s", alias, g, s.Type)
	case !s.Resize:
		c.fail(c.ix.key(key...), key, "slot %q of group %q is a boot file of the systemd-boot flow: set resize = true so that it takes its payload's size", alias, g)
	case onESP && !strings.HasPrefix(s.Path, strings.TrimSuffix(bd, "/")+"/"):
		c.fail(c.ix.value(with(key, "path")...), with(key, "path"), "%q is not on the boot partition %s, where systemd-boot reads it", s.Path, bd)
	case onESP && strings.ContainsAny(s.Path, " \t"):
		c.fail(c.ix.value(with(key, "path")...), with(key, "path"), "%q: a path systemd-boot reads must not contain blanks", s.Path)
	}
}
