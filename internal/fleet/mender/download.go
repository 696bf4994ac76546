package mender

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/install"
)

// download streams the artifact's one file — a tandem bundle or a
// descriptor — into the spare group. Nothing that decides what boots
// changes here: the trial is set by ArtifactInstall.
func (m *Module) download(ctx context.Context, t Tree) error {
	name, err := t.ArtifactName()
	if err != nil {
		return err
	}
	if err := m.clearStale(); err != nil {
		return err
	}
	dl := &download{t: t}
	if dl.name, err = t.NextStream(); err != nil {
		return err
	}
	if dl.name == "" {
		return fmt.Errorf("%w %s carries no file; want one tandem bundle or descriptor", ErrArtifact, name)
	}
	if dl.s, err = openStream(t.Path(dl.name)); err != nil {
		return err
	}
	res, err := m.install(ctx, dl, name)
	if err != nil {
		dl.release()
		return err
	}
	dl.s.f.Close()
	m.logf("installed %s (bundle %s) into group %s by %s: %d bytes written, %d downloaded, %d reused",
		res.Version, res.BundleHash, res.Group, res.Transfer.Method, res.BytesWritten, res.Transfer.BytesDownloaded, res.Transfer.BytesReused)
	return nil
}

// download is the stream protocol of one Download state.
type download struct {
	t    Tree
	name string  // the stream's tree path
	s    *stream // the open stream
	// settled: stream-next was read after the stream (the module's exit
	// can no longer leave the client waiting).
	settled bool
}

// last reads stream-next once more and checks that the artifact carries no
// second file.
func (dl *download) last() error {
	next, err := dl.t.NextStream()
	if err != nil {
		return err
	}
	// Either way the client waits for nothing the module's exit does not
	// end: the end of the streams was read, or the client waits to write
	// a stream the module will not open.
	dl.settled = true
	if next != "" {
		return fmt.Errorf("%w: carries a second file %s; want one tandem bundle or descriptor", ErrArtifact, next)
	}
	return nil
}

// release lets the client go on after the module failed in the middle of
// the streams. Closing the stream makes a client that is still writing it
// fail at its next write; a client that has written all of it publishes
// the end of the streams next and must find a reader: mender-client 3.4
// otherwise waits forever (its download loop reports the module's exit
// while the client hands it the end of the streams).
func (dl *download) release() {
	if dl.settled {
		return
	}
	written := dl.s.written()
	dl.s.f.Close()
	wait := time.Second
	if written {
		wait = time.Minute
	}
	dl.t.awaitStreamEnd(wait)
}

// install installs from the stream: a bundle or a descriptor, by its first
// bytes.
func (m *Module) install(ctx context.Context, dl *download, name string) (*install.Result, error) {
	br := bufio.NewReaderSize(dl.s, 1<<20)
	head, err := br.Peek(len(bundle.Magic))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", dl.name, err)
	}
	switch {
	case string(head) == bundle.Magic:
		return m.installStream(ctx, dl, name, br)
	case bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("{")):
		return m.installDescriptor(ctx, dl, name, br)
	}
	return nil, fmt.Errorf("%w: %s is neither a tandem bundle nor a descriptor", ErrArtifact, dl.name)
}

// installStream installs the bundle from the stream as it arrives: every
// chunk is verified against the bundle's signature before it is written,
// so no copy of the artifact is kept on the device.
func (m *Module) installStream(ctx context.Context, dl *download, name string, r io.Reader) (*install.Result, error) {
	if _, err := m.Agent.Begin(fleet.Job{ID: name, Source: "mender:" + dl.name, Version: name}); err != nil {
		return nil, err
	}
	o := m.Agent.Options
	o.Source, o.Stdin = "-", r
	res, err := m.Agent.Install(ctx, o, install.RebootNo)
	if err != nil {
		return nil, err
	}
	// The client checks the artifact's checksum only once the stream is read to its end.
	if n, err := io.Copy(io.Discard, r); err != nil || n > 0 {
		return nil, m.fail(fmt.Errorf("%w: %s: %d bytes after the end of the bundle", bundle.ErrTrailing, dl.name, n), err)
	}
	return res, dl.last()
}

// installDescriptor reads a descriptor and installs the bundle it names
// from its URL, by delta when the server supports ranges.
func (m *Module) installDescriptor(ctx context.Context, dl *download, name string, r io.Reader) (*install.Result, error) {
	d, err := ParseDescriptor(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dl.name, err)
	}
	if err := dl.last(); err != nil {
		return nil, err
	}
	version := d.Version
	if version == "" {
		version = name
	}
	if _, err := m.Agent.Begin(fleet.Job{ID: name, Source: d.URL, BundleHash: d.BundleHash, Version: version, Patches: d.Patches}); err != nil {
		return nil, err
	}
	o := m.Agent.Options
	o.Source, o.Trust.BundleHash, o.Trust.RequireSignature = d.URL, d.BundleHash, true
	res, err := m.Agent.Install(ctx, o, install.RebootNo)
	if err != nil {
		return nil, err
	}
	if d.Version != "" && res.Version != d.Version {
		return nil, m.fail(fmt.Errorf("%w: the descriptor says version %s, the bundle is %s", ErrArtifact, d.Version, res.Version), nil)
	}
	return res, nil
}
