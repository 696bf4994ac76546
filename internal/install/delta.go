package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fetch"
)

// Delta installs read a bundle on an HTTP server by ranges: header and
// signatures first, then each payload's chunk table, and then only the
// chunks the device does not already hold in a slot of its active or
// default group. Every chunk, local or fetched, is verified against the
// signed table before it is used.

// DeltaStats counts what a delta install moved.
type DeltaStats struct {
	BytesDownloaded int64 // every body byte received, probes, gaps and retries included
	BytesReused     int64 // content bytes copied from local slots
	ChunksFetched   int64
	ChunksReused    int64
	ChunksPatched   int64 // chunks a patch made (docs/delta.md, "Patches")
	Requests        int64
	// Method is how the payloads came: patch, delta or full (joined by
	// "+" when payloads differ); Reason says why, payload by payload.
	Method, Reason string
}

// remoteReader reads a remote bundle sequentially by bounded ranges.
type remoteReader struct {
	ctx    context.Context
	c      *fetch.Client
	remote *fetch.Remote
	off    int64
	buf    []byte
}

func (r *remoteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(r.buf) == 0 {
		if r.off >= r.remote.Size {
			return 0, io.EOF
		}
		n := min(int64(len(p)), r.remote.Size-r.off)
		err := r.c.Fetch(r.ctx, r.remote, []fetch.Range{{Off: r.off, Len: n}}, func(_ int, data []byte) error {
			r.buf = append(r.buf[:0], data...)
			return nil
		})
		if err != nil {
			return 0, err
		}
		r.off += n
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// deltaSource serves the payloads of a remote bundle, reusing local chunks.
type deltaSource struct {
	ctx    context.Context
	d      *device.Device
	target string
	c      *fetch.Client
	remote *fetch.Remote
	br     *bundle.Reader
	first  []byte // the probe's bytes, from offset 0
	// scanned remembers the slots already indexed during this install.
	scanned map[string]bool
	readers []*bundle.PayloadReader // for the stats
	patched []*bundle.PayloadReader // the readers a patch serves

	active     string       // the group a patch's source is in
	o          Options      // source URL, trust, --no-patch, progress
	pt         *remotePatch // the patch found, nil when none (or abandoned)
	patchTried bool
	ptWhy      string   // why there is no patch
	methods    []string // "payload: method (why)", in order
	used       []string // method by payload
}

func (s *deltaSource) reader() *bundle.Reader { return s.br }
func (s *deltaSource) close()                 { s.c.HTTP.CloseIdleConnections() }

func (s *deltaSource) stats() DeltaStats {
	var st DeltaStats
	for _, pr := range s.readers {
		n := pr.Counts()
		st.ChunksFetched += n.Stored
		st.ChunksReused += n.Content
		st.BytesReused += n.ContentBytes
	}
	for _, pr := range s.patched {
		st.ChunksPatched += pr.Counts().Content
	}
	fs := s.c.Stats()
	st.BytesDownloaded, st.Requests = fs.BytesReceived, fs.Requests
	var kinds []string
	for _, m := range s.used {
		if !slices.Contains(kinds, m) {
			kinds = append(kinds, m)
		}
	}
	st.Method, st.Reason = strings.Join(kinds, "+"), strings.Join(s.methods, "; ")
	return st
}

// choose records how payload i comes and why, and says so in a progress
// event.
func (s *deltaSource) choose(i int, method, why string) {
	name := s.br.Header.Payloads[i].Name
	for len(s.used) <= i {
		s.used = append(s.used, "")
	}
	s.used[i] = method
	msg := fmt.Sprintf("payload %s: %s (%s)", name, method, why)
	s.methods = append(s.methods, msg)
	if s.o.Progress.Event != nil {
		s.o.Progress.Event(Event{Event: "method", Payload: name, Method: method, Message: msg})
	}
}

// table fetches payload i's chunk table (minus what the probe holds) and
// checks it against the verified header.
func (s *deltaSource) table(i int) (*bundle.Table, error) {
	p := &s.br.Header.Payloads[i]
	tableOff, _ := s.br.PayloadOffsets(i)
	table := make([]byte, 0, p.TableSize())
	if end := tableOff + int64(p.TableSize()); tableOff < int64(len(s.first)) {
		table = append(table, s.first[tableOff:min(end, int64(len(s.first)))]...)
	}
	if rest := int64(p.TableSize()) - int64(len(table)); rest > 0 {
		err := s.c.Fetch(s.ctx, s.remote, []fetch.Range{{Off: tableOff + int64(len(table)), Len: rest}}, func(_ int, data []byte) error {
			table = append(table, data...)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return s.br.Table(i, table)
}

// storedTable fetches payload i's stored table (format 3) when it has one,
// so that the fetched chunks are checked by their stored bytes, before they
// are decoded, instead of hashing their content: worth its 32 bytes per
// chunk when at least half of the chunks are fetched. It is an
// optimization only: when the request fails or the table does not match
// the header, the chunks are checked by their content digest as without it.
func (s *deltaSource) storedTable(t *bundle.Table, i int) {
	p := &s.br.Header.Payloads[i]
	n := int64(s.br.Header.StoredTableSize(p))
	if n == 0 {
		return
	}
	tableOff, _ := s.br.PayloadOffsets(i)
	b := make([]byte, 0, n)
	err := s.c.Fetch(s.ctx, s.remote, []fetch.Range{{Off: tableOff + int64(p.TableSize()), Len: n}}, func(_ int, data []byte) error {
		b = append(b, data...)
		return nil
	})
	if err == nil {
		_ = t.AddStoredTable(b) // a table that does not match is not used
	}
}

// payload returns a reader of payload i: made by a patch when one for the
// active slot's source exists (slot payloads only), else by chunk reuse
// and range requests.
func (s *deltaSource) payload(i int, resume bool) (*bundle.PayloadReader, error) {
	if kind := s.br.Header.Payloads[i].Kind; kind != bundle.KindSlot {
		t, err := s.table(i)
		if err != nil {
			return nil, err
		}
		pr, err := s.dynamic(t, i, resume)
		if err == nil {
			s.choose(i, MethodDelta, "a "+kind.String()+" payload: patches are for slot images")
		}
		return pr, err
	}
	pr, why, err := s.patchPayload(i, resume)
	if pr != nil || err != nil {
		return pr, err
	}
	t, err := s.table(i)
	if err != nil {
		return nil, err
	}
	pr, err = s.dynamic(t, i, resume)
	if err == nil {
		s.choose(i, MethodDelta, why)
	}
	return pr, err
}

// fallback gives up the patch after it failed on payload i (a chunk that
// did not verify, a tampered segment, a patch download that failed): the
// payload is read again by chunk reuse, keeping the chunks already written
// (each re-verified). It returns nil when payload i did not come from a
// patch.
func (s *deltaSource) fallback(i int, cause error) (*bundle.PayloadReader, error) {
	if i >= len(s.used) || s.used[i] != MethodPatch {
		return nil, nil
	}
	s.pt, s.ptWhy = nil, "the patch was abandoned"
	t, err := s.table(i)
	if err != nil {
		return nil, err
	}
	pr, err := s.dynamic(t, i, true)
	if err == nil {
		s.choose(i, MethodDelta, "the patch failed, abandoned: "+oneLine(cause))
	}
	return pr, err
}

// dynamic returns a reader of payload i's chunks (table t): those the
// device holds in a slot of its active or default group (or, resuming,
// already in the target slot) are read there, the others fetched by
// coalesced range requests that start at once. The reader checks every
// chunk, whichever way it came.
func (s *deltaSource) dynamic(t *bundle.Table, i int, resume bool) (*bundle.PayloadReader, error) {
	p := t.Payload
	_, dataOff := s.br.PayloadOffsets(i)
	entries := t.Entries
	var err error
	local := map[[32]byte]chunkLocation{}
	if p.Kind == bundle.KindSlot {
		if local, err = localChunks(s.d, s.target, p, s.scanned); err != nil {
			return nil, err
		}
		if resume {
			if name, ok := s.d.Config.Groups[s.target].Slots[p.Target]; ok {
				if sp, err := s.d.SlotPath(s.d.Config.Slots[name]); err == nil {
					inPlace(sp, entries, local)
				}
			}
		}
	}
	ctx, cancel := context.WithCancel(s.ctx)
	rc := &rangeChunks{ctx: ctx, cancel: cancel, c: s.c, remote: s.remote, local: local, files: map[string]*os.File{}}
	// Open the local slots now: ReadChunk then only reads the map.
	for _, loc := range local {
		if _, ok := rc.files[loc.path]; !ok {
			f, err := os.Open(loc.path)
			if err != nil {
				rc.forget(loc.path)
				continue
			}
			rc.files[loc.path] = f
		}
	}
	// Probe every local candidate from an older index now, so that a slot
	// that changed since it was indexed costs coalesced range requests, not
	// one request per chunk. (The probe only plans: the reader checks every
	// chunk again when it is used.)
	probed := map[[32]byte]bool{}
	var buf []byte
	for j := range entries {
		e := &entries[j]
		if loc, ok := local[e.Digest]; ok && !loc.fresh && !probed[e.Digest] {
			probed[e.Digest] = true
			buf = grow(buf, int(e.Size))
			if _, err := rc.files[loc.path].ReadAt(buf, loc.offset); err != nil || sha256.Sum256(buf) != e.Digest {
				delete(local, e.Digest)
			}
		}
	}
	// Plan the fetches: every chunk without a local copy, in table order,
	// each distinct one once (planRepeats).
	rc.repeat = planRepeats(entries, local, repeatBudget)
	var ranges []fetch.Range
	var stored int64
	for j := range entries {
		e := &entries[j]
		rc.storedOff = append(rc.storedOff, dataOff+stored)
		if _, ok := local[e.Digest]; !ok && rc.repeat[j] >= 0 {
			ranges = append(ranges, fetch.Range{Off: dataOff + stored, Len: int64(e.StoredSize)})
		}
		stored += int64(e.StoredSize)
	}
	if 2*len(ranges) >= len(entries) {
		s.storedTable(t, i)
	}
	// At most 16 fetched chunks, and about 8 MiB of them, wait for the reader.
	rc.fetched = make(chan []byte, min(16, max(1, (8<<20)/int(p.ChunkMax))))
	rc.fetchErr = make(chan error, 1)
	go func() {
		err := s.c.Fetch(ctx, s.remote, ranges, func(_ int, data []byte) error {
			select {
			case rc.fetched <- bytes.Clone(data):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		close(rc.fetched)
		rc.fetchErr <- err
	}()
	pr, err := t.Chunks(rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	s.readers = append(s.readers, pr)
	return pr, nil
}

// rangeChunks is the chunk source of one payload of a remote bundle: local
// copies where the device has them, else the chunks the background fetch
// delivers in table order. It hands out nothing itself: the PayloadReader
// checks every chunk (and asks Refetch when one fails).
type rangeChunks struct {
	ctx       context.Context
	cancel    context.CancelFunc
	c         *fetch.Client
	remote    *fetch.Remote
	storedOff []int64 // each chunk's offset in the bundle
	local     map[[32]byte]chunkLocation
	files     map[string]*os.File
	fetched   chan []byte
	fetchErr  chan error
	// repeat[i] (planRepeats) is how many later chunks reuse chunk i's
	// fetched bytes, or -1 when chunk i takes its bytes from an earlier one;
	// kept holds those bytes, by digest, until the last reuse.
	repeat []int
	kept   map[[32]byte]*keptChunk
}

// keptChunk is a fetched chunk's stored bytes kept for later chunks of the
// same content, and how many of them are still to come.
type keptChunk struct {
	stored []byte
	uses   int
}

// repeatBudget bounds the stored bytes a payload's fetch keeps for chunks
// that occur again later (about 8 MiB of them wait in the fetch pipeline).
const repeatBudget = 8 << 20

// planRepeats plans, for the chunks without a local copy, which fetched
// chunk serves later chunks of the same content: a chunk that occurs
// several times in the new image and nowhere on the device is downloaded
// once and its stored bytes kept (at most budget bytes at a time) until
// its last occurrence; the reader checks every copy like any fetched
// chunk. The result is per entry: the number of later entries served from
// it, -1 for an entry served from an earlier one, 0 otherwise.
func planRepeats(entries []bundle.Entry, local map[[32]byte]chunkLocation, budget int64) []int {
	repeat := make([]int, len(entries))
	last := map[[32]byte]int{}
	for j := range entries {
		if _, ok := local[entries[j].Digest]; !ok {
			last[entries[j].Digest] = j
		}
	}
	type held struct{ first, last int }
	open := map[[32]byte]held{}
	var kept int64
	for j := range entries {
		e := &entries[j]
		if _, ok := local[e.Digest]; ok {
			continue
		}
		if h, ok := open[e.Digest]; ok {
			repeat[j] = -1
			repeat[h.first]++
			if j == h.last {
				delete(open, e.Digest)
				kept -= int64(e.StoredSize)
			}
			continue
		}
		if l := last[e.Digest]; l > j && kept+int64(e.StoredSize) <= budget {
			open[e.Digest] = held{first: j, last: l}
			kept += int64(e.StoredSize)
		}
	}
	return repeat
}

// forget drops the local candidates in a slot that cannot be opened.
func (r *rangeChunks) forget(path string) {
	for d, loc := range r.local {
		if loc.path == path {
			delete(r.local, d)
		}
	}
}

// ReadChunk returns the local copy of chunk i's content, or its fetched
// stored bytes.
func (r *rangeChunks) ReadChunk(i int, e *bundle.Entry, buf []byte) ([]byte, bool, error) {
	if loc, ok := r.local[e.Digest]; ok {
		b := grow(buf, int(e.Size))
		if _, err := r.files[loc.path].ReadAt(b, loc.offset); err == nil {
			return b, true, nil
		}
		// The slot cannot be read: fetch the chunk instead.
		b, err := r.fetchOne(i, e)
		return b, false, err
	}
	if r.repeat[i] < 0 {
		k := r.kept[e.Digest]
		if k == nil { // its first occurrence never arrived: cannot happen in table order
			b, err := r.fetchOne(i, e)
			return b, false, err
		}
		if k.uses--; k.uses == 0 {
			delete(r.kept, e.Digest)
		}
		return bytes.Clone(k.stored), false, nil
	}
	b, ok := <-r.fetched
	if !ok {
		err := <-r.fetchErr
		if err == nil {
			err = errors.New("internal error: fewer fetched chunks than planned")
		}
		return nil, false, err
	}
	if r.repeat[i] > 0 {
		if r.kept == nil {
			r.kept = map[[32]byte]*keptChunk{}
		}
		r.kept[e.Digest] = &keptChunk{stored: bytes.Clone(b), uses: r.repeat[i]}
	}
	return b, false, nil
}

// Refetch downloads chunk i once more (twice at most): a local copy that
// changed since it was indexed, or bytes damaged on the way.
func (r *rangeChunks) Refetch(i int, e *bundle.Entry, attempt int) ([]byte, error) {
	if attempt > 2 {
		return nil, nil
	}
	return r.fetchOne(i, e)
}

// fetchOne downloads chunk i's stored bytes by one range request.
func (r *rangeChunks) fetchOne(i int, e *bundle.Entry) ([]byte, error) {
	var stored []byte
	err := r.c.Fetch(r.ctx, r.remote, []fetch.Range{{Off: r.storedOff[i], Len: int64(e.StoredSize)}}, func(_ int, data []byte) error {
		stored = bytes.Clone(data)
		return nil
	})
	return stored, err
}

// Close stops the background fetch and closes the local slots.
func (r *rangeChunks) Close() error {
	r.cancel()
	for range r.fetched {
	}
	for _, f := range r.files {
		f.Close()
	}
	return nil
}

// grow returns buf with length n, reallocated when its capacity is smaller.
func grow(buf []byte, n int) []byte {
	if cap(buf) < n {
		return make([]byte, n)
	}
	return buf[:n]
}
