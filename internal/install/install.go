// Package install is the update pipeline: a source (file, stdin, URL) feeds
// the bundle reader, which yields verified chunks; the installer writes them
// to the slots of a spare group, records what it installed, and only then
// asks the boot flow to try the new group. Fleet adapters and the CLI call
// Install; nothing here knows about either.
package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime/debug"
	"slices"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/cmdout"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/hooks"
	"github.com/tandem-ota/tandem/internal/signature"
)

// Sentinel errors for the installer's policy.
var (
	ErrIncompatible = errors.New("bundle is not for this device")
	ErrDowngrade    = device.ErrDowngrade // older than the running version, or that is unknown
	ErrPayload      = errors.New("payload does not fit the device")
	// ErrNotPinned: the bundle's hash is not the pinned one (it is also a
	// signature.ErrUntrusted). Fleet adapters tell it from a badly signed
	// bundle: the source served another file, which may be fixed later.
	ErrNotPinned = errors.New("bundle hash is not the pinned one")
)

// notPinned is a bundle hash mismatch: ErrUntrusted and ErrNotPinned.
type notPinned struct{ msg string }

func (e notPinned) Error() string { return e.msg }
func (e notPinned) Is(target error) bool {
	return target == signature.ErrUntrusted || target == ErrNotPinned
}

// Options of one installation, by concern: what to install and where,
// whom to trust, which versions to accept, how to download, and what to tell
// the caller while it runs.
type Options struct {
	Source string    // path, "-" (Stdin) or http(s) URL
	Stdin  io.Reader // for "-"
	Group  string    // target group; "" = the only spare group
	// Patches are the patches the fleet side offers with the bundle
	// (PatchRef); when there are any, the device picks among them instead
	// of looking next to the bundle (docs/delta.md, "Publishing patches").
	Patches []PatchRef

	Trust    Trust
	Policy   Policy
	HTTP     HTTPOptions
	Progress Progress
}

// Trust says which bundles Install accepts. It fails closed: without a
// pin, a bundle must carry a valid signature by a key of the device's keys
// directory or of Files, unless Insecure.
type Trust struct {
	Files      []string // extra trusted key or certificate files (host paths)
	BundleHash string   // a pinned bundle hash, accepted instead of a signature
	// RequireSignature: with BundleHash, the bundle must also be signed by
	// a trusted key; the pin then only chooses which bundle.
	RequireSignature bool
	Insecure         bool             // install without any verification (loudly)
	Now              func() time.Time // the clock of the signature time policy (nil = time.Now)
}

// Policy is the installer's version policy beyond compatibility.
type Policy struct {
	AllowDowngrade bool // install a version older than the running one
}

// Progress receives what happens during an install; both are optional.
type Progress struct {
	Event func(Event)  // progress reports
	Warn  func(string) // warnings (an insecure install)
}

// Event is one progress report (docs/cli.md, "update install").
type Event struct {
	Event      string `json:"event"` // "progress", "done" or "error"
	Payload    string `json:"payload,omitempty"`
	Bytes      uint64 `json:"bytes"` // bytes written to slots and handlers so far
	Total      uint64 `json:"total"` // bytes to write in all
	BundleHash string `json:"bundleHash,omitempty"`
	Group      string `json:"group,omitempty"`
	Version    string `json:"version,omitempty"`
	Message    string `json:"message,omitempty"`
	// Method: in a "method" event (one per payload, before its bytes), how
	// the payload comes (patch, delta or full; Message says why); in the
	// final "done" event, the methods of all payloads joined by "+".
	Method string `json:"method,omitempty"`
	Reason string `json:"reason,omitempty"` // in "done": why, payload by payload
	// In the final "done" event of an install from a URL:
	BytesDownloaded int64 `json:"bytesDownloaded,omitempty"` // every body byte received
	BytesReused     int64 `json:"bytesReused,omitempty"`     // content copied from local slots
	ChunksFetched   int64 `json:"chunksFetched,omitempty"`
	ChunksPatched   int64 `json:"chunksPatched,omitempty"`
	Requests        int64 `json:"requests,omitempty"`
}

// Result describes a finished installation.
type Result struct {
	BundleHash   string
	Group        string
	Version      string
	BytesWritten uint64
	Transfer     DeltaStats // what was downloaded and what was reused
}

