package config

import (
	"fmt"
	"path"
	"strings"
)

// MaxRAUCName bounds a RAUC bootname: it becomes part of a variable name.
const MaxRAUCName = 32

// adoptedFlow checks the options of the flows that drive another update
// system's boot integration (mender-*, rauc-*, rugix-grub) and applies their
// defaults.
func (c *checker) adoptedFlow() {
	bf := &c.cfg.BootFlow
	groups := sortedKeys(c.cfg.Groups)
	switch bf.Type {
	case FlowMenderGrub, FlowMenderUBoot, FlowRugixGrub:
		// Their boot scripts know two partitions and swap between them.
		if len(groups) != 2 {
			c.fail(c.ix.key("groups"), []string{"groups"}, "the %s flow needs exactly two boot groups (its boot script swaps between two partitions), got %d", bf.Type, len(groups))
			return
		}
		c.tryboot()
	}
	switch bf.Type {
	case FlowMenderGrub:
		bf.EnvDir = c.optPath(path.Join(bf.BootDir, "grub-mender-grubenv"), bf.EnvDir, "boot-flow", "env-dir")
	case FlowMenderUBoot, FlowRAUCUBoot:
		c.uboot()
	case FlowRAUCGrub:
		bf.GrubEnv = c.optPath(path.Join(bf.BootDir, "grub", "grubenv"), bf.GrubEnv, "boot-flow", "grubenv")
	}
	if bf.Type == FlowRAUCGrub || bf.Type == FlowRAUCUBoot {
		c.raucNames()
	}
}

// raucNames checks [boot-flow.names]: one RAUC bootname per group, each a
// distinct word that can be part of a variable name (BOOT_<name>_LEFT,
// <name>_OK).
func (c *checker) raucNames() {
	bf := &c.cfg.BootFlow
	key := []string{"boot-flow", "names"}
	if !c.ix.has(key...) {
		bf.Names = map[string]string{}
		for g := range c.cfg.Groups {
			bf.Names[g] = strings.ToUpper(g)
		}
	} else {
		checkGroupKeys(c, key, bf.Names)
	}
	used := map[string]string{}
	for _, g := range sortedKeys(bf.Names) {
		v, gk := bf.Names[g], with(key, g)
		at := c.ix.value(gk...)
		if !c.ix.has(gk...) {
			at = c.ix.key("groups", g)
		}
		if why := badRAUCName(v); why != "" {
			c.fail(at, gk, "%s", why)
		} else if other, dup := used[v]; dup {
			c.fail(at, gk, "bootname %q is also the bootname of group %q", v, other)
		} else {
			used[v] = g
		}
	}
}

func badRAUCName(v string) string {
	if v == "" || len(v) > MaxRAUCName {
		return fmt.Sprintf("bootname %q must be 1 to %d characters", v, MaxRAUCName)
	}
	for _, r := range v {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fmt.Sprintf("bootname %q may hold only letters, digits, '_', '-' and '.' (it is part of a boot loader variable name)", v)
		}
	}
	return ""
}
