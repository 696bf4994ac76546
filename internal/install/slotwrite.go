package install

import (
	"errors"
	"sync"
	"syscall"
	"unsafe"

	"github.com/tandem-ota/tandem/internal/rootfs"
)

// A slot image is written front to back in blocks of writeBlock bytes, from
// a goroutine of its own, while the bundle reader verifies the next chunks
// (on a simulated device, each block is one write and cut point, as with
// the 1 MiB buffer before). Where the slot allows it (a real file or block
// device on Linux) the blocks go out with direct I/O: the installer never
// reads the image back, and through the page cache every byte was copied
// once more into a cached page and written back later, at a cost in CPU
// time (docs/benchmarks.md) and in the running system's cached pages, which
// the image evicted. A slot that refuses direct I/O is written through the
// page cache. Either way the caller's fsync makes the image durable.
const (
	writeBlock  = 1 << 20 // bytes per write
	directAlign = 4096    // alignment of a direct write's offset, length and memory
)

// slotWriter writes a slot image sequentially from its start. Write copies
// into the current block and hands full blocks to the writing goroutine
// (two blocks: one being filled, one being written); Close writes what is
// left and reports the first error. Neither is safe for concurrent use.
type slotWriter struct {
	f      rootfs.File
	direct bool // O_DIRECT is on (the writing goroutine turns it off)
	cur    []byte
	free   chan []byte
	todo   chan []byte
	done   chan struct{}
	mu     sync.Mutex
	err    error // the writing goroutine's first error
	closed bool
}

// newSlotWriter starts writing f at its current offset, which must be 0
// for direct I/O to be used.
func newSlotWriter(f rootfs.File) *slotWriter {
	// free holds both blocks at most: the writing goroutine never waits
	// to return one.
	w := &slotWriter{f: f, free: make(chan []byte, 2), todo: make(chan []byte, 1), done: make(chan struct{})}
	w.direct = setDirect(f, true) == nil
	w.cur = alignedBlock()
	w.free <- alignedBlock()
	go w.run()
	return w
}

// alignedBlock returns an empty buffer of capacity writeBlock whose first
// byte is directAlign-aligned in memory.
func alignedBlock() []byte {
	b := make([]byte, writeBlock+directAlign)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	return b[off : off : off+writeBlock]
}

// Write copies b into the blocks to write; it fails once a write did.
func (w *slotWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		k := copy(w.cur[len(w.cur):cap(w.cur)], b)
		w.cur, b = w.cur[:len(w.cur)+k], b[k:]
		if len(w.cur) == cap(w.cur) {
			w.todo <- w.cur
			w.cur = <-w.free
			if err := w.failed(); err != nil {
				return n - len(b), err
			}
		}
	}
	return n, nil
}

// Close writes the rest and waits for the writing goroutine; it returns
// the first write error. The file stays open (the caller syncs it).
func (w *slotWriter) Close() error {
	if !w.closed {
		w.closed = true
		if len(w.cur) > 0 {
			w.todo <- w.cur
		}
		close(w.todo)
		<-w.done
	}
	return w.failed()
}

func (w *slotWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// run writes the blocks in order; after an error it only returns them.
func (w *slotWriter) run() {
	defer close(w.done)
	var err error
	for b := range w.todo {
		if err == nil {
			if err = w.write(b); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
		}
		w.free <- b[:0]
	}
}

// write writes one block: its aligned part directly while direct I/O is
// on, the rest (a last, shorter block) through the page cache. A direct
// write the slot refuses (EINVAL: no direct I/O there, or a block size
// above directAlign) is done again through the page cache, which then
// writes the rest of the image.
func (w *slotWriter) write(b []byte) error {
	if w.direct {
		k := len(b) &^ (directAlign - 1)
		n, err := w.f.Write(b[:k])
		switch {
		case errors.Is(err, syscall.EINVAL):
		case err != nil:
			return err
		}
		b = b[n:]
		if len(b) > 0 {
			if err := setDirect(w.f, false); err != nil {
				return err
			}
			w.direct = false
		}
	}
	if len(b) == 0 {
		return nil
	}
	_, err := w.f.Write(b)
	return err
}
