package config

import (
	"cmp"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"unicode/utf8"
)

// Defaults applied when the file leaves a key out.
const (
	DefaultDataDir     = "/var/lib/tandem"
	DefaultKeysDir     = "/etc/tandem/keys"
	DefaultHooksDir    = "/etc/tandem/hooks"
	DefaultBootDir     = "/boot"
	DefaultEnvSize     = 0x4000
	DefaultFwEnvConfig = "/etc/fw_env.config"
	DefaultEFIVarsDir  = "/sys/firmware/efi/efivars"
)

// Limits checked by validation.
const (
	MaxCompatibleLen = 128     // bytes
	MaxPartition     = 128     // block slot partition numbers are 1..MaxPartition
	MaxBootPartition = 63      // rpi-tryboot partition numbers are 1..MaxBootPartition
	MinEnvSize       = 256     // uboot env-size lower bound, bytes
	MaxEnvSize       = 1 << 20 // uboot env-size upper bound, bytes
)

// flowHint is shown under a missing boot flow.
const flowHint = `add [boot-flow] with type = "grub" (or "uboot", "rpi-tryboot", "systemd-boot", "custom"); see docs/configuration.md`

// slotOptions lists the keys each slot type takes besides type.
var slotOptions = map[string][]string{
	SlotBlock:     {"device", "partition"},
	SlotFile:      {"path"},
	SlotDirectory: {"path"},
	SlotCustom:    {"handler"},
}

// flowOptions lists the keys each boot flow takes besides type and attempts.
var flowOptions = map[string][]string{
	FlowGrub:        {"boot-dir"},
	FlowUBoot:       {"boot-dir", "backend", "env-file", "env-file-redund", "env-size", "fw-env-config"},
	FlowRPiTryboot:  {"boot-dir", "partitions"},
	FlowSystemdBoot: {"boot-dir", "efivars-dir", "entries"},
	FlowCustom:      {"controller"},
}

// countingFlows are the flows whose boot loader can count trial boots.
var countingFlows = []string{FlowGrub, FlowUBoot, FlowCustom}

// checker applies defaults to a decoded Config and validates it. It collects
// every problem; run returns the first one in file order.
type checker struct {
	file string
	ix   *index
	cfg  *Config
	errs []*Error
}