// MemoryLimit is the Go runtime's soft memory limit during an install
// (runtime/debug.SetMemoryLimit), unless GOMEMLIMIT or a lower limit is
// set. An install's live heap is its bounded buffers, about 20 MiB (the
// bundle reader's pipeline, a patch segment and its download batch); with
// the runtime's default pacing the heap grows to twice that between
// collections. The limit makes the collector run before that instead, so
// a device's peak RSS stays near 50 MiB whatever the image size (a 1 GiB
// patch install: 70 MiB without it; docs/benchmarks-delta.md).
const MemoryLimit = 40 << 20

// limitMemory sets MemoryLimit and returns what restores the limit before.
func limitMemory() (restore func()) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	old := debug.SetMemoryLimit(-1)
	if old <= MemoryLimit {
		return func() {}
	}
	debug.SetMemoryLimit(MemoryLimit)
	return func() { debug.SetMemoryLimit(old) }
}

// Install installs the bundle from o.Source into a spare group of d and
// records it; ctx cancels a download (what was verified and written is kept
// for a resume). It neither sets a trial nor reboots: the caller decides,
// with Activate (or, for a fleet job, through its agent).
func Install(ctx context.Context, d *device.Device, o Options) (*Result, error) {
	defer limitMemory()()
	if o.Trust.Now == nil {
		o.Trust.Now = time.Now
	}
	st, unlock, err := d.LockStatus()
	if err != nil {
		return nil, err
	}
	defer unlock()
	target, err := st.Target(o.Group)
	if err != nil {
		return nil, err
	}

	src, err := openSource(ctx, d, st.Active, target, o)
	if err != nil {
		return nil, err
	}
	defer src.close()
	br := src.reader()
	if err := br.Verify(verifier(d, o)); err != nil {
		return nil, err
	}
	h := br.Header
	plan, err := planPayloads(d, st, target, h, o)
	if err != nil {
		return nil, err
	}
	if err := hooks.Run(d.FS, d.Config.HooksDir, "update-install", "pre-update",
		"TANDEM_BUNDLE_HASH="+br.Hash.String(), "TANDEM_BUNDLE_VERSION="+h.Version, "TANDEM_GROUP="+target); err != nil {
		return nil, err
	}
	// The target must not boot half-written: cancel a pending try of it
	// and mark it incomplete, durably, before the first byte is written
	// (RecordInstall clears the mark once every payload is verified).
	if err := d.BeginWrite(target, h.Version, br.Hash.String()); err != nil {
		return nil, err
	}
	resume, err := startJournal(d, br.Hash, target)
	if err != nil {
		return nil, err
	}

	var total uint64
	for _, p := range h.Payloads {
		total += p.Size
	}
	w := &progressWriter{report: o.Progress.Event, total: total, hash: br.Hash.String(), group: target, version: h.Version}
	for i := range h.Payloads {
		pr, err := src.payload(i, resume)
		if err != nil {
			return nil, err
		}
		w.payload = pr.Payload.Name
		before := w.written
		err = writePayload(d, pr, plan[i], w)
		pr.Close()
		if ds, ok := src.(*deltaSource); ok && err != nil && ctx.Err() == nil {
			// A patch that failed (a chunk that did not verify, a
			// tampered or lost segment) is abandoned for chunk reuse;
			// the chunks it wrote were verified and are kept.
			fb, ferr := ds.fallback(i, err)
			switch {
			case ferr != nil:
				err = ferr
			case fb != nil:
				w.written, w.last = before, before
				err = writePayload(d, fb, plan[i], w)
				fb.Close()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("payload %s: %w", pr.Payload.Name, err)
		}
	}
	// A cancelled install records nothing, even when its last chunks were
	// already fetched: the journal stays, and the next install resumes.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("install cancelled: %w", err)
	}
	// The journal goes first: losing it only loses the resume shortcut.
	if err := endJournal(d); err != nil {
		return nil, err
	}
	if err := d.RecordInstall(target, h.Version, br.Hash.String()); err != nil {
		return nil, err
	}
	if err := hooks.Run(d.FS, d.Config.HooksDir, "update-install", "post-update",
		"TANDEM_BUNDLE_HASH="+br.Hash.String(), "TANDEM_BUNDLE_VERSION="+h.Version, "TANDEM_GROUP="+target); err != nil {
		return nil, err
	}
	return &Result{BundleHash: br.Hash.String(), Group: target, Version: h.Version, BytesWritten: w.written, Transfer: src.stats()}, nil
}

// Reboot is what the caller of an install asks for once it is recorded; the
// values are the CLI's --reboot words.
type Reboot string

