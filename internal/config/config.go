package config

// GroupNames returns the names of the boot groups, sorted.
func (c *Config) GroupNames() []string {
	return sortedKeys(c.Groups)
}

// SlotNames returns the names of the slots, sorted.
func (c *Config) SlotNames() []string {
	return sortedKeys(c.Slots)
}

// GroupOfSlot returns the boot group that slot belongs to. ok is false for a
// slot that belongs to no group (validation allows at most one).
func (c *Config) GroupOfSlot(slot string) (group string, ok bool) {
	for _, g := range c.GroupNames() {
		for _, s := range c.Groups[g].Slots {
			if s == slot {
				return g, true
			}
		}
	}
	return "", false
}
