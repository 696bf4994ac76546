package patch

import (
	"errors"
	"hash"
	"io"
)

// aheadHasher reads r in blocks on a goroutine of its own and feeds each
// block to a hash before handing it to Read, so that the digest of the
// whole is computed beside the caller's work on the blocks before (on the
// device: reading the source slot and its SHA-256 on one CPU, cutting and
// hashing its chunks on another). The hash is complete once Read returned
// io.EOF. Close stops the goroutine and waits for it (at most one block's
// read); Read must not be called after it.
type aheadHasher struct {
	full chan aheadBlock
	free chan []byte
	stop chan struct{}
	done chan struct{} // closed when the goroutine has ended
	buf  []byte        // the block Read serves, to give back once read
	rest []byte        // its bytes not read yet
	err  error         // what follows rest
}

type aheadBlock struct {
	buf []byte
	n   int
	err error
}

const (
	aheadSize  = 1 << 20 // bytes per read
	aheadCount = 3       // blocks: being read and hashed, waiting, being served
)

func newAheadHasher(r io.Reader, h hash.Hash) *aheadHasher {
	a := &aheadHasher{full: make(chan aheadBlock, aheadCount), free: make(chan []byte, aheadCount),
		stop: make(chan struct{}), done: make(chan struct{})}
	for range aheadCount {
		a.free <- make([]byte, aheadSize)
	}
	go a.run(r, h)
	return a
}

func (a *aheadHasher) run(r io.Reader, h hash.Hash) {
	defer close(a.done)
	for {
		var buf []byte
		select {
		case buf = <-a.free:
		case <-a.stop:
			return
		}
		n, err := io.ReadFull(r, buf)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		h.Write(buf[:n])
		select {
		case a.full <- aheadBlock{buf, n, err}:
		case <-a.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (a *aheadHasher) Read(p []byte) (int, error) {
	for len(a.rest) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		if a.buf != nil {
			a.free <- a.buf // never blocks: free holds every block
		}
		b := <-a.full
		a.buf, a.rest, a.err = b.buf, b.buf[:b.n], b.err
	}
	n := copy(p, a.rest)
	a.rest = a.rest[n:]
	return n, nil
}

func (a *aheadHasher) Close() {
	close(a.stop)
	<-a.done
}