func (c *checker) run() error {
	c.top()
	c.slots()
	c.groups()
	c.bootFlow()
	if len(c.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(c.errs, byPlace)
	return c.errs[0]
}

// byPlace orders errors by their place in the file.
func byPlace(a, b *Error) int {
	return comparePlaces(place{a.Line, a.Column}, place{b.Line, b.Column})
}

// comparePlaces orders places by line and column; no place goes last.
func comparePlaces(a, b place) int {
	if (a.line == 0) != (b.line == 0) {
		if a.line == 0 {
			return 1
		}
		return -1
	}
	return cmp.Or(cmp.Compare(a.line, b.line), cmp.Compare(a.col, b.col))
}

// fail records "<path>: <message>" at a place (path may be nil).
func (c *checker) fail(at place, key []string, format string, args ...any) {
	c.failHint(at, "", key, format, args...)
}

func (c *checker) failHint(at place, hint string, key []string, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if key != nil {
		msg = displayPath(key) + ": " + msg
	}
	c.errs = append(c.errs, invalid(c.file, at, msg, hint, nil))
}

// top checks the top-level keys.
func (c *checker) top() {
	cfg := c.cfg
	c.compatible()
	cfg.DataDir = c.optPath(DefaultDataDir, cfg.DataDir, "data-dir")
	cfg.KeysDir = c.optPath(DefaultKeysDir, cfg.KeysDir, "keys-dir")
	cfg.HooksDir = c.optPath(DefaultHooksDir, cfg.HooksDir, "hooks-dir")
	cfg.RootDisk = c.optPath("", cfg.RootDisk, "root-disk")
	if c.ix.has("reboot-command") {
		c.argv([]string{"reboot-command"}, cfg.RebootCommand, true)
	} else {
		cfg.RebootCommand = []string{"reboot"}
	}
}

func (c *checker) compatible() {
	key := []string{"compatible"}
	if !c.ix.has(key...) {
		c.failHint(place{}, `add a line such as compatible = "acme-gateway-v2" before the first table`, nil,
			"compatible is required: it names the bundles that fit this device")
		return
	}
	v, at := c.cfg.Compatible, c.ix.value(key...)
	switch {
	case v == "":
		c.fail(at, key, "must not be empty")
	case len(v) > MaxCompatibleLen:
		c.fail(at, key, "is %d bytes long; the limit is %d", len(v), MaxCompatibleLen)
	default:
		for i := 0; i < len(v); i++ {
			if v[i] <= ' ' || v[i] > '~' {
				c.fail(at, key, "%q contains %q; use printable ASCII without spaces", v, v[i:i+1])
				return
			}
		}
	}
}

// optPath returns def when the file does not set key, else the checked and
// cleaned path it sets.
func (c *checker) optPath(def, value string, key ...string) string {
	if !c.ix.has(key...) {
		return def
	}
	return c.path(key, value)
}

// path checks that v is absolute, has no ".." element and no control
// character, and returns it cleaned (no "//", "/./" or trailing "/").
func (c *checker) path(key []string, v string) string {
	if why := badPath(v); why != "" {
		c.fail(c.ix.value(key...), key, "%s", why)
		return v
	}
	return path.Clean(v)
}

func badPath(v string) string {
	switch {
	case v == "":
		return "must be an absolute path, not empty"
	case !strings.HasPrefix(v, "/"):
		return fmt.Sprintf("%q is not an absolute path", v)
	case hasDotDot(v):
		return fmt.Sprintf(`%q contains a ".." element`, v)
	}
	return badText(v)
}

func hasDotDot(p string) bool {
	return slices.Contains(strings.Split(p, "/"), "..")
}

// badText rejects strings that are not valid UTF-8 or hold control
// characters, which have no place in paths, names or arguments.
func badText(s string) string {
	if !utf8.ValidString(s) {
		return fmt.Sprintf("%q is not valid UTF-8", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Sprintf("%q contains a control character", s)
		}
	}
	return ""
}

// argv checks a command line: not empty, and its program an absolute path
// (or, when bare is true, a program name without '/' looked up in PATH).
func (c *checker) argv(key []string, argv []string, bare bool) {
	if len(argv) == 0 {
		c.fail(c.ix.value(key...), key, "must not be empty")
		return
	}
	for i, arg := range argv {
		if why := badText(arg); why != "" {
			ek := with(key, elemPart(i))
			c.fail(c.ix.value(ek...), ek, "%s", why)
		}
	}
	ek := with(key, elemPart(0))
	at, prog := c.ix.value(ek...), argv[0]
	switch {
	case prog == "":
		c.fail(at, ek, "the program must not be empty")
	case bare && !strings.Contains(prog, "/"):
	case !strings.HasPrefix(prog, "/") && bare:
		c.fail(at, ek, "%q must be an absolute path or a program name without '/'", prog)
	case !strings.HasPrefix(prog, "/"):
		c.fail(at, ek, "%q must be an absolute path", prog)
	case hasDotDot(prog):
		c.fail(at, ek, `%q contains a ".." element`, prog)
	}
}

// with returns key extended by parts, without sharing key's array.
func with(key []string, parts ...string) []string {
	return append(slices.Clip(key), parts...)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// name checks the name of a slot, group or alias (the last part of key).
func (c *checker) name(key []string, what string) {
	name := key[len(key)-1]
	if !validName(name) {
		c.fail(c.ix.key(key...), key, "invalid %s name %q: use 1 to 64 characters a-z 0-9 . _ - starting with a letter or digit", what, name)
	}
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		lower := b >= 'a' && b <= 'z' || b >= '0' && b <= '9'
		if !lower && (i == 0 || b != '.' && b != '_' && b != '-') {
			return false
		}
	}
	return true
}

// slots checks [slots] or applies the default A/B pair.
func (c *checker) slots() {
	cfg := c.cfg
	if !c.ix.has("slots") {
		cfg.Slots = map[string]Slot{
			"system-a": {Type: SlotBlock, Partition: 2},
			"system-b": {Type: SlotBlock, Partition: 3},
		}
		return
	}
	if len(cfg.Slots) == 0 {
		c.fail(c.ix.key("slots"), []string{"slots"},
			"no slots are defined; leave out [slots] for the default system-a (partition 2) and system-b (partition 3)")
		return
	}
	for _, name := range sortedKeys(cfg.Slots) {
		s := cfg.Slots[name]
		c.name([]string{"slots", name}, "slot")
		c.slot(name, &s)
		cfg.Slots[name] = s
	}
	c.slotTargets()
}

func (c *checker) slot(name string, s *Slot) {
	key := []string{"slots", name}
	tk := with(key, "type")
	if !c.ix.has(tk...) {
		c.fail(c.ix.key(key...), key, "type is missing (block, file, directory or custom)")
		return
	}
	allowed, ok := slotOptions[s.Type]
	if !ok {
		c.fail(c.ix.value(tk...), tk, "unknown slot type %q (use block, file, directory or custom)", s.Type)
		return
	}
	for _, opt := range slotKeys {
		ok := with(key, opt)
		if opt != "type" && c.ix.has(ok...) && !slices.Contains(allowed, opt) {
			c.fail(c.ix.key(ok...), nil, "%s does not apply to a %s slot", displayPath(ok), s.Type)
		}
	}
	switch s.Type {
	case SlotBlock:
		c.blockSlot(key, s)
	case SlotFile, SlotDirectory:
		if !c.ix.has(with(key, "path")...) {
			c.fail(c.ix.key(key...), key, "path is missing: a %s slot needs an absolute path", s.Type)
			return
		}
		s.Path = c.path(with(key, "path"), s.Path)
	case SlotCustom:
		if !c.ix.has(with(key, "handler")...) {
			c.fail(c.ix.key(key...), key, "handler is missing: a custom slot needs the program that receives the payload on stdin")
			return
		}
		c.argv(with(key, "handler"), s.Handler, false)
	}
}

func (c *checker) blockSlot(key []string, s *Slot) {
	dk, pk := with(key, "device"), with(key, "partition")
	dev, part := c.ix.has(dk...), c.ix.has(pk...)
	switch {
	case dev && part:
		at := slices.MaxFunc([]place{c.ix.key(dk...), c.ix.key(pk...)}, comparePlaces)
		c.fail(at, key, "set device or partition, not both")
	case !dev && !part:
		c.fail(c.ix.key(key...), key, "a block slot needs device (a path) or partition (a number on the root disk)")
	case dev:
		s.Device = c.path(dk, s.Device)
	case s.Partition < 1 || s.Partition > MaxPartition:
		c.fail(c.ix.value(pk...), pk, "must be between 1 and %d, got %d", MaxPartition, s.Partition)
	}
}

// slotTargets rejects two slots that write the same place, and file or
// directory slots that lie inside a directory slot: writing one would write
// the other, whichever group it belongs to.
func (c *checker) slotTargets() {
	names := sortedKeys(c.cfg.Slots)
	dirs := map[string]string{}
	for _, name := range names {
		if s := c.cfg.Slots[name]; s.Type == SlotDirectory && strings.HasPrefix(s.Path, "/") {
			dirs[s.Path] = name
		}
	}
	owner := map[string]string{}
	for _, name := range names {
		s := c.cfg.Slots[name]
		target, opt := slotTarget(s)
		if target == "" {
			continue
		}
		key := []string{"slots", name, opt}
		if other, dup := owner[target]; dup {
			c.fail(c.ix.value(key...), key, "%s is also used by slot %q", target, other)
			continue
		}
		owner[target] = name
		if opt != "path" || !strings.HasPrefix(s.Path, "/") {
			continue
		}
		for dir := path.Dir(s.Path); ; dir = path.Dir(dir) {
			if other, ok := dirs[dir]; ok && other != name {
				c.fail(c.ix.value(key...), key, "%q lies inside directory slot %q", s.Path, other)
				break
			}
			if dir == "/" {
				break
			}
		}
	}
}

// slotTarget describes where a slot writes, and the key that says so.
func slotTarget(s Slot) (target, key string) {
	switch {
	case s.Type == SlotBlock && s.Device != "":
		return fmt.Sprintf("device %q", s.Device), "device"
	case s.Type == SlotBlock && s.Partition != 0:
		return fmt.Sprintf("partition %d", s.Partition), "partition"
	case (s.Type == SlotFile || s.Type == SlotDirectory) && s.Path != "":
		return fmt.Sprintf("path %q", s.Path), "path"
	}
	return "", ""
}

// groups checks [groups] or applies the default groups a and b.
func (c *checker) groups() {
	cfg := c.cfg
	if !c.ix.has("groups") {
		cfg.Groups = map[string]Group{
			"a": {Slots: map[string]string{"system": "system-a"}},
			"b": {Slots: map[string]string{"system": "system-b"}},
		}
		for _, g := range []string{"a", "b"} {
			slot := cfg.Groups[g].Slots["system"]
			if _, ok := cfg.Slots[slot]; !ok {
				c.failHint(place{}, `add [groups.a] and [groups.b] with slots = { system = "<slot>" }`, []string{"groups"},
					"not set, so group %s defaults to system = %q, but slot %q is not defined", g, slot, slot)
			}
		}
		return
	}
	if len(cfg.Groups) < 2 {
		c.fail(c.ix.key("groups"), []string{"groups"}, "at least two groups are needed, found %d", len(cfg.Groups))
	}
	for _, g := range sortedKeys(cfg.Groups) {
		c.group(g)
	}
	c.sharedSlots()
}

func (c *checker) group(g string) {
	key := []string{"groups", g}
	c.name(key, "group")
	grp := c.cfg.Groups[g]
	if len(grp.Slots) == 0 {
		c.fail(c.ix.key(with(key, "slots")...), key, `has no slots; add slots = { system = "<slot>" }`)
	}
	for _, alias := range sortedKeys(grp.Slots) {
		ak := with(key, "slots", alias)
		c.name(ak, "alias")
		if slot := grp.Slots[alias]; !c.slotExists(slot) {
			c.fail(c.ix.value(ak...), ak, "slot %q is not defined", slot)
		}
	}
	if why := badText(grp.FactoryVersion); why != "" {
		fk := with(key, "factory-version")
		c.fail(c.ix.value(fk...), fk, "%s", why)
	}
}

func (c *checker) slotExists(name string) bool {
	_, ok := c.cfg.Slots[name]
	return ok
}

// sharedSlots rejects a slot named by two groups (it would be written while
// its other group is active) or twice in one group.
func (c *checker) sharedSlots() {
	type ref struct {
		key []string
		at  place
	}
	refs := map[string][]ref{}
	for _, g := range sortedKeys(c.cfg.Groups) {
		for alias, slot := range c.cfg.Groups[g].Slots {
			key := []string{"groups", g, "slots", alias}
			refs[slot] = append(refs[slot], ref{key, c.ix.value(key...)})
		}
	}
	for _, slot := range sortedKeys(refs) {
		rs := refs[slot]
		slices.SortStableFunc(rs, func(a, b ref) int { return comparePlaces(a.at, b.at) })
		first := rs[0]
		for _, r := range rs[1:] {
			if g, fg := r.key[1], first.key[1]; g != fg {
				c.fail(r.at, r.key, "slot %q is in groups %q and %q; a slot shared by two groups would be written while it is active", slot, fg, g)
			} else {
				c.fail(r.at, r.key, "slot %q is already used by alias %q of this group", slot, first.key[3])
			}
		}
	}
}

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
		c.failHint(c.ix.value(tk...), flowHint, tk, "unknown boot flow %q (use grub, uboot, rpi-tryboot, systemd-boot or custom)", bf.Type)
		return
	}
	for _, opt := range bootFlowKeys {
		ok := with(key, opt)
		if opt != "type" && opt != "attempts" && c.ix.has(ok...) && !slices.Contains(allowed, opt) {
			c.fail(c.ix.key(ok...), nil, "%s does not apply to the %s flow", displayPath(ok), bf.Type)
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
	case bf.Attempts > 1 && !slices.Contains(countingFlows, bf.Type):
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
		return
	}
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
