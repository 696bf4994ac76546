// Package rugix maps the operations of rugix-ctrl's command line — the
// subset the public Rugix fleet integrations call (Mender module,
// thin-edge.io workflow, Memfault template, Nexigon script) — onto tandem,
// so that those scripts run unchanged on a tandem device through a
// rugix-ctrl symlink (docs/integrations/rugix-ctrl.md). Unlike the other
// fleet integrations it keeps no job and runs no loop: the fleet's own
// script drives the device, one command at a time, and reads the boot
// state back from system info. rugix-ctrl's own formats live here too (its
// system info JSON, its progress lines); the command line itself (flags,
// text output, exit codes) is internal/cli/rugix.go.
package rugix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/chunker"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/install"
)

// ParseReboot maps rugix-ctrl's --reboot values onto tandem's: deferred
// (arrange the trial at the next boot) is set, since the trial boot is
// arranged now with the same effect at the next reboot.
func ParseReboot(s string) (install.Reboot, error) {
	if s == "deferred" {
		return install.RebootSet, nil
	}
	if m, err := install.ParseReboot(s); err == nil {
		return m, nil
	}
	return "", fmt.Errorf("--reboot %q: want yes, no, set or deferred", s)
}

// ParseBundleHash accepts tandem's bundle hash, optionally written
// "sha256:HEX".
func ParseBundleHash(s string) (string, error) {
	if alg, hex, ok := strings.Cut(s, ":"); ok {
		if alg != "sha256" {
			return "", fmt.Errorf("--bundle-hash %q: tandem bundle hashes are sha256 (64 hex digits from tandem bundle inspect), not %s", s, alg)
		}
		s = hex
	}
	if _, err := bundle.ParseHash(s); err != nil {
		return "", fmt.Errorf("--bundle-hash: %w", err)
	}
	return s, nil
}

// ParseInstallFlags checks `update install`'s options: the --reboot mode
// (ParseReboot) and the bundle hash, given as --bundle-hash or by its
// rugix-ctrl 0.8 name --verify-bundle (both: they must agree). The hash is
// "" when neither is given.
func ParseInstallFlags(reboot, bundleHash, verifyBundle string) (install.Reboot, string, error) {
	mode, err := ParseReboot(reboot)
	if err != nil {
		return "", "", err
	}
	if bundleHash != "" && verifyBundle != "" && bundleHash != verifyBundle {
		return "", "", errors.New("--bundle-hash and --verify-bundle disagree")
	}
	if bundleHash == "" {
		bundleHash = verifyBundle
	}
	if bundleHash == "" {
		return mode, "", nil
	}
	hash, err := ParseBundleHash(bundleHash)
	return mode, hash, err
}

// Progress writes rugix-ctrl's progress lines, {"event":"UpdateProgress",
// "progress":P} with P in percent, for install events: about one every
// 0.4 %, and always the one at 100 %.
type Progress struct {
	enc  *json.Encoder
	last float64
}

// NewProgress returns a Progress that writes its lines to w.
func NewProgress(w io.Writer) *Progress { return &Progress{enc: json.NewEncoder(w), last: -1} }

// progressEvent is rugix-ctrl's progress line.
type progressEvent struct {
	Event    string  `json:"event"`
	Progress float64 `json:"progress"`
}

// Event writes the line for e when it is a progress event that moved far
// enough since the last line.
func (p *Progress) Event(e install.Event) {
	if e.Event != "progress" || e.Total == 0 {
		return
	}
	pct := math.Round(1000*float64(e.Bytes)/float64(e.Total)) / 10
	if pct-p.last < 0.4 && !(pct == 100 && p.last < 100) {
		return
	}
	p.last = pct
	_ = p.enc.Encode(progressEvent{Event: "UpdateProgress", Progress: pct})
}

// Install is `update install`: the verified install of o.Source into the
// spare group, then, by mode, the trial boot arranged (set) and the reboot
// (yes). ctx cancels the download.
func Install(ctx context.Context, d *device.Device, o install.Options, mode install.Reboot) (*install.Result, error) {
	res, err := install.Install(ctx, d, o)
	if err != nil {
		return nil, err
	}
	return res, install.Activate(d, res, mode)
}

// RunInstall is the command `update install`: Install with tandem's
// progress bar when stdout is a terminal and rugix-ctrl's progress lines
// (Progress) when it is not, warnings and the closing line on stderr in
// say's words.
func RunInstall(ctx context.Context, d *device.Device, o install.Options, mode install.Reboot, stdout io.Writer, say func(string)) error {
	o.Progress.Warn = func(s string) { say("warning: " + s) }
	bar := install.NewPrinter(stdout, false)
	o.Progress.Event = bar.Event
	if bar.JSON {
		bar, o.Progress.Event = nil, NewProgress(stdout).Event
	}
	res, err := Install(ctx, d, o, mode)
	if bar != nil {
		bar.End(res, err)
	}
	if err != nil {
		return err
	}
	say(fmt.Sprintf("installed %s (bundle %s) into group %s", res.Version, res.BundleHash, res.Group))
	return nil
}

// Reboot is `system reboot`: with spare, the spare group boots once on
// trial.
func Reboot(d *device.Device, spare bool) error {
	if spare {
		if _, err := d.TrySpare(); err != nil {
			return err
		}
	}
	return d.Reboot()
}

// Info is what `system info` prints: rugix-ctrl's field names, filled from
// tandem's device information.
type Info struct {
	Slots map[string]Slot `json:"slots"`
	Boot  Boot            `json:"boot"`
	State State           `json:"state"`
}

