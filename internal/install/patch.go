package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/fetch"
	"github.com/tandem-ota/tandem/internal/patch"
	"github.com/tandem-ota/tandem/internal/signature"
)

// Install methods, cheapest first (docs/delta.md): a patch for the source
// the active slot holds; chunk reuse (dynamic delta); the whole bundle.
const (
	MethodPatch = "patch"
	MethodDelta = "delta"
	MethodFull  = "full"
)

// remotePatch is a patch found next to the bundle, its header verified.
type remotePatch struct {
	url    string
	remote *fetch.Remote
	head   *patch.Head
}

// findPatch looks for a patch of the bundle for the source in the active
// group (by its recorded bundle hash, else its version): among the patches
// offered with the bundle when there are any, else next to it. It reads
// each candidate's header and checks its signature and that it produces
// this bundle, and returns the first that passes; or nil and why there is
// none to use.
func (s *deltaSource) findPatch() (*remotePatch, string) {
	if s.o.HTTP.NoPatch {
		return nil, "patches disabled (--no-patch)"
	}
	var hash string
	if db, err := s.d.LoadState(); err == nil {
		hash = db.Groups[s.active].BundleHash
	}
	version, _ := s.d.GroupVersion(s.active)
	cands, why := patchCandidates(s.o, hash, version)
	if len(cands) == 0 {
		return nil, why
	}
	var whys []string
	for _, c := range cands[:min(len(cands), maxPatchTries)] {
		p, why := s.openPatch(c)
		if p != nil {
			return p, ""
		}
		whys = append(whys, why)
	}
	return nil, strings.Join(whys, "; ")
}

// openPatch reads the header of the patch r names and checks it: a
// signature by a trusted key, the bundle it makes, its size, and the hash
// r pins, if any.
func (s *deltaSource) openPatch(r PatchRef) (*remotePatch, string) {
	url := r.URL
	if len(s.c.Headers) > 0 && !sameOrigin(url, s.o.Source) {
		return nil, "patch " + url + " is not on the bundle's host, and the install's headers (--header, hawkBit's token) go to that host only"
	}
	remote, first, body, err := s.c.Open(s.ctx, url, probeSize)
	if err != nil {
		if body != nil {
			body.Close()
		}
		return nil, "no patch at " + url + ": " + oneLine(err)
	}
	rr := &remoteReader{ctx: s.ctx, c: s.c, remote: remote, off: int64(len(first))}
	head, err := patch.ReadHead(io.MultiReader(bytes.NewReader(first), rr))
	if err != nil {
		return nil, "patch " + url + ": " + oneLine(err)
	}
	if err := s.verifyPatch(head); err != nil {
		return nil, "patch " + url + ": " + oneLine(err)
	}
	switch {
	case r.Hash != "" && head.Hash.String() != r.Hash:
		return nil, fmt.Sprintf("patch %s has hash %s, the offer names %s", url, head.Hash, r.Hash)
	case head.Header.BundleHash != s.br.Hash:
		return nil, fmt.Sprintf("patch %s makes bundle %s, not %s", url, head.Header.BundleHash, s.br.Hash)
	case head.Size() != remote.Size:
		return nil, fmt.Sprintf("patch %s has %d bytes, its header describes %d", url, remote.Size, head.Size())
	}
	return &remotePatch{url: url, remote: remote, head: head}, ""
}

