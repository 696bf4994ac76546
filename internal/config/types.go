package config

import "time"

// DefaultPath is where the system configuration lives on a device (under the
// root prefix).
const DefaultPath = "/etc/tandem/system.toml"

// Slot kinds.
const (
	SlotBlock     = "block"     // a block device, by device path or partition number of the root disk
	SlotFile      = "file"      // a regular file (image) at Path
	SlotDirectory = "directory" // a directory at Path (file-tree payloads)
	SlotCustom    = "custom"    // a handler program that receives the payload on stdin
)

// Boot flow types.
const (
	FlowGrub        = "grub"
	FlowUBoot       = "uboot"
	FlowRPiTryboot  = "rpi-tryboot"
	FlowSystemdBoot = "systemd-boot"
	FlowCustom      = "custom"

	// Flows that drive another update system's boot integration as it is
	// (docs/migrating.md).
	FlowMenderGrub  = "mender-grub"
	FlowMenderUBoot = "mender-uboot"
	FlowRAUCGrub    = "rauc-grub"
	FlowRAUCUBoot   = "rauc-uboot"
	FlowRugixGrub   = "rugix-grub"
)

// U-Boot environment back ends.
const (
	UBootBackendFile     = "file"      // env files on the boot partition, written by tandem itself
	UBootBackendFwSetenv = "fw-setenv" // fw_printenv / fw_setenv with FwEnvConfig
)

// MaxAttempts is the largest number of trial attempts a counting flow accepts
// (the GRUB script counts with a fixed table of digits).
const MaxAttempts = 9

// Config is the parsed, defaulted and validated /etc/tandem/system.toml.
// All paths are device paths (absolute, not yet under the root prefix).
// Optional keys are tagged omitempty so that a Config marshals back to a file
// that Parse turns into the same Config.
type Config struct {
	// File is the host path the configuration was read from (for messages).
	File string `toml:"-"`

	Compatible    string   `toml:"compatible"`               // required; bundles must carry the same string
	DataDir       string   `toml:"data-dir,omitempty"`       // default /var/lib/tandem
	KeysDir       string   `toml:"keys-dir,omitempty"`       // trusted public keys; default /etc/tandem/keys
	HooksDir      string   `toml:"hooks-dir,omitempty"`      // default /etc/tandem/hooks
	RootDisk      string   `toml:"root-disk,omitempty"`      // disk for partition-number slots; default: the disk behind the root mount
	RebootCommand []string `toml:"reboot-command,omitempty"` // default ["reboot"]; the flow may append an argument (rpi tryboot)

	Slots    map[string]Slot  `toml:"slots"`     // default: system-a = partition 2, system-b = partition 3
	Groups   map[string]Group `toml:"groups"`    // default: a = {system = "system-a"}, b = {system = "system-b"}
	BootFlow BootFlow         `toml:"boot-flow"` // required table, type required
	Download Download         `toml:"download,omitempty"`
}

// Download limits the downloads of installs from URLs (docs/delta.md,
// "Stalls, deadline, redirects"). An empty field takes tandem's default,
// noted beside it; StallWindow and Deadline are Go durations ("90s",
// "2h30m"), checked by validation.
type Download struct {
	MinRate     int    `toml:"min-rate,omitempty"`     // bytes per second a download must average over stall-window; default 1024
	StallWindow string `toml:"stall-window,omitempty"` // default "15s"
	Deadline    string `toml:"deadline,omitempty"`     // the longest one install's download may take; default "4h"
	// RedirectHeaders: RedirectSameHost (default) or RedirectAnyHost.
	RedirectHeaders string `toml:"redirect-headers,omitempty"`
}

// Values of Download.RedirectHeaders: where a redirect takes the custom
// headers of a download (--header, a watcher's headers).
const (
	RedirectSameHost = "same-host" // only to the same host and port, never from https to http
	RedirectAnyHost  = "any"       // wherever the redirect goes
)

