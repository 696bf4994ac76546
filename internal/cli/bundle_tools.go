package cli

import (
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/signature"
)

// readCertChain reads PEM certificates (leaf first) as DER.
func readCertChain(name string) ([][]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("certificate chain: %w", err)
	}
	var chain [][]byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("certificate chain %s: unexpected PEM block %q", name, blk.Type)
		}
		chain = append(chain, blk.Bytes)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("certificate chain %s: no PEM certificates", name)
	}
	return chain, nil
}

// BundleInfo is what `bundle inspect --json` prints (docs/cli.md).
type BundleInfo struct {
	Hash          string          `json:"hash"`
	FormatVersion int             `json:"formatVersion"`
	Compatible    string          `json:"compatible"`
	Name          string          `json:"name"`
	Version       string          `json:"version"`
	MinVersion    string          `json:"minVersion,omitempty"`
	Incremental   bool            `json:"incremental"`
	Created       time.Time       `json:"created"`
	Signers       []SignerInfo    `json:"signers"`
	Payloads      []BundlePayload `json:"payloads"`
}

// SignerInfo names one signature (not verified by inspect).
type SignerInfo struct {
	Algorithm    string `json:"algorithm"`
	KeyID        string `json:"keyId"`
	Certificates int    `json:"certificates"`
}

// BundlePayload describes one payload.
type BundlePayload struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Target      string   `json:"target,omitempty"`
	Handler     []string `json:"handler,omitempty"`
	Chunker     string   `json:"chunker"`
	ChunkMin    uint32   `json:"chunkMin"`
	ChunkAvg    uint32   `json:"chunkAvg"`
	ChunkMax    uint32   `json:"chunkMax"`
	Size        uint64   `json:"size"`
	StoredSize  uint64   `json:"storedSize"`
	ChunkCount  uint32   `json:"chunkCount"`
	Digest      string   `json:"digest"`
	TableDigest string   `json:"tableDigest"`
	// StoredDigest is the SHA-256 of the payload's chunk data as stored.
	StoredDigest string        `json:"storedDigest"`
	Chunks       []BundleChunk `json:"chunks,omitempty"`
}

// BundleChunk is one chunk table entry. Compression is derived from the
// sizes: "zstd" when the chunk is stored smaller than its size, else "stored".
type BundleChunk struct {
	Offset      uint64 `json:"offset"`
	Size        uint32 `json:"size"`
	StoredSize  uint32 `json:"storedSize"`
	Compression string `json:"compression"`
	Digest      string `json:"digest"`
}

func algorithmName(a signature.Algorithm) string {
	switch a {
	case signature.Ed25519:
		return "ed25519"
	case signature.ECDSAP256SHA256:
		return "ecdsa-p256-sha256"
	}
	return fmt.Sprintf("unknown(%d)", a)
}

func bundleInfo(r *bundle.Reader) *BundleInfo {
	h := r.Header
	info := &BundleInfo{Hash: r.Hash.String(), FormatVersion: bundle.FormatVersion, Compatible: h.Compatible,
		Name: h.Name, Version: h.Version, MinVersion: h.MinVersion, Incremental: h.Incremental(),
		Created: time.Unix(h.Created, 0).UTC(), Signers: []SignerInfo{}}
	for _, s := range r.Signatures {
		info.Signers = append(info.Signers, SignerInfo{algorithmName(s.Algorithm), hex.EncodeToString(s.KeyID[:]), len(s.Certs)})
	}
	for _, p := range h.Payloads {
		ch := "buzhash"
		if p.Chunker == bundle.ChunkerFixed {
			ch = "fixed"
		}
		info.Payloads = append(info.Payloads, BundlePayload{Name: p.Name, Kind: p.Kind.String(), Target: p.Target,
			Handler: p.Handler, Chunker: ch, ChunkMin: p.ChunkMin, ChunkAvg: p.ChunkAvg, ChunkMax: p.ChunkMax,
			Size: p.Size, StoredSize: p.StoredSize, ChunkCount: p.Chunks,
			Digest: hex.EncodeToString(p.Digest[:]), TableDigest: hex.EncodeToString(p.TableDigest[:]),
			StoredDigest: hex.EncodeToString(p.StoredDigest[:])})
	}
	return info
}