// Reboot modes.
const (
	RebootNo  Reboot = "no"  // only write; the operator tries the group later
	RebootSet Reboot = "set" // try the new group at the next reboot, do not reboot
	RebootYes Reboot = "yes" // try the new group and reboot now
)

// Activate does what the caller of Install asked for after it: with
// RebootSet or RebootYes it sets the trial of the installed group (only while
// that group still holds the installed bundle: another install may have
// started on it since), with RebootYes it then reboots.
func Activate(d *device.Device, r *Result, mode Reboot) error {
	switch mode {
	case RebootNo:
		return nil
	case RebootSet, RebootYes:
	default:
		return fmt.Errorf("reboot mode %q: want no, set or yes", mode)
	}
	if err := tryInstalled(d, r); err != nil {
		return err
	}
	if mode == RebootYes {
		return d.Reboot()
	}
	return nil
}

// tryInstalled sets the trial of r's group under the device lock, once it
// checked that the group is spare and still holds r's bundle.
func tryInstalled(d *device.Device, r *Result) error {
	st, unlock, err := d.LockStatus()
	if err != nil {
		return err
	}
	defer unlock()
	if err := st.CheckWritable(r.Group); err != nil {
		return err
	}
	db, err := d.LoadState()
	if err != nil {
		return err
	}
	if g := db.Groups[r.Group]; g.BundleHash != r.BundleHash {
		return fmt.Errorf("group %s no longer holds bundle %s (another install changed it): not trying it", r.Group, r.BundleHash)
	}
	return d.TryNextLocked(r.Group)
}

// verifier is the signature policy: a pinned hash, or a signature by a
// trusted key, or (only when asked) nothing. It fails closed.
func verifier(d *device.Device, o Options) bundle.Verifier {
	t := o.Trust
	return func(h *bundle.Header, hash bundle.Hash, sigs []signature.Signature) error {
		if t.BundleHash != "" {
			pinned, err := bundle.ParseHash(t.BundleHash)
			if err != nil {
				return err
			}
			if pinned != hash {
				return notPinned{fmt.Sprintf("%v: bundle hash %s is not the pinned %s", signature.ErrUntrusted, hash, pinned)}
			}
			if !t.RequireSignature {
				return nil
			}
		}
		if t.Insecure {
			if o.Progress.Warn != nil {
				o.Progress.Warn("INSECURE: installing bundle " + hash.String() + " without verifying its signature")
			}
			return nil
		}
		trust, err := signature.LoadTrust(d.FS.Path(d.Config.KeysDir), t.Files)
		if err != nil {
			return err
		}
		return bundle.TrustVerifier(trust, t.Now(), nil)(h, hash, sigs)
	}
}

// slotPlan is where one payload goes.
type slotPlan struct {
	slot config.Slot
	name string // slot name ("" for execute payloads)
}

// planPayloads checks compatibility, version policy, targets and sizes
// before any byte is written.
func planPayloads(d *device.Device, st device.Status, target string, h *bundle.Header, o Options) ([]slotPlan, error) {
	if h.Compatible != d.Config.Compatible {
		return nil, fmt.Errorf("%w: bundle compatible %q, device %q", ErrIncompatible, h.Compatible, d.Config.Compatible)
	}
	installed, _ := d.GroupVersion(st.Active)
	if err := device.CheckDowngrade(installed, h.Version, o.Policy.AllowDowngrade); err != nil {
		return nil, err
	}
	if h.MinVersion != "" {
		if installed == "" {
			return nil, fmt.Errorf("%w: the bundle needs version %s or later installed, the running version is unknown", ErrIncompatible, h.MinVersion)
		}
		if c, err := device.CompareVersions(installed, h.MinVersion); err != nil || c < 0 {
			return nil, fmt.Errorf("%w: the bundle needs version %s or later installed, the device runs %s", ErrIncompatible, h.MinVersion, installed)
		}
	}
	group := d.Config.Groups[target]
	plan := make([]slotPlan, len(h.Payloads))
	for i := range h.Payloads {
		p := &h.Payloads[i]
		if p.Kind == bundle.KindExecute {
			continue
		}
		name, ok := group.Slots[p.Target]
		if !ok {
			return nil, fmt.Errorf("%w: payload %s is for slot %q, which group %s does not have", ErrPayload, p.Name, p.Target, target)
		}
		slot := d.Config.Slots[name]
		want := map[bundle.Kind][]string{
			bundle.KindSlot: {config.SlotBlock, config.SlotFile, config.SlotCustom},
			bundle.KindTree: {config.SlotDirectory},
		}[p.Kind]
		if !slices.Contains(want, slot.Type) {
			return nil, fmt.Errorf("%w: payload %s (%s) cannot go into %s slot %s", ErrPayload, p.Name, p.Kind, slot.Type, name)
		}
		if capacity, ok := slotCapacity(d, slot); ok && p.Size > capacity {
			return nil, fmt.Errorf("%w: payload %s has %d bytes, slot %s holds %d", ErrPayload, p.Name, p.Size, name, capacity)
		}
		plan[i] = slotPlan{slot: slot, name: name}
	}
	return plan, nil
}