// Windows returns StallWindow and Deadline (0 when not set).
func (d Download) Windows() (stallWindow, deadline time.Duration) {
	stallWindow, _ = time.ParseDuration(d.StallWindow)
	deadline, _ = time.ParseDuration(d.Deadline)
	return stallWindow, deadline
}

// Slot is one place that holds one copy of something updatable.
type Slot struct {
	Type      string   `toml:"type"`                // block | file | directory | custom
	Device    string   `toml:"device,omitempty"`    // block: device path (exclusive with Partition)
	Partition int      `toml:"partition,omitempty"` // block: partition number on the root disk (exclusive with Device)
	Path      string   `toml:"path,omitempty"`      // file, directory: absolute path
	Handler   []string `toml:"handler,omitempty"`   // custom: argv of the handler program (payload on stdin)
	// Resize (file): the file takes its payload's size (boot files: a
	// kernel, an initramfs, a command line); without it the file is an
	// image of fixed size that a payload may not outgrow.
	Resize bool `toml:"resize,omitempty"`
}

// Group is a boot group: the slots that boot together, by alias.
type Group struct {
	Slots          map[string]string `toml:"slots"`                     // alias → slot name; alias "system" is the root filesystem
	FactoryVersion string            `toml:"factory-version,omitempty"` // version of the factory image in this group ("" = unknown / from os-release)
}

// BootFlow selects and configures the boot flow. Only the options of the
// selected type may be set; the others are rejected.
type BootFlow struct {
	Type     string `toml:"type"`               // grub | uboot | rpi-tryboot | systemd-boot | custom | mender-grub | mender-uboot | rauc-grub | rauc-uboot | rugix-grub
	BootDir  string `toml:"boot-dir,omitempty"` // mount point of the boot partition; default /boot (all flows but custom)
	Attempts int    `toml:"attempts,omitempty"` // trial boots before falling back; default 1; >1 only for grub, uboot, custom

	// uboot, mender-uboot, rauc-uboot
	Backend       string `toml:"backend,omitempty"`         // file (default) | fw-setenv
	EnvFile       string `toml:"env-file,omitempty"`        // default <boot-dir>/uboot.env
	EnvFileRedund string `toml:"env-file-redund,omitempty"` // default <boot-dir>/uboot-redund.env
	EnvSize       int    `toml:"env-size,omitempty"`        // bytes per copy, header included; default 0x4000
	FwEnvConfig   string `toml:"fw-env-config,omitempty"`   // default /etc/fw_env.config

	// rpi-tryboot, mender-grub, mender-uboot, rugix-grub
	Partitions map[string]int `toml:"partitions,omitempty"` // group → (boot) partition number; default a = 2, b = 3

	// systemd-boot
	EFIVarsDir string            `toml:"efivars-dir,omitempty"` // default /sys/firmware/efi/efivars
	Entries    map[string]string `toml:"entries,omitempty"`     // group → loader entry id; default <group> → "tandem-<group>.conf"
	// BootCounting: each group's loader entry is written by tandem from the
	// group's boot-file slots (kernel or uki, initrd, cmdline) and tried with
	// the Boot Loader Specification's boot counting (docs/boot-flows.md).
	BootCounting bool              `toml:"boot-counting,omitempty"`
	Options      map[string]string `toml:"options,omitempty"` // boot-counting: group → kernel options of its entry

	// custom
	Controller []string `toml:"controller,omitempty"` // argv of the controller program

	// mender-grub
	EnvDir string `toml:"env-dir,omitempty"` // holds mender_grubenv1/ and mender_grubenv2/; default <boot-dir>/grub-mender-grubenv

	// rauc-grub
	GrubEnv string `toml:"grubenv,omitempty"` // RAUC's grubenv file; default <boot-dir>/grub/grubenv

	// rauc-grub, rauc-uboot
	Names map[string]string `toml:"names,omitempty"` // group → RAUC bootname; default the group name in upper case
}