func (a *app) bundleInspectCommand() *cobra.Command {
	var chunks, jsonOut bool
	cmd := &cobra.Command{
		Use:   "inspect BUNDLE [--json] [--chunks]",
		Short: "Show a bundle's hash, metadata, signers and payloads (nothing is verified)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, f, err := openBundle(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			defer r.Close()
			info := bundleInfo(r)
			if chunks {
				if err := r.Verify(acceptAll); err != nil {
					return err
				}
				for i := range info.Payloads {
					pr, err := r.NextPayload()
					if err != nil {
						return fmt.Errorf("%s: %w", args[0], err)
					}
					var off uint64
					for _, e := range pr.Entries {
						comp := "stored"
						if e.Compressed() {
							comp = "zstd"
						}
						info.Payloads[i].Chunks = append(info.Payloads[i].Chunks, BundleChunk{Offset: off, Size: e.Size,
							StoredSize: e.StoredSize, Compression: comp, Digest: hex.EncodeToString(e.Digest[:])})
						off += uint64(e.Size)
					}
					if err := pr.Skip(); err != nil {
						return fmt.Errorf("%s: %w", args[0], err)
					}
				}
			}
			if jsonOut {
				return a.printJSON(info)
			}
			a.printf("hash         %s\n", info.Hash)
			a.printf("compatible   %s\nversion      %s\n", info.Compatible, info.Version)
			if info.Name != "" {
				a.printf("name         %s\n", info.Name)
			}
			if info.MinVersion != "" {
				a.printf("min version  %s\n", info.MinVersion)
			}
			a.printf("incremental  %v\ncreated      %s\n", info.Incremental, info.Created.Format(time.RFC3339))
			if len(info.Signers) == 0 {
				a.printf("signers      none (unsigned)\n")
			}
			for _, s := range info.Signers {
				a.printf("signer       %s key %s (%d certificates)\n", s.Algorithm, s.KeyID, s.Certificates)
			}
			for _, p := range info.Payloads {
				a.printf("payload      %s: %s → %s, %d bytes in %d chunks (%d stored, %.1f %%)\n", p.Name, p.Kind, p.Target,
					p.Size, p.ChunkCount, p.StoredSize, 100*float64(p.StoredSize)/float64(max(p.Size, 1)))
				for _, c := range p.Chunks {
					a.printf("  %12d %8d %8d %s\n", c.Offset, c.Size, c.StoredSize, c.Digest)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print one JSON document")
	cmd.Flags().BoolVar(&chunks, "chunks", false, "list every chunk of every payload")
	return cmd
}

// trustFrom loads trust files given on the command line.
func trustFrom(files []string) (*signature.TrustStore, error) {
	ts := &signature.TrustStore{}
	if err := addTrust(ts, files); err != nil {
		return nil, err
	}
	return ts, nil
}

// addTrust adds trust files given on the command line to ts.
func addTrust(ts *signature.TrustStore, files []string) error {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("trust: %w", err)
		}
		if err := ts.Add(b); err != nil {
			return fmt.Errorf("trust %s: %w", f, err)
		}
	}
	return nil
}

// openVerified opens a bundle and verifies its signature against the trust
// files (accepting any bundle when insecure); who learns the signer.
func openVerified(name string, trust []string, insecure bool, who *signature.Signer) (*bundle.Reader, *os.File, error) {
	ts, err := trustFrom(trust)
	if err != nil {
		return nil, nil, err
	}
	r, f, err := openBundle(name)
	if err != nil {
		return nil, nil, err
	}
	verify := install.TrustVerifier(ts, time.Now(), who)
	if insecure {
		verify = acceptAll
	}
	if err := r.Verify(verify); err != nil {
		f.Close()
		return nil, nil, err
	}
	return r, f, nil
}

func (a *app) bundleVerifyCommand() *cobra.Command {
	var trust []string
	cmd := &cobra.Command{
		Use:   "verify BUNDLE --trust KEY_OR_CERT...",
		Short: "Verify a bundle's signature and every chunk, as a device would",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ts, err := trustFrom(trust)
			if err != nil {
				return err
			}
			_, hash, who, err := verifiedBundle(args[0], ts)
			if err != nil {
				return err
			}
			a.printf("ok: bundle %s, signed by %s, every chunk verified\n", hash, who)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&trust, "trust", nil, "trusted public key or root certificate (PEM, repeatable)")
	return cmd
}

// verifiedBundle checks a bundle file as a device would — its signature
// under trust and every chunk — and returns its header, hash and signer.
func verifiedBundle(name string, trust *signature.TrustStore) (*bundle.Header, bundle.Hash, signature.Signer, error) {
	var who signature.Signer
	r, f, err := openBundle(name)
	if err != nil {
		return nil, bundle.Hash{}, who, err
	}
	defer f.Close()
	defer r.Close()
	if err := r.Verify(install.TrustVerifier(trust, time.Now(), &who)); err != nil {
		return nil, bundle.Hash{}, who, fmt.Errorf("%s: %w", name, err)
	}
	for {
		pr, err := r.NextPayload()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			_, err = io.Copy(io.Discard, pr)
		}
		if err != nil {
			return nil, bundle.Hash{}, who, fmt.Errorf("%s: %w", name, err)
		}
	}
	return r.Header, r.Hash, who, nil
}

// resign rewrites a bundle file with a new signature section; header and
// payloads are copied byte for byte, so the bundle hash does not change.
func resign(name string, change func(r *bundle.Reader) ([]signature.Signature, error)) (bundle.Hash, error) {
	r, f, err := openBundle(name)
	if err != nil {
		return bundle.Hash{}, err
	}
	defer f.Close()
	defer r.Close()
	sigs, err := change(r)
	if err != nil {
		return r.Hash, err
	}
	sb, err := bundle.MarshalSignatures(sigs)
	if err != nil {
		return r.Hash, err
	}
	rest := int64(len(r.HeaderBytes) + len(r.SigBytes))
	return writeBundleFile(name, func(w io.Writer) (bundle.Hash, error) {
		if _, err := w.Write(r.HeaderBytes); err != nil {
			return r.Hash, err
		}
		if _, err := w.Write(sb); err != nil {
			return r.Hash, err
		}
		if _, err := f.Seek(rest, io.SeekStart); err != nil {
			return r.Hash, err
		}
		_, err := io.Copy(w, f)
		return r.Hash, err
	})
}

