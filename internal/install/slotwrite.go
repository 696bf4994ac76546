package install

import (
	"errors"
	"io"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"github.com/tandem-ota/tandem/internal/bundle"
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
//
// The blocks are a ring of ringBlocks buffers, block k in buffer k mod
// ringBlocks, free again once block k-ringBlocks is written. The bundle
// reader decodes compressed chunks straight into them (Dest, a
// bundle.Destination) ahead of Write, which then finds a chunk in place and
// only moves on: the copy of every byte into the block is spared.
//
// A direct write waits for the device, a millisecond or more per block.
// Made as an ordinary system call, the Go scheduler hands the writer's P
// to another thread once the call has taken 20 µs, and its monitor thread
// polls every 20 µs again after each such hand-off: on a loaded machine,
// 5–7 thousand wake-ups and 9–11 thousand context switches per 512 MiB
// image, 12–20 % of the install's CPU time there (docs/benchmarks.md,
// "Seventh pass"). So direct writes are raw system calls (writeDirect),
// which keep the P, and the writer holds one P more than the scheduler had
// (holdProc) while it runs, for the decoders to keep every CPU busy
// meanwhile. The price: the runtime cannot stop the world during a block's
// write, so a garbage collection that starts then waits for the write to
// end.
const (
	writeBlock  = bundle.PlaceBlock // bytes per write: the reader's blocks
	ringBlocks  = 6                 // being written, queued, being filled, and up to 3 ahead
	directAlign = 4096              // alignment of a direct write's offset, length and memory
)

// slotWriter writes a slot image sequentially from its start. Write copies
// into the current block (or finds the bytes there already) and hands full
// blocks to the writing goroutine; Close writes what is left and reports
// the first error. Write and Close are not safe for concurrent use; Dest
// may be called from another goroutine.
type slotWriter struct {
	f      rootfs.File
	direct bool // O_DIRECT is on (the writing goroutine turns it off)
	ring   [ringBlocks][]byte
	k      int    // the block being filled
	cur    []byte // ring[k%ringBlocks][:n:writeBlock]
	placed int64  // bytes Write found in place
	todo   chan []byte
	done   chan struct{}

	mu      sync.Mutex
	cond    sync.Cond // on mu: written or stopped changed
	written int       // blocks the writing goroutine is done with
	stopped bool      // Close was called: Dest places nothing more
	err     error     // the writing goroutine's first error
	closed  bool
}

// newSlotWriter starts writing f at its current offset, which must be 0
// for direct I/O to be used.
func newSlotWriter(f rootfs.File) *slotWriter {
	w := &slotWriter{f: f, todo: make(chan []byte, 1), done: make(chan struct{})}
	w.cond.L = &w.mu
	w.direct = setDirect(f, true) == nil
	release := func() {}
	if w.direct {
		release = holdProc()
	}
	for i := range w.ring {
		w.ring[i] = alignedBlock()
	}
	w.cur = w.ring[0][:0:writeBlock]
	go w.run(release)
	return w
}

// alignedBlock returns an empty buffer of capacity writeBlock +
// bundle.DecodeSlack (the decoder's slack past a chunk that ends the block)
// whose first byte is directAlign-aligned in memory.
func alignedBlock() []byte {
	n := writeBlock + bundle.DecodeSlack
	b := make([]byte, n+directAlign)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	return b[off : off : off+n]
}

// usable waits until block k's buffer is free (block k-ringBlocks written)
// and reports whether it may be filled: not once the writer was closed, nor
// for a block Write has moved past.
func (w *slotWriter) usable(k int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k >= w.written+ringBlocks && !w.stopped {
		w.cond.Wait()
	}
	return !w.stopped && k >= w.k
}

// Dest is the bundle.Destination of the image: the place of n bytes at
// offset off, when they lie within one block that is not written yet.
func (w *slotWriter) Dest(off uint64, n int) []byte {
	k, o := int(off/writeBlock), int(off%writeBlock)
	if o+n > writeBlock || !w.usable(k) {
		return nil
	}
	return w.ring[k%ringBlocks][o : o : o+n+bundle.DecodeSlack]
}

// Write copies b into the blocks to write, or moves on over the part of b
// that is there already (placed by Dest); it fails once a write did.
func (w *slotWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		var k int
		if full := w.cur[:cap(w.cur)]; &b[0] == &full[len(w.cur)] {
			k = min(len(b), cap(w.cur)-len(w.cur))
			w.placed += int64(k)
		} else {
			k = copy(full[len(w.cur):], b)
		}
		w.cur, b = w.cur[:len(w.cur)+k], b[k:]
		if len(w.cur) == cap(w.cur) {
			w.todo <- w.cur
			w.mu.Lock()
			w.k++
			w.mu.Unlock()
			if !w.usable(w.k) {
				return n - len(b), errors.New("slot writer closed")
			}
			w.cur = w.ring[w.k%ringBlocks][:0:writeBlock]
			if err := w.failed(); err != nil {
				return n - len(b), err
			}
		}
	}
	return n, nil
}

// writeAll writes the payload's verified chunks, compressed ones decoded
// straight into the blocks (Dest), and closes the writer; progress gets
// each chunk's size. After an error, what was verified so far is still
// written: a resumed install finds it.
func (w *slotWriter) writeAll(pr *bundle.PayloadReader, progress func(int)) error {
	pr.SetDestination(w.Dest)
	for {
		c, err := pr.Next()
		if errors.Is(err, io.EOF) {
			return w.Close()
		}
		if err == nil {
			_, err = w.Write(c.Data)
		}
		if err != nil {
			w.Close()
			return err
		}
		progress(len(c.Data))
	}
}

// Close writes the rest and waits for the writing goroutine; it returns
// the first write error. The file stays open (the caller syncs it).
func (w *slotWriter) Close() error {
	if !w.closed {
		w.closed = true
		w.mu.Lock()
		w.stopped = true
		w.cond.Broadcast()
		w.mu.Unlock()
		if len(w.cur) > 0 {
			w.todo <- w.cur
		}
		close(w.todo)
		<-w.done
	}
	return w.failed()
}

// procs counts the Ps added by holdProc that are still held.
var procs struct {
	sync.Mutex
	held int
	prev int // GOMAXPROCS before the first of them
}

// holdProc adds one P to the scheduler (GOMAXPROCS) for a goroutine that
// blocks in raw system calls, which keep their P; the returned func gives
// it back, restoring GOMAXPROCS's value once no hold is left. (Having been
// set, it no longer follows a change of the cgroup's CPU limit.)
func holdProc() (release func()) {
	procs.Lock()
	defer procs.Unlock()
	if procs.held == 0 {
		procs.prev = runtime.GOMAXPROCS(0)
	}
	procs.held++
	runtime.GOMAXPROCS(procs.prev + procs.held)
	return sync.OnceFunc(func() {
		procs.Lock()
		defer procs.Unlock()
		procs.held--
		runtime.GOMAXPROCS(procs.prev + procs.held)
	})
}

func (w *slotWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// run writes the blocks in order; after an error it only returns them.
// It calls release when it ends.
func (w *slotWriter) run(release func()) {
	defer close(w.done)
	defer release()
	var err error
	for b := range w.todo {
		if err == nil {
			err = w.write(b)
		}
		w.mu.Lock()
		if w.err == nil {
			w.err = err
		}
		w.written++
		w.cond.Broadcast()
		w.mu.Unlock()
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
		n, err := writeDirect(w.f, b[:k])
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
