// Package install is the update pipeline: a source (file, stdin, URL) feeds
// the bundle reader, which yields verified chunks; the installer writes them
// to the slots of a spare group, records what it installed, and only then
// asks the boot flow to try the new group. Fleet adapters and the CLI call
// Install; nothing here knows about either.
package install

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
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
	ErrDowngrade    = errors.New("downgrade refused")
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

// Reboot modes.
const (
	RebootNo  = "no"  // only write; the operator tries the group later
	RebootYes = "yes" // try the new group and reboot now
	RebootSet = "set" // try the new group at the next reboot, do not reboot
)

// Options of one installation.
type Options struct {
	Source string    // path, "-" (Stdin) or http(s) URL
	Stdin  io.Reader // for "-"
	HTTP   HTTPOptions
	// NoDelta reads a URL as one stream even when the server supports ranges.
	NoDelta bool
	// DeltaGap: fetch the bytes between two needed chunks when the gap is at
	// most this many bytes, to save a request (0 = DefaultDeltaGap, negative = never).
	DeltaGap int64
	// MaxRequest bounds one range request (0 = 8 MiB).
	MaxRequest int64

	Trust          []string // extra trusted key or certificate files (host paths)
	BundleHash     string   // a pinned bundle hash, accepted instead of a signature
	Insecure       bool     // install without any verification (loudly)
	AllowDowngrade bool
	Group          string // target group; "" = the only spare group
	Reboot         string // RebootNo (default), RebootYes or RebootSet

	// RequireSignature: with BundleHash, the bundle must also be signed by
	// a trusted key; the pin then only chooses which bundle.
	RequireSignature bool

	// Context cancels a download (nil = never); what was verified and
	// written is kept for a resume.
	Context context.Context

	Progress func(Event) // optional
	Warn     func(string)
	Now      func() time.Time
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
	// In the final "done" event of an install from a URL:
	BytesDownloaded int64 `json:"bytesDownloaded,omitempty"` // every body byte received
	BytesReused     int64 `json:"bytesReused,omitempty"`     // content copied from local slots
	ChunksFetched   int64 `json:"chunksFetched,omitempty"`
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

// Install installs the bundle from o.Source into a spare group of d.
func Install(d *device.Device, o Options) (*Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Reboot == "" {
		o.Reboot = RebootNo
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

	ctx := o.Context
	if ctx == nil {
		ctx = context.Background()
	}
	src, err := openSource(ctx, d, target, o)
	if err != nil {
		return nil, err
	}
	defer src.close()
	br := src.reader()
	if err := br.Verify(verifier(d, o)); err != nil {
		return nil, err
	}
	if err := src.check(); err != nil {
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
	// and forget what it held, before the first byte is written.
	if err := d.ForgetGroup(target); err != nil {
		return nil, err
	}
	resume, err := startJournal(d, br.Hash, target)
	if err != nil {
		return nil, err
	}
	src.resuming(resume)

	var total uint64
	for _, p := range h.Payloads {
		total += p.Size
	}
	w := &progressWriter{o: o, total: total, hash: br.Hash.String(), group: target, version: h.Version}
	for i := range h.Payloads {
		pr, done, err := src.payload(i)
		if err != nil {
			return nil, err
		}
		p, _ := pr.Info()
		w.payload = p.Name
		err = writePayload(d, pr, plan[i], w)
		done()
		if err != nil {
			return nil, fmt.Errorf("payload %s: %w", p.Name, err)
		}
	}
	if err := src.finish(); err != nil {
		return nil, err
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
	switch o.Reboot {
	case RebootSet, RebootYes:
		if err := d.TryNextLocked(target); err != nil {
			return nil, err
		}
	}
	res := &Result{BundleHash: br.Hash.String(), Group: target, Version: h.Version, BytesWritten: w.written, Transfer: src.stats()}
	if o.Reboot == RebootYes {
		if err := d.Reboot(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// verifier is the signature policy: a pinned hash, or a signature by a
// trusted key, or (only when asked) nothing. It fails closed.
func verifier(d *device.Device, o Options) bundle.Verifier {
	return func(h *bundle.Header, hash bundle.Hash, sigs []signature.Signature) error {
		if o.BundleHash != "" {
			pinned, err := bundle.ParseHash(o.BundleHash)
			if err != nil {
				return err
			}
			if pinned != hash {
				return notPinned{fmt.Sprintf("%v: bundle hash %s is not the pinned %s", signature.ErrUntrusted, hash, pinned)}
			}
			if !o.RequireSignature {
				return nil
			}
		}
		if o.Insecure {
			if o.Warn != nil {
				o.Warn("INSECURE: installing bundle " + hash.String() + " without verifying its signature")
			}
			return nil
		}
		trust, err := signature.LoadTrustDir(d.FS.Path(d.Config.KeysDir))
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		if trust == nil {
			trust = &signature.TrustStore{}
		}
		for _, f := range o.Trust {
			b, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("trust: %w", err)
			}
			if err := trust.Add(b); err != nil {
				return fmt.Errorf("trust %s: %w", f, err)
			}
		}
		return TrustVerifier(trust, o.Now(), nil)(h, hash, sigs)
	}
}

// TrustVerifier is bundle.TrustVerifier: a valid signature under trust,
// with tandem's time policy; who signed goes to signer when it is not nil.
func TrustVerifier(trust *signature.TrustStore, now time.Time, signer *signature.Signer) bundle.Verifier {
	return bundle.TrustVerifier(trust, now, signer)
}

// payloadStream yields one payload's verified content, by chunk or as bytes.
type payloadStream interface {
	io.Reader
	Next() (bundle.Chunk, error)
	Info() (*bundle.Payload, []bundle.Entry)
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
	bv, _ := bundle.ParseVersion(h.Version) // valid: the header parser checked it
	if installed, _ := d.GroupVersion(st.Active); installed != "" {
		iv, err := bundle.ParseVersion(installed)
		if err == nil && bv.Compare(iv) < 0 && !o.AllowDowngrade {
			return nil, fmt.Errorf("%w: bundle version %s is older than the running %s (--allow-downgrade installs it)", ErrDowngrade, h.Version, installed)
		}
		if h.MinVersion != "" {
			mv, _ := bundle.ParseVersion(h.MinVersion)
			if err != nil || iv.Compare(mv) < 0 {
				return nil, fmt.Errorf("%w: the bundle needs version %s or later installed, the device runs %s", ErrIncompatible, h.MinVersion, installed)
			}
		}
	} else if h.MinVersion != "" {
		return nil, fmt.Errorf("%w: the bundle needs version %s or later installed, the running version is unknown", ErrIncompatible, h.MinVersion)
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
// slot that does not exist yet or is empty has no limit).
func slotCapacity(d *device.Device, s config.Slot) (uint64, bool) {
	p, err := d.SlotPath(s)
	if err != nil || (s.Type != config.SlotBlock && s.Type != config.SlotFile) {
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
func writePayload(d *device.Device, pr payloadStream, plan slotPlan, w *progressWriter) error {
	p, _ := pr.Info()
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
func writeImage(d *device.Device, pr payloadStream, plan slotPlan, w *progressWriter) error {
	p, err := d.SlotPath(plan.slot)
	if err != nil {
		return err
	}
	if err := forgetSlotIndex(d, plan.name); err != nil {
		return err
	}
	flag := os.O_WRONLY
	if plan.slot.Type == config.SlotFile {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	for {
		c, err := pr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// Keep what was verified so far: a resumed install finds it.
			bw.Flush()
			f.Close()
			return err
		}
		if _, err := bw.Write(c.Data); err != nil {
			f.Close()
			return err
		}
		w.add(len(c.Data))
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	payload, entries := pr.Info()
	return saveSlotIndex(d, plan.name, payload, entries)
}

// runHandler streams the payload to a handler program on stdin.
func runHandler(d *device.Device, argv []string, pr payloadStream, w *progressWriter) error {
	p, _ := pr.Info()
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
	o                    Options
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
	if w.o.Progress == nil {
		return
	}
	// About every 0.5 % (and at the end).
	if step := w.total / 200; w.written-w.last < step && w.written != w.total {
		return
	}
	w.last = w.written
	w.o.Progress(Event{Event: "progress", Payload: w.payload, Bytes: w.written, Total: w.total,
		BundleHash: w.hash, Group: w.group, Version: w.version})
}
