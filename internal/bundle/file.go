package bundle

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/signature"
)

// This file holds what the build-host tools (tandem bundle …) do with bundle
// files: write one, check one as a device would, add signatures to one, extract a
// payload. Every file they write is put in place atomically and durably
// (rootfs.CreateHostFile), so a failure never leaves a partial bundle.

// TrustVerifier accepts a bundle with a valid signature under trust, with
// tandem's time policy (signature.TimePolicy: the device clock when it is
// past the build floor, else the bundle's signed creation time). It stores
// who signed in signer when signer is not nil.
func TrustVerifier(trust *signature.TrustStore, now time.Time, signer *signature.Signer) Verifier {
	return func(h *Header, hash Hash, sigs []signature.Signature) error {
		who, err := signature.Verify(sigs, trust, hash, signature.TimePolicy{
			Now: now, Floor: signature.DefaultFloor(), Created: time.Unix(h.Created, 0)})
		if err == nil && signer != nil {
			*signer = who
		}
		return err
	}
}

// TrustFiles is TrustVerifier for the trusted public keys and root
// certificates in files (PEM) and the clock of now: how the build-host tools
// (bundle verify, bundle extract) check a bundle as a device would.
func TrustFiles(files []string, signer *signature.Signer) (Verifier, error) {
	trust, err := signature.LoadTrust("", files)
	if err != nil {
		return nil, err
	}
	return TrustVerifier(trust, time.Now(), signer), nil
}

// acceptAny accepts every signature section: for showing a bundle's chunk
// tables, never for using its content.
func acceptAny(*Header, Hash, []signature.Signature) error { return nil }

// File is a bundle file open for reading: its Reader has read the header
// and the signature section, nothing is verified yet.
type File struct {
	*Reader
	f *os.File
}

// Open opens the bundle file name and reads its header and signature
// section (NewReader).
func Open(name string) (*File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &File{r, f}, nil
}

// Close closes the reader and the file.
func (f *File) Close() error {
	f.Reader.Close()
	return f.f.Close()
}

// writeFile replaces the file name by what write writes, atomically.
func writeFile(name string, write func(io.Writer) error) error {
	a, err := rootfs.CreateHostFile(name, 0o644)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(a, 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		a.Abort()
		return err
	}
	return a.Commit()
}

// WriteFile writes a bundle (Write) to the file name, atomically. Chunk data
// is spooled next to it unless opts.TempDir says otherwise.
func WriteFile(name string, meta Header, payloads []PayloadSpec, opts Options) (Hash, error) {
	if opts.TempDir == "" {
		opts.TempDir = filepath.Dir(name)
	}
	var hash Hash
	err := writeFile(name, func(w io.Writer) (err error) {
		hash, err = Write(w, meta, payloads, opts)
		return err
	})
	return hash, err
}

// VerifyFile checks the bundle file name as a device would: its signature
// section by verify, then every chunk of every payload. As a check of the
// whole file, it also recomputes each payload's whole-content and
// stored-bytes digests, which an install does not need
// (Reader.CheckPayloadDigests). It returns the
// verified header and the bundle hash.
func VerifyFile(name string, verify Verifier) (*Header, Hash, error) {
	f, err := Open(name)
	if err != nil {
		return nil, Hash{}, err
	}
	defer f.Close()
	f.CheckPayloadDigests = true
	if err := f.Verify(verify); err != nil {
		return nil, Hash{}, fmt.Errorf("%s: %w", name, err)
	}
	for {
		pr, err := f.NextPayload()
		if errors.Is(err, io.EOF) {
			return f.Header, f.Hash, nil
		}
		if err == nil {
			_, err = io.Copy(io.Discard, pr)
		}
		if err != nil {
			return nil, Hash{}, fmt.Errorf("%s: %w", name, err)
		}
	}
}

// AddSignatures rewrites the bundle file name with the signatures more
// makes for its hash added to those it has. Header and payloads are copied
// byte for byte, so the bundle hash, which AddSignatures returns, does not
// change.
func AddSignatures(name string, more func(Hash) ([]signature.Signature, error)) (Hash, error) {
	f, err := Open(name)
	if err != nil {
		return Hash{}, err
	}
	defer f.Close()
	sigs, err := more(f.Hash)
	if err != nil {
		return f.Hash, err
	}
	sb, err := MarshalSignatures(append(f.Signatures, sigs...))
	if err != nil {
		return f.Hash, err
	}
	rest := int64(len(f.HeaderBytes) + len(f.SigBytes))
	return f.Hash, writeFile(name, func(w io.Writer) error {
		if _, err := w.Write(f.HeaderBytes); err != nil {
			return err
		}
		if _, err := w.Write(sb); err != nil {
			return err
		}
		if _, err := f.f.Seek(rest, io.SeekStart); err != nil {
			return err
		}
		_, err := io.Copy(w, f.f)
		return err
	})
}

// ExtractFile writes the verified content of the payload named payload of
// the bundle file name to the file out (atomically: a bad chunk leaves no
// out file). verify checks the signature section first.
func ExtractFile(name, payload, out string, verify Verifier) error {
	f, err := Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Verify(verify); err != nil {
		return err
	}
	for {
		pr, err := f.NextPayload()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s has no payload %q", name, payload)
		}
		if err != nil {
			return err
		}
		if pr.Payload.Name == payload {
			return writeFile(out, func(w io.Writer) error {
				_, err := io.Copy(w, pr)
				return err
			})
		}
		if _, err := io.Copy(io.Discard, pr); err != nil {
			return err
		}
	}
}
