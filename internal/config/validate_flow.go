package config

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// flowHint is shown under a missing boot flow.
const flowHint = `add [boot-flow] with type = "grub" (or "uboot", "rpi-tryboot", "systemd-boot", "custom"); see docs/configuration.md`

// flowOptions lists the keys each boot flow takes besides type and attempts.
var flowOptions = map[string][]string{
	FlowGrub:        {"boot-dir"},
	FlowUBoot:       {"boot-dir", "backend", "env-file", "env-file-redund", "env-size", "fw-env-config"},
	FlowRPiTryboot:  {"boot-dir", "partitions"},
	FlowSystemdBoot: {"boot-dir", "efivars-dir", "entries", "boot-counting", "options"},
	FlowCustom:      {"controller"},
	FlowMenderGrub:  {"boot-dir", "env-dir", "partitions"},
	FlowMenderUBoot: {"boot-dir", "backend", "env-file", "env-file-redund", "env-size", "fw-env-config", "partitions"},
	FlowRAUCGrub:    {"boot-dir", "grubenv", "names"},
	FlowRAUCUBoot:   {"boot-dir", "backend", "env-file", "env-file-redund", "env-size", "fw-env-config", "names"},
	FlowRugixGrub:   {"boot-dir", "partitions"},
}

// countingFlows are the flows whose boot loader can count trial boots.
var countingFlows = []string{FlowGrub, FlowUBoot, FlowCustom, FlowRAUCUBoot}

// bootFlow checks [boot-flow] and applies the defaults of its type.
func (c *checker) bootFlow() {
	bf := &c.cfg.BootFlow
	key := []string{"boot-flow"}
	if !c.ix.has(key...) {
		c.failHint(place{}, flowHint, nil, "the [boot-flow] table is missing: it says how tandem switches the boot loader between groups")
		return
	}
	tk := with(key, "type")
	if !c.ix.has(tk...) {
		c.failHint(c.ix.key(key...), flowHint, key, "type is missing (grub, uboot, rpi-tryboot, systemd-boot or custom)")
		return
	}
	allowed, ok := flowOptions[bf.Type]
	if !ok {
		c.failHint(c.ix.value(tk...), flowHint, tk, "unknown boot flow %q (use grub, uboot, rpi-tryboot, systemd-boot, custom, mender-grub, mender-uboot, rauc-grub, rauc-uboot or rugix-grub)", bf.Type)
		return
	}
	for _, opt := range bootFlowKeys {
		optKey := with(key, opt)
		if opt != "type" && opt != "attempts" && c.ix.has(optKey...) && !slices.Contains(allowed, opt) {
			c.fail(c.ix.key(optKey...), nil, "%s does not apply to the %s flow", displayPath(optKey), bf.Type)
		}
	}
	if bf.Type != FlowCustom {
		bf.BootDir = c.optPath(DefaultBootDir, bf.BootDir, "boot-flow", "boot-dir")
	}
	c.attempts()
	switch bf.Type {
	case FlowUBoot:
		c.uboot()
	case FlowRPiTryboot:
		c.tryboot()
	case FlowSystemdBoot:
		c.systemdBoot()
	case FlowCustom:
		c.customFlow()
	case FlowMenderGrub, FlowMenderUBoot, FlowRAUCGrub, FlowRAUCUBoot, FlowRugixGrub:
		c.adoptedFlow() // validate_adopt.go
	}
}

func (c *checker) attempts() {
	bf := &c.cfg.BootFlow
	key := []string{"boot-flow", "attempts"}
	switch {
	case !c.ix.has(key...):
		bf.Attempts = 1
	case bf.Attempts < 1 || bf.Attempts > MaxAttempts:
		c.fail(c.ix.value(key...), key, "must be between 1 and %d, got %d", MaxAttempts, bf.Attempts)
	case bf.Attempts > 1 && bf.Type == FlowSystemdBoot && !bf.BootCounting:
		c.fail(c.ix.value(key...), key, "systemd-boot counts boot attempts only with boot-counting = true; set it or leave attempts out")
	case bf.Attempts > 1 && !slices.Contains(countingFlows, bf.Type) && bf.Type != FlowSystemdBoot:
		c.fail(c.ix.value(key...), key, "the boot loader of the %s flow cannot count boot attempts; leave attempts out or set it to 1", bf.Type)
	}
}