// Slot is one slot in Info.
type Slot struct {
	Active bool `json:"active"`
	// Hashes is always empty: tandem records bundle hashes per group, not
	// content hashes per slot.
	Hashes    map[string]string `json:"hashes"`
	Size      *int64            `json:"size,omitempty"`
	UpdatedAt *time.Time        `json:"updatedAt,omitempty"`
}

// Boot is the boot state in Info.
type Boot struct {
	BootFlow     string                     `json:"bootFlow"`
	ActiveGroup  string                     `json:"activeGroup"`
	DefaultGroup string                     `json:"defaultGroup"`
	Groups       map[string]json.RawMessage `json:"groups"`
}

// State is rugix-ctrl's state-management status: Active when tandem's data
// directory exists (that is where it keeps what must survive an update),
// else Disabled. tandem's own state management (data partition, persistent
// paths) is reported by `tandem state info`, not here.
type State struct {
	Status string `json:"status"`
}

// SystemInfo is `system info`.
func SystemInfo(d *device.Device) (*Info, error) {
	info, err := d.Info()
	if err != nil {
		return nil, err
	}
	db, err := d.LoadState()
	if err != nil {
		db = &device.State{}
	}
	out := &Info{
		Slots: map[string]Slot{},
		Boot: Boot{BootFlow: info.Boot.BootFlow, ActiveGroup: info.Boot.ActiveGroup,
			DefaultGroup: info.Boot.DefaultGroup, Groups: map[string]json.RawMessage{}},
		State: State{Status: "Disabled"},
	}
	for g := range info.Boot.Groups {
		out.Boot.Groups[g] = json.RawMessage("{}")
	}
	for name, s := range info.Slots {
		rs := Slot{Active: s.Active, Hashes: map[string]string{}}
		if s.Type == config.SlotBlock || s.Type == config.SlotFile {
			if p, err := d.SlotPath(d.Config.Slots[name]); err == nil {
				if n, err := fileSize(p); err == nil {
					rs.Size = &n
				}
			}
		}
		if gs, ok := db.Groups[s.Group]; ok && s.Group != "" && !gs.InstalledAt.IsZero() {
			t := gs.InstalledAt
			rs.UpdatedAt = &t
		}
		out.Slots[name] = rs
	}
	if fi, err := d.FS.Stat(d.Config.DataDir); err == nil && fi.IsDir() {
		out.State.Status = "Active"
	}
	return out, nil
}

// fileSize is the size of a file, or of a block device (seek to the end).
func fileSize(p string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

// Index is how `slots create-index` chunks a slot.
type Index struct {
	Chunker bundle.ChunkerType
	Params  chunker.Params
}

// ParseIndex maps rugix-ctrl's chunker names — casync-N (content-defined,
// average N KiB) and fixed-N (N KiB blocks) — and hash algorithms, which
// are accepted but not used: tandem's index always uses SHA-256, the
// digest of its bundles.
func ParseIndex(chunkerName, hashAlg string) (Index, error) {
	kind, n, ok := strings.Cut(chunkerName, "-")
	kib, err := strconv.Atoi(n)
	if !ok || err != nil || kib < 1 || kib > 16<<10 {
		return Index{}, fmt.Errorf("chunker %q: want casync-N or fixed-N (N KiB, 1 to 16384)", chunkerName)
	}
	var x Index
	switch kind {
	case "casync":
		x = Index{bundle.ChunkerBuzhash, chunker.ParamsForAvg(kib << 10)}
	case "fixed":
		x = Index{bundle.ChunkerFixed, chunker.Fixed(kib << 10)}
	default:
		return Index{}, fmt.Errorf("chunker %q: want casync-N or fixed-N", chunkerName)
	}
	switch hashAlg {
	case "sha256", "sha512-256", "sha512":
	default:
		return Index{}, fmt.Errorf("hash algorithm %q: want sha256, sha512-256 or sha512", hashAlg)
	}
	return x, nil
}

// CreateIndex is `slots create-index`: it indexes slot's chunks for delta
// installs and says (say) how many it found. A slot the device does not
// have, or one that is not a block or file slot, is skipped with a warning:
// an index is only an optimisation, and the thin-edge.io workflow indexes
// boot-a on every device.
func CreateIndex(d *device.Device, slot string, x Index, say func(string)) error {
	s, ok := d.Config.Slots[slot]
	if !ok || (s.Type != config.SlotBlock && s.Type != config.SlotFile) {
		say(fmt.Sprintf("warning: no block or file slot %q on this device; nothing to index", slot))
		return nil
	}
	idx, err := install.ScanSlot(d, slot, x.Chunker, uint32(x.Params.Min), uint32(x.Params.Avg), uint32(x.Params.Max))
	if err != nil {
		return err
	}
	say(fmt.Sprintf("indexed slot %s: %d chunks", slot, len(idx.Entries)))
	return nil
}

// Commit is `system commit`: the running group becomes the default; say
// tells when that changed anything.
func Commit(d *device.Device, say func(string)) error {
	changed, err := d.Commit()
	if changed && err == nil {
		say("committed the running group")
	}
	return err
}

// StateReset is `state reset`: tandem's factory reset (the same request as
// `tandem state reset`), then the reboot at once, as rugix-ctrl does.
// --backup keeps the old state aside (tandem's --keep-backup); a backup name
// implies it, but tandem keeps one backup, unnamed: say warns so.
func StateReset(d *device.Device, backup bool, backupName string, say func(string)) error {
	if backupName != "" {
		backup = true
		say(fmt.Sprintf("warning: --backup-name %q: tandem keeps one backup of the state, not named (docs/integrations/rugix-ctrl.md)", backupName))
	}
	return d.ResetState(backup, true)
}
