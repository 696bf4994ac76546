package install_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/signature"
)

// Every chunk source goes through the one verified reader (issue 11, "the
// verified read is written twice"): these tests give the installer wrong
// chunk bytes from each kind of source and check that none of them reaches
// the slot.

// chunkLayout returns, for payload 0 of bundle b, each chunk's offset in
// the bundle (its stored bytes) and in the payload (its content), and
// where the chunk data starts.
func chunkLayout(t *testing.T, b []byte) (stored, content []int64, dataOff int64) {
	t.Helper()
	r, err := bundle.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(func(*bundle.Header, bundle.Hash, []signature.Signature) error { return nil }); err != nil {
		t.Fatal(err)
	}
	tableOff, dataOff := r.PayloadOffsets(0)
	tb, err := r.Table(0, b[tableOff:tableOff+int64(r.Header.Payloads[0].TableSize())])
	if err != nil {
		t.Fatal(err)
	}
	so, co := dataOff, int64(0)
	for _, e := range tb.Entries {
		stored, content = append(stored, so), append(content, co)
		so += int64(e.StoredSize)
		co += int64(e.Size)
	}
	return stored, content, dataOff
}

// damaged returns fx.sysV2 with a byte of its middle chunk's stored bytes
// flipped, and where that chunk's content starts in the image.
func damaged(t *testing.T) ([]byte, int64) {
	t.Helper()
	stored, content, _ := chunkLayout(t, fx.sysV2)
	k := len(stored) / 2
	b := bytes.Clone(fx.sysV2)
	b[stored[k]+3] ^= 0x40
	return b, content[k]
}

// checkTorn checks that slot system-b holds the new image up to off and,
// from there, what it held before the install.
func checkTorn(t *testing.T, dir string, before []byte, off int64) {
	t.Helper()
	after := readFile(t, filepath.Join(dir, "slots/system-b.img"))
	if !bytes.Equal(after[:off], fx.imgV2[:off]) {
		t.Fatal("the verified chunks before the bad one were not written")
	}
	if !bytes.Equal(after[off:], before[off:]) {
		t.Fatal("bytes from the bad chunk on reached the slot")
	}
}

// Wrong stored bytes in the bundle stream.
func TestWrongChunkFromStream(t *testing.T) {
	dir := newDevice(t, devOpts{})
	bad, off := damaged(t)
	before := readFile(t, filepath.Join(dir, "slots/system-b.img"))
	_, err := installBytes(t, dir, bad, install.Options{})
	if !errors.Is(err, bundle.ErrDigest) && !errors.Is(err, bundle.ErrChunk) {
		t.Fatalf("got %v, want a chunk error", err)
	}
	checkTorn(t, dir, before, off)
}

// Wrong stored bytes from range requests, every time they are asked for.
func TestWrongChunkFromRanges(t *testing.T) {
	dir := newDevice(t, devOpts{})
	bad, off := damaged(t)
	before := readFile(t, filepath.Join(dir, "slots/system-b.img"))
	_, err := installURL(t, dir, serve(t, bad, nil), install.Options{})
	if !errors.Is(err, bundle.ErrDigest) && !errors.Is(err, bundle.ErrChunk) {
		t.Fatalf("got %v, want a chunk error", err)
	}
	checkTorn(t, dir, before, off)
}

// A local slot whose chunks change after the install planned to reuse them:
// the changed bytes are caught, the chunks fetched instead, and the slot
// ends exact.
func TestWrongChunkFromLocalCopy(t *testing.T) {
	plain, err := installURL(t, deltaDevice(t), serve(t, fx.sysV2, nil), install.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := deltaDevice(t)
	_, _, dataOff := chunkLayout(t, fx.sysV2)
	var once sync.Once
	url := serve(t, fx.sysV2, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// At the first request for chunk data the plan is made: change
			// slot a (same size) before the chunk arrives.
			if start, ok := rangeStart(r); ok && start >= dataOff {
				once.Do(func() {
					p := filepath.Join(dir, "slots/system-a.img")
					fi, err := os.Stat(p)
					if err == nil {
						err = os.WriteFile(p, bytes.Repeat([]byte{0x5a}, int(fi.Size())), 0o644)
					}
					if err != nil {
						t.Error(err)
					}
				})
			}
			h.ServeHTTP(w, r)
		})
	})
	res, err := installURL(t, dir, url, install.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, dir, "b", fx.imgV2)
	if res.Transfer.ChunksReused >= plain.Transfer.ChunksReused {
		t.Fatalf("reused %d chunks, as many as without the change (%d): the test changed nothing",
			res.Transfer.ChunksReused, plain.Transfer.ChunksReused)
	}
	t.Logf("reused %d chunks (unchanged slot: %d), fetched %d", res.Transfer.ChunksReused, plain.Transfer.ChunksReused, res.Transfer.ChunksFetched)
}

// rangeStart is the first byte a request's Range header asks for.
func rangeStart(r *http.Request) (int64, bool) {
	v, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	if !ok {
		return 0, false
	}
	s, _, _ := strings.Cut(v, "-")
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