func (a *app) bundleSignCommand() *cobra.Command {
	var keys []string
	var cert string
	cmd := &cobra.Command{
		Use:   "sign BUNDLE --key KEY [--cert CHAIN]",
		Short: "Add signatures to a bundle (its hash does not change)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(keys) == 0 {
				return usageError{errors.New("give at least one --key")}
			}
			keys, err := withCert(keys, cert)
			if err != nil {
				return err
			}
			sign, err := signers(keys)
			if err != nil {
				return err
			}
			hash, err := resign(args[0], func(r *bundle.Reader) ([]signature.Signature, error) {
				more, err := sign(r.Hash)
				return append(r.Signatures, more...), err
			})
			if err != nil {
				return err
			}
			a.printf("%s\n", hash)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&keys, "key", nil, "PATH[:CHAIN]: PEM private key, optionally with an X.509 chain (repeatable)")
	cmd.Flags().StringVar(&cert, "cert", "", "X.509 chain (PEM, leaf first) of the single --key")
	return cmd
}

func (a *app) bundleMessageCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "signing-message BUNDLE",
		Short: "Print the exact bytes to sign offline or in an HSM (raw, to stdout)",
		Long: `Print the message a signature of this bundle signs: "tandem bundle signature v1", a NUL byte
and the 32-byte bundle hash. Sign it elsewhere (ed25519: the message itself; ECDSA P-256:
SHA-256 of it, ASN.1 DER signature), then add the result with "tandem bundle attach".`,
		Example: `  tandem bundle signing-message v2.tandem > msg.bin
  openssl pkeyutl -sign -inkey release.key -rawin -in msg.bin -out msg.sig
  tandem bundle attach v2.tandem --signature msg.sig --public-key release.pub`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, f, err := openBundle(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			defer r.Close()
			_, err = a.env.Stdout.Write(signature.Message(r.Hash))
			return err
		},
	}
}

func (a *app) bundleAttachCommand() *cobra.Command {
	var sigFile, pubFile, chainFile string
	cmd := &cobra.Command{
		Use:   "attach BUNDLE --signature SIG (--public-key PUB | --cert CHAIN)",
		Short: "Add a signature made elsewhere; it is checked before it is added",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sigFile == "" || (pubFile == "") == (chainFile == "") {
				return usageError{errors.New("give --signature and one of --public-key or --cert")}
			}
			raw, err := os.ReadFile(sigFile)
			if err != nil {
				return err
			}
			var chain [][]byte
			var pubPEM []byte
			if chainFile != "" {
				if chain, err = readCertChain(chainFile); err != nil {
					return err
				}
			} else if pubPEM, err = os.ReadFile(pubFile); err != nil {
				return err
			}
			hash, err := resign(args[0], func(r *bundle.Reader) ([]signature.Signature, error) {
				sig, err := signature.Detached(raw, pubPEM, chain, r.Hash)
				if err != nil {
					return nil, err
				}
				return append(r.Signatures, sig), nil
			})
			if err != nil {
				return err
			}
			a.printf("%s\n", hash)
			return nil
		},
	}
	cmd.Flags().StringVar(&sigFile, "signature", "", "the raw signature over the signing message")
	cmd.Flags().StringVar(&pubFile, "public-key", "", "the signer's PEM public key")
	cmd.Flags().StringVar(&chainFile, "cert", "", "the signer's PEM certificate chain, leaf first")
	return cmd
}

func (a *app) bundleExtractCommand() *cobra.Command {
	var trust []string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "extract BUNDLE PAYLOAD OUT --trust KEY...",
		Short: "Write one payload's verified content to a file",
		Args:  exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, f, err := openVerified(args[0], trust, insecure, nil)
			if err != nil {
				return err
			}
			defer f.Close()
			for {
				pr, err := r.NextPayload()
				if errors.Is(err, io.EOF) {
					return fmt.Errorf("%s has no payload %q", args[0], args[1])
				}
				if err != nil {
					return err
				}
				if pr.Payload.Name != args[1] {
					if _, err := io.Copy(io.Discard, pr); err != nil {
						return err
					}
					continue
				}
				_, err = writeBundleFile(args[2], func(w io.Writer) (bundle.Hash, error) {
					_, err := io.Copy(w, pr)
					return r.Hash, err
				})
				return err
			}
		},
	}
	cmd.Flags().StringArrayVar(&trust, "trust", nil, "trusted public key or root certificate (PEM, repeatable)")
	cmd.Flags().BoolVar(&insecure, "insecure-skip-verification", false, "extract without checking the signature (chunks are still checked)")
	return cmd
}
