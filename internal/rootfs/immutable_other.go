//go:build !linux

package rootfs

// clearImmutable is a no-op where there is no immutable inode attribute.
func clearImmutable(string) error { return nil }
