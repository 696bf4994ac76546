package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

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
	Requests        int64
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
	stats0 DeltaStats
	// scanned remembers the slots already indexed during this install.
	scanned map[string]bool
	// resume: an earlier install of this bundle into this group was
	// interrupted; chunks already in the target slot are kept.
	resume bool
}

// deltaPayload returns a verified stream of payload i's content.
func (s *deltaSource) deltaPayload(i int) (*deltaStream, error) {
	p := &s.br.Header.Payloads[i]
	tableOff, dataOff := s.br.PayloadOffsets(i)
	// The probe may already hold the start of the table: fetch only the rest.
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
	entries, err := s.br.Table(i, table)
	if err != nil {
		return nil, err
	}
	local := map[[32]byte]chunkLocation{}
	if p.Kind == bundle.KindSlot {
		if local, err = localChunks(s.d, s.target, p, s.scanned); err != nil {
			return nil, err
		}
		if s.resume {
			if name, ok := s.d.Config.Groups[s.target].Slots[p.Target]; ok {
				if sp, err := s.d.SlotPath(s.d.Config.Slots[name]); err == nil {
					inPlace(sp, entries, local)
				}
			}
		}
	}
	st := &deltaStream{src: s, p: p, entries: entries, local: local, sum: sha256.New(), files: map[string]*os.File{}}
	// Check every local candidate from an older index now, so that a slot
	// that changed since it was indexed costs coalesced range requests, not
	// one request per chunk. (Every chunk is verified again when it is used.)
	checked := map[[32]byte]bool{}
	for j := range entries {
		e := &entries[j]
		if loc, ok := local[e.Digest]; ok && !loc.fresh && !checked[e.Digest] {
			checked[e.Digest] = true
			if _, err := st.readLocal(e, loc); err != nil {
				delete(local, e.Digest)
			}
		}
	}
	// Plan the fetches: every chunk without a local copy, in table order.
	var ranges []fetch.Range
	var stored int64
	for j := range entries {
		e := &entries[j]
		st.storedOff = append(st.storedOff, dataOff+stored)
		if _, ok := local[e.Digest]; !ok {
			ranges = append(ranges, fetch.Range{Off: dataOff + stored, Len: int64(e.StoredSize)})
		}
		stored += int64(e.StoredSize)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	st.cancel = cancel
	// At most 16 fetched chunks, and about 8 MiB of them, wait for the writer.
	st.fetched = make(chan []byte, min(16, max(1, (8<<20)/int(p.ChunkMax))))
	st.fetchErr = make(chan error, 1)
	go func() {
		err := s.c.Fetch(ctx, s.remote, ranges, func(_ int, data []byte) error {
			select {
			case st.fetched <- append([]byte(nil), data...):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		close(st.fetched)
		st.fetchErr <- err
	}()
	return st, nil
}

// deltaStream yields payload content in order: local chunks re-verified
// after reading, fetched chunks verified after download.
type deltaStream struct {
	src       *deltaSource
	p         *bundle.Payload
	entries   []bundle.Entry
	storedOff []int64
	local     map[[32]byte]chunkLocation
	files     map[string]*os.File
	fetched   chan []byte
	fetchErr  chan error
	cancel    context.CancelFunc

	i       int
	off     uint64
	sum     hash.Hash
	buf     []byte
	pending []byte
	done    bool
}

func (s *deltaStream) Info() (*bundle.Payload, []bundle.Entry) { return s.p, s.entries }

// Close stops the background fetch and closes the local slots.
func (s *deltaStream) Close() {
	s.cancel()
	for range s.fetched {
	}
	for _, f := range s.files {
		f.Close()
	}
}

func (s *deltaStream) Next() (bundle.Chunk, error) {
	if s.i == len(s.entries) {
		if !s.done {
			if [32]byte(s.sum.Sum(nil)) != s.p.Digest {
				return bundle.Chunk{}, fmt.Errorf("%w: payload %s as a whole", bundle.ErrDigest, s.p.Name)
			}
			s.done = true
		}
		return bundle.Chunk{}, io.EOF
	}
	e := &s.entries[s.i]
	var data []byte
	var err error
	if loc, ok := s.local[e.Digest]; ok {
		data, err = s.readLocal(e, loc)
		if err != nil {
			// The slot changed since it was indexed: fetch the chunk instead.
			data, err = s.fetchOne(e)
		} else {
			s.src.stats0.BytesReused += int64(e.Size)
			s.src.stats0.ChunksReused++
		}
	} else {
		stored, ok := <-s.fetched
		if !ok {
			err = <-s.fetchErr
			if err == nil {
				err = errors.New("internal error: fewer fetched chunks than planned")
			}
			return bundle.Chunk{}, err
		}
		data, err = bundle.VerifyChunk(e, stored, s.buf)
		if err == nil {
			s.src.stats0.ChunksFetched++
		} else {
			// Wrong bytes from the server: ask again before giving up.
			data, err = s.fetchOne(e)
		}
	}
	if err != nil {
		return bundle.Chunk{}, fmt.Errorf("chunk %d of payload %s: %w", s.i, s.p.Name, err)
	}
	if e.Compressed() {
		s.buf = data
	}
	s.sum.Write(data)
	c := bundle.Chunk{Index: s.i, Offset: s.off, Entry: e, Data: data}
	s.i++
	s.off += uint64(e.Size)
	return c, nil
}

// readLocal reads a chunk from a local slot and checks its digest.
func (s *deltaStream) readLocal(e *bundle.Entry, loc chunkLocation) ([]byte, error) {
	f, ok := s.files[loc.path]
	if !ok {
		var err error
		if f, err = os.Open(loc.path); err != nil {
			return nil, err
		}
		s.files[loc.path] = f
	}
	if cap(s.buf) < int(e.Size) {
		s.buf = make([]byte, e.Size)
	}
	data := s.buf[:e.Size]
	if _, err := f.ReadAt(data, loc.offset); err != nil {
		return nil, err
	}
	if sha256.Sum256(data) != e.Digest {
		return nil, fmt.Errorf("%w: local copy", bundle.ErrDigest)
	}
	return data, nil
}

// fetchOne downloads and verifies one chunk, trying twice.
func (s *deltaStream) fetchOne(e *bundle.Entry) ([]byte, error) {
	var lastErr error
	for range 2 {
		var data []byte
		err := s.src.c.Fetch(s.src.ctx, s.src.remote, []fetch.Range{{Off: s.storedOff[s.i], Len: int64(e.StoredSize)}}, func(_ int, stored []byte) error {
			var err error
			data, err = bundle.VerifyChunk(e, bytes.Clone(stored), nil)
			return err
		})
		if err == nil {
			s.src.stats0.ChunksFetched++
			return data, nil
		}
		lastErr = err
		if errors.Is(err, fetch.ErrChanged) || errors.Is(err, context.Canceled) {
			break
		}
	}
	return nil, lastErr
}

func (s *deltaStream) Read(b []byte) (int, error) { return bundle.ReadChunks(b, &s.pending, s.Next) }
