package mender

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tandem-ota/tandem/internal/bounded"

	"golang.org/x/sys/unix"
)

// maxTreeFile bounds every small file of the module tree tandem reads
// (artifact name, stream names): they are a line each.
const maxTreeFile = 4 << 10

// ErrArtifact marks an artifact that does not have the shape this module expects.
var ErrArtifact = errors.New("mender artifact")

// Tree is the file tree the Mender client gives the module (the second
// argument of every state): header files, the stream FIFOs during Download.
type Tree struct{ Dir string }

// ArtifactName is the name of the artifact being installed
// (header/artifact_name).
func (t Tree) ArtifactName() (string, error) {
	return t.line("header/artifact_name")
}

// line reads one small file of the tree, without the trailing newline.
func (t Tree) line(name string) (string, error) {
	b, err := readSmall(filepath.Join(t.Dir, name), maxTreeFile)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// NextStream reads stream-next: the tree path of the next payload file,
// or "" after the last one. The name is checked to stay under streams/.
func (t Tree) NextStream() (string, error) {
	b, err := readSmall(filepath.Join(t.Dir, "stream-next"), maxTreeFile)
	if err != nil {
		return "", err
	}
	name := string(bytes.TrimSpace(b))
	if name == "" {
		return "", nil
	}
	rel, ok := strings.CutPrefix(name, "streams/")
	if !ok || rel == "" || strings.Contains(rel, "/") || rel == "." || rel == ".." {
		return "", fmt.Errorf("%w: stream-next named %q, not a file under streams/", ErrArtifact, name)
	}
	return name, nil
}

// Path returns the host path of a tree path.
func (t Tree) Path(name string) string { return filepath.Join(t.Dir, filepath.FromSlash(name)) }

// readSmall reads a whole file of at most limit bytes.
func readSmall(p string, limit int64) ([]byte, error) {
	b, err := bounded.ReadFile(p, limit)
	if bounded.IsTooLarge(err) {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrArtifact, p, limit)
	}
	return b, err
}

// stream is an open stream FIFO. It notes whether the client has written
// all of it (the writer closed), so that a failing module knows whether the
// client is about to publish the end of the streams.
type stream struct {
	f   *os.File
	eof bool
}

func openStream(p string) (*stream, error) {
	f, err := os.Open(p) // blocks until the client opens it for writing
	if err != nil {
		return nil, err
	}
	return &stream{f: f}, nil
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.f.Read(p)
	if errors.Is(err, io.EOF) {
		s.eof = true
	}
	return n, err
}

// written reports whether the client has written the whole stream: the
// reader saw its end, or the pipe reports that the writer hung up (data may
// still be buffered in it).
func (s *stream) written() bool {
	return s.eof || pollFIFO(s.f, 0)&unix.POLLHUP != 0
}

// pollFIFO polls f for input for at most ms milliseconds and returns the
// events.
func pollFIFO(f *os.File, ms int) int16 {
	var rev int16
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, ms); err == nil && n > 0 {
			rev = fds[0].Revents
		}
	})
	return rev
}

// awaitStreamEnd waits at most d for the client to publish anything on
// stream-next (the empty name that ends the streams, or another name),
// without blocking when it never does. A Linux FIFO reports a hang-up to a
// reader only after a writer came and went, so a poll tells "published"
// from "not yet".
func (t Tree) awaitStreamEnd(d time.Duration) {
	f, err := os.OpenFile(filepath.Join(t.Dir, "stream-next"), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return
	}
	defer f.Close()
	for end := time.Now().Add(d); time.Now().Before(end); {
		ms := int(time.Until(end).Milliseconds()) + 1
		if rev := pollFIFO(f, min(ms, 100)); rev&(unix.POLLIN|unix.POLLHUP) != 0 {
			return
		}
	}
}
