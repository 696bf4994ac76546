package mender

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxTreeFile bounds every small file of the module tree tandem reads
// (artifact name, stream names): they are a line each.
const maxTreeFile = 4 << 10

// ErrArtifact: the artifact does not have the shape this module expects.
var ErrArtifact = errors.New("mender artifact")

// Tree is the file tree the Mender client gives the module (the second
// argument of every state): header files, the stream FIFOs during Download.
type Tree struct{ Dir string }

// ArtifactName is the name of the artifact being installed
// (header/artifact_name).
func (t Tree) ArtifactName() (string, error) {
	return t.line("header/artifact_name")
}

// CurrentArtifactName is the name of the installed artifact
// (current_artifact_name).
func (t Tree) CurrentArtifactName() (string, error) {
	return t.line("current_artifact_name")
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
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrArtifact, p, limit)
	}
	return b, nil
}