// verifyPatch applies the bundle's trust rules to a patch: a signature by a
// trusted key, failing closed, unless the operator said
// --insecure-skip-verification. A pinned bundle hash does not vouch for a
// patch (the patch is only trusted to be worth decoding; its output is
// checked against the pinned bundle's chunk tables either way).
func (s *deltaSource) verifyPatch(head *patch.Head) error {
	t := s.o.Trust
	if t.Insecure {
		if s.o.Progress.Warn != nil {
			s.o.Progress.Warn("INSECURE: using patch " + head.Hash.String() + " without verifying its signature")
		}
		return nil
	}
	trust, err := signature.LoadTrust(s.d.FS.Path(s.d.Config.KeysDir), t.Files)
	if err != nil {
		return err
	}
	return patch.Verify(head.Header, head.Hash, head.Signatures, trust, t.Now())
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// patchPayload returns a reader of payload i whose chunks the patch makes
// from the active group's slot; or nil and why the patch cannot serve it
// (an error only when the install cannot go on). The source slot must hold
// exactly the source the patch names (its size and SHA-256, read now): a
// slot that was modified is not patched. The chunk table comes from the
// patch's compact form when it has one (checked against the signed header
// like any table), else from the bundle.
func (s *deltaSource) patchPayload(i int, resume bool) (*bundle.PayloadReader, string, error) {
	if !s.patchTried {
		s.patchTried = true
		s.pt, s.ptWhy = s.findPatch()
	}
	if s.pt == nil {
		return nil, s.ptWhy, nil
	}
	p := &s.br.Header.Payloads[i]
	sec := s.pt.head.Header.Section(i)
	if sec == nil {
		return nil, "the patch has no section for this payload", nil
	}
	if sec.Name != p.Name || sec.Size != p.Size {
		return nil, fmt.Sprintf("the patch's section is for %s of %d bytes", sec.Name, sec.Size), nil
	}
	srcName, ok := s.d.Config.Groups[s.active].Slots[p.Target]
	target, ok2 := s.d.Config.Groups[s.target].Slots[p.Target]
	if !ok || !ok2 {
		return nil, fmt.Sprintf("no slot %s in groups %s and %s", p.Target, s.active, s.target), nil
	}
	if ty := s.d.Config.Slots[target].Type; ty != config.SlotBlock && ty != config.SlotFile {
		return nil, fmt.Sprintf("slot %s is a %s slot (patches write block and file slots)", target, ty), nil
	}
	srcPath, err := s.d.SlotPath(s.d.Config.Slots[srcName])
	if err != nil {
		return nil, oneLine(err), nil
	}
	src, err := os.Open(srcPath)
	if err != nil {
		return nil, oneLine(err), nil
	}
	srcChunks, err := checkSource(src, sec, p)
	if err != nil {
		src.Close()
		return nil, fmt.Sprintf("slot %s does not hold the patch's source: %s", srcName, oneLine(err)), nil
	}
	t, why := s.patchTable(i, sec, srcChunks)
	if t == nil {
		if t, err = s.table(i); err != nil {
			src.Close()
			return nil, "", err
		}
	}
	if err := sec.Check(p, t.Entries); err != nil {
		src.Close()
		return nil, oneLine(err), nil
	}
	local := map[[32]byte]chunkLocation{}
	if resume {
		if tp, err := s.d.SlotPath(s.d.Config.Slots[target]); err == nil {
			inPlace(tp, t.Entries, local)
		}
	}
	pc, err := s.newPatchChunks(sec, t.Entries, src, local)
	if err != nil {
		src.Close()
		return nil, oneLine(err), nil
	}
	pr, err := t.Chunks(pc)
	if err != nil {
		pc.Close()
		return nil, oneLine(err), nil
	}
	s.patched = append(s.patched, pr)
	s.choose(i, MethodPatch, fmt.Sprintf("slot %s holds the patch's source (%s, sha256 %x…); chunk table %s",
		srcName, HumanBytes(sec.SourceSize), sec.SourceDigest[:6], why))
	return pr, "", nil
}

// patchTable rebuilds payload i's chunk table from the patch's compact
// form and the source's chunks, and checks it against the bundle's header;
// nil (and why) when the patch has none or it does not check.
func (s *deltaSource) patchTable(i int, sec *patch.Section, srcChunks []bundle.Entry) (*bundle.Table, string) {
	g := sec.Table
	if g.StoredSize == 0 {
		return nil, "from the bundle (the patch has none)"
	}
	var stored []byte
	err := s.c.Fetch(s.ctx, s.pt.remote, []fetch.Range{{Off: s.pt.head.DataOffset + int64(g.Offset), Len: int64(g.StoredSize)}},
		func(_ int, data []byte) error {
			stored = bytes.Clone(data)
			return nil
		})
	var raw, tb []byte
	if err == nil {
		raw, err = patch.DecodeSegment(g, stored, nil)
	}
	if err == nil {
		tb, err = patch.ExpandTable(raw, srcChunks, s.br.Header.Payloads[i].Chunks)
	}
	var t *bundle.Table
	if err == nil {
		t, err = s.br.Table(i, tb)
	}
	if err != nil {
		return nil, "from the bundle (the patch's: " + oneLine(err) + ")"
	}
	return t, "from the patch"
}

// checkSource checks that f starts with the section's source (its size and
// SHA-256) and returns the source's chunks, cut with p's chunker parameters.
func checkSource(f *os.File, sec *patch.Section, p *bundle.Payload) ([]bundle.Entry, error) {
	chunks, digest, n, err := patch.SourceChunks(io.LimitReader(f, int64(sec.SourceSize)), p)
	if err != nil {
		return nil, err
	}
	if uint64(n) != sec.SourceSize {
		return nil, fmt.Errorf("%w: the slot has %d bytes, the source %d", patch.ErrSource, n, sec.SourceSize)
	}
	if digest != sec.SourceDigest {
		return nil, fmt.Errorf("%w: its first %d bytes have another SHA-256 (modified, or another release)", patch.ErrSource, n)
	}
	return chunks, nil
}

// patchChunks is the chunk source of a payload made by a patch: the
// segments the payload still needs are fetched by range requests in the
// background (each checked against its signed digest before it is
// decoded), then applied to the source slot, read by offset. A segment
// whose chunks all sit in the target slot already (a resumed install) is
// not fetched. It hands the reader unverified content; the reader checks
// every chunk.
type patchChunks struct {
	sec      *patch.Section
	entries  []bundle.Entry
	src      *os.File
	local    map[[32]byte]chunkLocation
	files    map[string]*os.File
	skip     []bool // by segment: every chunk is in local
	k        int    // the segment of the next chunk
	cur      int    // the segment the applier serves (-1: none)
	ap       *patch.Applier
	raw      []byte
	cancel   context.CancelFunc
	fetched  chan []byte
	fetchErr chan error
}

// patchBatch bounds the patch bytes of the one request in flight, beside
// the segment being applied and the one waiting for it.
const patchBatch = 4 << 20

func (s *deltaSource) newPatchChunks(sec *patch.Section, entries []bundle.Entry, src *os.File, local map[[32]byte]chunkLocation) (*patchChunks, error) {
	pc := &patchChunks{sec: sec, entries: entries, src: src, local: local, files: map[string]*os.File{},
		skip: make([]bool, len(sec.Segments)), cur: -1}
	var ranges []fetch.Range
	var segs []patch.Segment
	for k, g := range sec.Segments {
		all := true
		for _, e := range entries[g.FirstChunk : g.FirstChunk+g.Chunks] {
			if _, ok := local[e.Digest]; !ok {
				all = false
				break
			}
		}
		pc.skip[k] = all
		if !all {
			ranges = append(ranges, fetch.Range{Off: s.pt.head.DataOffset + int64(g.Offset), Len: int64(g.StoredSize)})
			segs = append(segs, g)
		}
	}
	for _, loc := range local {
		if _, ok := pc.files[loc.path]; !ok {
			f, err := os.Open(loc.path)
			if err != nil {
				return nil, err
			}
			pc.files[loc.path] = f
		}
	}
	ctx, cancel := context.WithCancel(s.ctx)
	pc.cancel = cancel
	// Two segments wait for the applier at most (each at most
	// patch.MaxSegmentRaw, about patch.SegmentTarget as made).
	pc.fetched, pc.fetchErr = make(chan []byte, 1), make(chan error, 1)
	go func() {
		// One request of at most patchBatch bytes in flight: with the
		// client's defaults (4 requests of up to 8 MiB) tens of MiB of a
		// large patch would wait for the applier.
		err := s.c.FetchLimited(ctx, s.pt.remote, ranges, fetch.Limits{Concurrency: 1, MaxRequestSize: patchBatch}, func(j int, data []byte) error {
			// Checked here, on the fetch goroutine: a tampered segment
			// ends the fetch at once.
			if err := patch.CheckSegment(segs[j], data); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err // not a segment more once cancelled
			}
			select {
			case pc.fetched <- bytes.Clone(data):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		close(pc.fetched)
		pc.fetchErr <- err
	}()
	return pc, nil
}

// ReadChunk returns chunk i: from the target slot when a resumed install
// already wrote it and its segment need not be fetched, else from the
// patch.
func (pc *patchChunks) ReadChunk(i int, e *bundle.Entry, buf []byte) ([]byte, bool, error) {
	for g := pc.sec.Segments[pc.k]; uint32(i) >= g.FirstChunk+g.Chunks; g = pc.sec.Segments[pc.k] {
		pc.k++
	}
	b := grow(buf, int(e.Size))
	if pc.skip[pc.k] {
		loc := pc.local[e.Digest]
		if _, err := pc.files[loc.path].ReadAt(b, loc.offset); err != nil {
			return nil, false, err
		}
		return b, true, nil
	}
	if pc.cur != pc.k {
		stored, ok := <-pc.fetched
		if !ok {
			err := <-pc.fetchErr
			if err == nil {
				err = errors.New("internal error: fewer patch segments than planned")
			}
			return nil, false, err
		}
		g := pc.sec.Segments[pc.k]
		var err error
		if pc.raw, err = patch.DecodeSegment(g, stored, pc.raw); err != nil {
			return nil, false, err
		}
		if pc.ap, err = patch.NewApplier(pc.raw, patch.SegmentOutput(g, pc.entries), pc.src, int64(pc.sec.SourceSize)); err != nil {
			return nil, false, err
		}
		pc.cur = pc.k
	}
	if err := pc.ap.Read(b); err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// Close stops the background fetch and closes the slots.
func (pc *patchChunks) Close() error {
	pc.cancel()
	for range pc.fetched {
	}
	pc.src.Close()
	for _, f := range pc.files {
		f.Close()
	}
	return nil
}
