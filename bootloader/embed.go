// Package bootloader holds the boot-loader scripts tandem's boot flows pair
// with, embedded so that `tandem sim new` can place them on a simulated
// boot partition. The rules they implement are in docs/boot-flows.md.
package bootloader

import _ "embed"

// GrubScript is grub/tandem.cfg.
//
//go:embed grub/tandem.cfg
var GrubScript []byte

// UBootScript is u-boot/boot.cmd (source; compile with mkimage -T script).
//
//go:embed u-boot/boot.cmd
var UBootScript []byte
