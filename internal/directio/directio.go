// Package directio reads and writes whole slot images with direct I/O
// (O_DIRECT on Linux: regular files on most file systems, block devices)
// where the file allows it. The installer writes images it never reads back
// and reads whole images that nothing reads again soon (a slot's chunk
// index, a patch's source check): through the page cache, the kernel would
// copy every byte once more and the image would evict the running system's
// cached pages. A Reader reads aligned blocks straight into its buffer, and
// reads through the page cache, block by block like a bufio.Reader, where
// direct I/O is refused; SetDirect and AlignedBlock serve the slot writer.
package directio

import (
	"errors"
	"io"
	"os"
	"syscall"
	"unsafe"
)

const (
	// BlockSize is the size of each read.
	BlockSize = 1 << 20
	// Align is the alignment of a direct read's or write's offset, length
	// and memory.
	Align = 4096
)

// Reader reads a file from its start in blocks of BlockSize. It is an
// io.ReadCloser and not safe for concurrent use.
type Reader struct {
	f      *os.File
	direct bool
	buf    []byte // BlockSize bytes, Align-aligned in memory
	pos, n int    // the unread bytes are buf[pos:n]
	eof    bool
}

// Open opens path for reading from its start, with direct I/O where the
// file allows it.
func Open(path string) (*Reader, error) {
	f, direct, err := open(path)
	if err != nil {
		return nil, err
	}
	return &Reader{f: f, direct: direct, buf: AlignedBlock(BlockSize)[:BlockSize]}, nil
}

// Direct reports whether the reader still reads with direct I/O (it stops
// when the file refuses a direct read).
func (r *Reader) Direct() bool { return r.direct }

// Read reads from the current block, reading the next one when it is used up.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.pos == r.n {
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	k := copy(p, r.buf[r.pos:r.n])
	r.pos += k
	return k, nil
}

// fill reads the next block with one read at an aligned offset. A short
// read ends the file for direct I/O: the next offset would not be aligned.
func (r *Reader) fill() error {
	if r.eof {
		return io.EOF
	}
	r.pos, r.n = 0, 0
	for {
		k, err := r.f.Read(r.buf)
		if r.direct && errors.Is(err, syscall.EINVAL) {
			// The file system refuses direct reads: read the rest
			// through the page cache (nothing was read by this call).
			if err := SetDirect(r.f, false); err != nil {
				return err
			}
			r.direct = false
			continue
		}
		r.n = k
		switch {
		case errors.Is(err, io.EOF) || (err == nil && k == 0):
			r.eof = true
			return io.EOF
		case err != nil:
			return err
		}
		if r.direct && k < len(r.buf) {
			r.eof = true
		}
		return nil
	}
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// AlignedBlock returns an empty buffer of capacity n whose first byte is
// Align-aligned in memory, as direct I/O needs.
func AlignedBlock(n int) []byte {
	b := make([]byte, n+Align)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & (Align - 1))
	return b[off : off : off+n]
}