// slotCapacity returns how many bytes a block or file slot holds (a file
// slot that does not exist yet or is empty, or that takes its payload's
// size, has no limit).
func slotCapacity(d *device.Device, s config.Slot) (uint64, bool) {
	p, err := d.SlotPath(s)
	if err != nil || (s.Type != config.SlotBlock && s.Type != config.SlotFile) || s.Resize {
		return 0, false
	}
	f, err := os.Open(p)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil || (n == 0 && s.Type == config.SlotFile) {
		return 0, false
	}
	return uint64(n), true
}

// writePayload streams one payload's verified bytes to its destination.
func writePayload(d *device.Device, pr *bundle.PayloadReader, plan slotPlan, w *progressWriter) error {
	p := pr.Payload
	switch {
	case p.Kind == bundle.KindExecute:
		return runHandler(d, p.Handler, pr, w)
	case plan.slot.Type == config.SlotCustom:
		return runHandler(d, plan.slot.Handler, pr, w)
	case p.Kind == bundle.KindTree:
		dir, err := d.SlotPath(plan.slot)
		if err != nil {
			return err
		}
		if err := emptyDir(dir); err != nil {
			return err
		}
		if err := extractTree(io.TeeReader(pr, w), dir); err != nil {
			return err
		}
		// The tar may end before the payload: read (and verify) the rest.
		if _, err := io.Copy(io.Discard, pr); err != nil {
			return err
		}
		return syncTree(dir)
	}
	return writeImage(d, pr, plan, w)
}

// writeImage writes a slot image chunk by chunk, then syncs it and records
// the slot's chunk index.
func writeImage(d *device.Device, pr *bundle.PayloadReader, plan slotPlan, w *progressWriter) error {
	if err := forgetSlotIndex(d, plan.name); err != nil {
		return err
	}
	f, err := d.OpenSlot(plan.slot)
	if err != nil {
		return err
	}
	if err := newSlotWriter(f).writeAll(pr, w.add); err != nil {
		f.Close()
		return err
	}
	if plan.slot.Resize {
		if err := f.Truncate(int64(pr.Payload.Size)); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return saveSlotIndex(d, plan.name, pr.Payload, pr.Entries)
}

// runHandler streams the payload to a handler program on stdin.
func runHandler(d *device.Device, argv []string, pr *bundle.PayloadReader, w *progressWriter) error {
	p := pr.Payload
	cmd := exec.Command(d.FS.Path(argv[0]), argv[1:]...)
	cmd.Env = append(os.Environ(), "TANDEM_ROOT="+d.FS.Path("/"), "TANDEM_PAYLOAD="+p.Name)
	cmd.Stdin = io.TeeReader(pr, w)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("handler %s: %w: %s", argv[0], err, cmdout.LastLine(string(out)))
	}
	// The handler may stop reading early: the rest must still verify.
	if _, err := io.Copy(io.Discard, pr); err != nil {
		return err
	}
	return nil
}

func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(path.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func syncTree(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// progressWriter counts written bytes and reports progress events.
type progressWriter struct {
	report               func(Event)
	total, written, last uint64
	hash, group, version string
	payload              string
}

func (w *progressWriter) Write(b []byte) (int, error) {
	w.add(len(b))
	return len(b), nil
}

func (w *progressWriter) add(n int) {
	w.written += uint64(n)
	if w.report == nil {
		return
	}
	// About every 0.5 % (and at the end).
	if step := w.total / 200; w.written-w.last < step && w.written != w.total {
		return
	}
	w.last = w.written
	w.report(Event{Event: "progress", Payload: w.payload, Bytes: w.written, Total: w.total,
		BundleHash: w.hash, Group: w.group, Version: w.version})
}
