package config

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// slotOptions lists the keys each slot type takes besides type.
var slotOptions = map[string][]string{
	SlotBlock:     {"device", "partition"},
	SlotFile:      {"path", "resize"},
	SlotDirectory: {"path"},
	SlotCustom:    {"handler"},
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
		optKey := with(key, opt)
		if opt != "type" && c.ix.has(optKey...) && !slices.Contains(allowed, opt) {
			c.fail(c.ix.key(optKey...), nil, "%s does not apply to a %s slot", displayPath(optKey), s.Type)
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
	if c.root != "" && len(c.errs) == 0 {
		c.resolvedTargets(names)
	}
}

// resolvedTargets is slotTargets on the system under c.root: two slots
// whose paths or devices differ as written but reach the same file or
// device (through a symbolic link, a hard link, another node of the same
// device), and a slot that reaches into a directory slot, are refused.
func (c *checker) resolvedTargets(names []string) {
	type seen struct{ name, path string }
	owner := map[string]seen{}
	dirs := map[string]seen{}
	for _, name := range names {
		if s := c.cfg.Slots[name]; s.Type == SlotDirectory && s.Path != "" {
			dirs[resolve(c.root, s.Path)] = seen{name, s.Path}
		}
	}
	for _, name := range names {
		s := c.cfg.Slots[name]
		p, opt := s.Path, "path"
		if s.Type == SlotBlock {
			p, opt = s.Device, "device"
		}
		if p == "" {
			continue
		}
		key := []string{"slots", name, opt}
		real := resolve(c.root, p)
		id := identity(c.root, real)
		if other, dup := owner[id]; dup {
			c.fail(c.ix.value(key...), key, "%q is the same %s as %q of slot %q (%s)", p, opt, other.path, other.name, id)
			continue
		}
		owner[id] = seen{name, p}
		if opt != "path" {
			continue
		}
		for dir := path.Dir(real); ; dir = path.Dir(dir) {
			if other, ok := dirs[dir]; ok && other.name != name {
				c.fail(c.ix.value(key...), key, "%q lies inside directory slot %q (%q resolves to %q)", p, other.name, p, real)
				break
			}
			if dir == "/" {
				break
			}
		}
	}
}

// maxLinks bounds the symbolic links resolve follows (as the kernel's 40).
const maxLinks = 40

// resolve returns the device path p with every symbolic link on the way
// replaced by its target, as the system under root sees it: an absolute
// target is taken under root, and ".." never leaves root. Resolution stops
// at the first component that does not exist (a file slot's image may not
// exist yet); the rest is kept as written.
func resolve(root, p string) string {
	rest := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
	cur := "/"
	for links := 0; len(rest) > 0; {
		part := rest[0]
		rest = rest[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, part)
		host := hostPath(root, next)
		fi, err := os.Lstat(host)
		if err != nil {
			return path.Join(append([]string{next}, rest...)...)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		target, err := os.Readlink(host)
		if links++; err != nil || links > maxLinks {
			return path.Join(append([]string{next}, rest...)...)
		}
		if !path.IsAbs(target) {
			target = path.Join(cur, target)
		}
		rest = append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), rest...)
		cur = "/"
	}
	return cur
}

// identity names what the resolved device path p is on the system under
// root: the device number of a device node, the file system and inode of
// an existing file (so hard links and bind mounts compare equal), else the
// path itself.
func identity(root, p string) string {
	fi, err := os.Stat(hostPath(root, p))
	if err != nil {
		return fmt.Sprintf("path %q", p)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !ok:
		return fmt.Sprintf("path %q", p)
	case fi.Mode()&fs.ModeDevice != 0:
		return fmt.Sprintf("device %d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	}
	return fmt.Sprintf("inode %d of device %d:%d", st.Ino, unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)))
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
	fk := with(key, "factory-version")
	if why := badText(grp.FactoryVersion); why != "" {
		c.fail(c.ix.value(fk...), fk, "%s", why)
	} else if grp.FactoryVersion != "" {
		if err := CheckVersion(grp.FactoryVersion); err != nil {
			c.fail(c.ix.value(fk...), fk, "%v", err)
		}
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