func (c *checker) uboot() {
	bf := &c.cfg.BootFlow
	bk := []string{"boot-flow", "backend"}
	switch {
	case !c.ix.has(bk...):
		bf.Backend = UBootBackendFile
	case bf.Backend != UBootBackendFile && bf.Backend != UBootBackendFwSetenv:
		c.fail(c.ix.value(bk...), bk, "unknown U-Boot backend %q (use %s or %s)", bf.Backend, UBootBackendFile, UBootBackendFwSetenv)
	}
	bf.EnvFile = c.optPath(path.Join(bf.BootDir, "uboot.env"), bf.EnvFile, "boot-flow", "env-file")
	bf.EnvFileRedund = c.optPath(path.Join(bf.BootDir, "uboot-redund.env"), bf.EnvFileRedund, "boot-flow", "env-file-redund")
	if bf.EnvFile == bf.EnvFileRedund {
		rk := []string{"boot-flow", "env-file-redund"}
		c.fail(c.ix.value(rk...), rk, "%q is also env-file; the two copies of the environment must be different files", bf.EnvFileRedund)
	}
	sk := []string{"boot-flow", "env-size"}
	switch {
	case !c.ix.has(sk...):
		bf.EnvSize = DefaultEnvSize
	case bf.EnvSize < MinEnvSize || bf.EnvSize > MaxEnvSize:
		c.fail(c.ix.value(sk...), sk, "must be between %d and %d bytes, got %d", MinEnvSize, MaxEnvSize, bf.EnvSize)
	}
	bf.FwEnvConfig = c.optPath(DefaultFwEnvConfig, bf.FwEnvConfig, "boot-flow", "fw-env-config")
}

func (c *checker) tryboot() {
	bf := &c.cfg.BootFlow
	key := []string{"boot-flow", "partitions"}
	if !c.ix.has(key...) {
		groups := sortedKeys(c.cfg.Groups)
		if !slices.Equal(groups, []string{"a", "b"}) {
			c.fail(c.ix.key(key...), key, "is required when the groups are not exactly a and b (they are %s)", strings.Join(groups, ", "))
			return
		}
		bf.Partitions = map[string]int{"a": 2, "b": 3}
		return
	}
	checkGroupKeys(c, key, bf.Partitions)
	used := map[int]string{}
	for _, g := range sortedKeys(bf.Partitions) {
		n, gk := bf.Partitions[g], with(key, g)
		if n < 1 || n > MaxBootPartition {
			c.fail(c.ix.value(gk...), gk, "must be between 1 and %d, got %d", MaxBootPartition, n)
		} else if other, dup := used[n]; dup {
			c.fail(c.ix.value(gk...), gk, "partition %d is also the boot partition of group %q", n, other)
		} else {
			used[n] = g
		}
	}
}

func (c *checker) systemdBoot() {
	bf := &c.cfg.BootFlow
	bf.EFIVarsDir = c.optPath(DefaultEFIVarsDir, bf.EFIVarsDir, "boot-flow", "efivars-dir")
	key := []string{"boot-flow", "entries"}
	if !c.ix.has(key...) {
		bf.Entries = map[string]string{}
		for g := range c.cfg.Groups {
			bf.Entries[g] = "tandem-" + g + ".conf"
		}
		c.bootCounting()
		return
	}
	defer c.bootCounting()
	checkGroupKeys(c, key, bf.Entries)
	used := map[string]string{}
	for _, g := range sortedKeys(bf.Entries) {
		v, gk := bf.Entries[g], with(key, g)
		at := c.ix.value(gk...)
		if why := badEntry(v); why != "" {
			c.fail(at, gk, "%s", why)
		} else if other, dup := used[v]; dup {
			c.fail(at, gk, "entry %q is also the entry of group %q", v, other)
		} else {
			used[v] = g
		}
	}
}

func badEntry(v string) string {
	switch {
	case v == "":
		return "the loader entry must not be empty"
	case strings.Contains(v, "/"):
		return fmt.Sprintf("loader entry %q must not contain '/'", v)
	}
	return badText(v)
}

// checkGroupKeys checks that the keys of m are exactly the group names.
func checkGroupKeys[V any](c *checker, key []string, m map[string]V) {
	for _, g := range sortedKeys(c.cfg.Groups) {
		if _, ok := m[g]; !ok {
			c.fail(c.ix.key(key...), key, "group %q is missing", g)
		}
	}
	for _, name := range sortedKeys(m) {
		if _, ok := c.cfg.Groups[name]; !ok {
			gk := with(key, name)
			c.fail(c.ix.key(gk...), gk, "there is no group %q", name)
		}
	}
}

func (c *checker) customFlow() {
	key := []string{"boot-flow", "controller"}
	if !c.ix.has(key...) {
		c.fail(c.ix.key(key...), []string{"boot-flow"}, "controller is missing: the custom flow needs the program that switches boot groups")
		return
	}
	c.argv(key, c.cfg.BootFlow.Controller, false)
}
