package cli

import (
	"bufio"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/signature"
)

func (a *app) bundleCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Make, inspect, sign and verify update bundles (on a build host)",
		Long: `An update bundle carries payloads (slot images, file trees, scripts) in content-defined,
individually compressed and hashed chunks, under a header whose SHA-256 is the bundle hash
and which signatures sign (docs/bundle-format.md).`,
	}
	cmd.AddCommand(a.bundleCreateCommand(), a.bundleInspectCommand(), a.bundleVerifyCommand(),
		a.bundleSignCommand(), a.bundleMessageCommand(), a.bundleAttachCommand(), a.bundleExtractCommand())
	return cmd
}

func (a *app) keyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Signing keys"}
	cmd.AddCommand(&cobra.Command{
		Use:   "generate NAME",
		Short: "Generate an ed25519 key pair: NAME.key (private, mode 0600) and NAME.pub",
		Long: `Generate an ed25519 signing key. Keep NAME.key on the build host (or better, in an HSM and
use the detached signing path); install NAME.pub on devices in the keys directory
(/etc/tandem/keys) or pass it to "tandem sim new --trust".`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			priv, pub, err := signature.GenerateKey()
			if err != nil {
				return err
			}
			if err := writeNew(args[0]+".key", priv, 0o600); err != nil {
				return err
			}
			if err := writeNew(args[0]+".pub", pub, 0o644); err != nil {
				return err
			}
			a.printf("wrote %s.key (keep it secret) and %s.pub (install it on devices)\n", args[0], args[0])
			return nil
		},
	})
	return cmd
}

// writeNew writes a file that must not exist yet.
func writeNew(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// withCert applies --cert CHAIN to the one --key it belongs to.
func withCert(keys []string, cert string) ([]string, error) {
	if cert == "" {
		return keys, nil
	}
	if len(keys) != 1 || strings.Contains(keys[0], ":") {
		return nil, usageError{errors.New("--cert needs exactly one --key; for several, write --key KEY:CHAIN")}
	}
	return []string{keys[0] + ":" + cert}, nil
}

// keyArg is a loaded --key PATH[:CHAIN] argument.
type keyArg struct {
	key   crypto.Signer
	chain [][]byte
}

// loadKeys loads --key PATH[:CHAIN] arguments.
func loadKeys(keys []string) ([]keyArg, error) {
	var ks []keyArg
	for _, k := range keys {
		keyPath, chainPath, _ := strings.Cut(k, ":")
		b, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		key, err := signature.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", keyPath, err)
		}
		var chain [][]byte
		if chainPath != "" {
			if chain, err = readCertChain(chainPath); err != nil {
				return nil, err
			}
		}
		ks = append(ks, keyArg{key, chain})
	}
	return ks, nil
}

// signers loads --key PATH[:CHAIN] arguments into a signing function.
func signers(keys []string) (func(bundle.Hash) ([]signature.Signature, error), error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ks, err := loadKeys(keys)
	if err != nil {
		return nil, err
	}
	return func(h bundle.Hash) ([]signature.Signature, error) {
		var sigs []signature.Signature
		for _, k := range ks {
			sig, err := signature.Sign(k.key, k.chain, h)
			if err != nil {
				return nil, err
			}
			sigs = append(sigs, sig)
		}
		return sigs, nil
	}, nil
}

func (a *app) bundleCreateCommand() *cobra.Command {
	var (
		meta        bundle.Header
		slots, keys []string
		specFile    string
		cert        string
		level       string
		chunkSize   string
		fixed       bool
		incremental bool
	)
	cmd := &cobra.Command{
		Use:   "create OUT (--slot ALIAS=IMAGE... | --spec bundle.toml)",
		Short: "Create a bundle from slot images (or from a spec file)",
		Long: `Create a bundle. Payloads are chunked (casync-compatible, average 64 KiB), compressed on
all cores and spooled to temporary files, so memory stays small for any image size. With
SOURCE_DATE_EPOCH set, the same inputs give a byte-identical unsigned bundle.

--key PATH[:CHAIN] signs with a PEM private key (ed25519 or ECDSA P-256), optionally with an
X.509 chain (PEM, leaf first); repeat it to sign with several keys (key rotation).
--spec reads everything else from a TOML file (docs/bundle-spec.md).`,
		Example: `  tandem bundle create v2.tandem --compatible acme-gw --version 2.0.0 --slot system=rootfs.ext4 --key release.key
  tandem bundle create --spec bundle.toml out.tandem`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var specs []bundle.PayloadSpec
			var files []*os.File
			defer func() {
				for _, f := range files {
					f.Close()
				}
			}()
			opts := bundle.Options{Level: bundle.Level(level), TempDir: filepath.Dir(args[0])}
			if specFile != "" {
				s, err := loadSpec(specFile)
				if err != nil {
					return err
				}
				meta, specs, files, opts.Level = s.header, s.payloads, s.files, s.level
				keys = append(s.keys, keys...)
			} else {
				size, err := parseSize(chunkSize)
				if err != nil {
					return usageError{fmt.Errorf("--chunk-size: %w", err)}
				}
				if len(slots) == 0 {
					return usageError{errors.New("give at least one --slot ALIAS=IMAGE (or --spec)")}
				}
				for _, s := range slots {
					alias, file, ok := strings.Cut(s, "=")
					if !ok || alias == "" || file == "" {
						return usageError{fmt.Errorf("--slot %q: want ALIAS=IMAGE", s)}
					}
					f, err := os.Open(file)
					if err != nil {
						return err
					}
					files = append(files, f)
					ch := bundle.ChunkerBuzhash
					if fixed {
						ch = bundle.ChunkerFixed
					}
					specs = append(specs, bundle.PayloadSpec{Name: alias, Kind: bundle.KindSlot, Target: alias,
						Chunker: ch, ChunkSize: int(size), Source: bufio.NewReaderSize(f, 1<<20)})
				}
				if incremental {
					meta.Flags |= bundle.FlagIncremental
				}
			}
			keys, err := withCert(keys, cert)
			if err != nil {
				return err
			}
			created, err := sourceDateEpoch(a.env.Getenv("SOURCE_DATE_EPOCH"))
			if err != nil {
				return usageError{err}
			}
			meta.Created = created
			if opts.Sign, err = signers(keys); err != nil {
				return err
			}
			hash, err := writeBundleFile(args[0], func(w io.Writer) (bundle.Hash, error) {
				return bundle.Write(w, meta, specs, opts)
			})
			if err != nil {
				return err
			}
			a.printf("%s\n", hash)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&meta.Compatible, "compatible", "", "the devices' compatible string")
	f.StringVar(&meta.Version, "version", "", "the bundle's semantic version (e.g. 2.1.0)")
	f.StringVar(&meta.Name, "name", "", "a name for humans")
	f.StringVar(&meta.MinVersion, "min-version", "", "the oldest installed version the bundle applies to")
	f.BoolVar(&incremental, "incremental", false, "mark the bundle incremental (it updates part of a group)")
	f.StringArrayVar(&slots, "slot", nil, "ALIAS=IMAGE: a slot image payload for the slot alias (repeatable)")
	f.StringArrayVar(&keys, "key", nil, "PATH[:CHAIN]: sign with this PEM key (repeatable)")
	f.StringVar(&cert, "cert", "", "X.509 chain (PEM, leaf first) of the single --key")
	f.StringVar(&specFile, "spec", "", "read the bundle description from this TOML file")
	f.StringVar(&level, "compression", "default", "stored, fastest, default or best")
	f.StringVar(&chunkSize, "chunk-size", "64K", "average chunk size (min = 1/4, max = 4x)")
	f.BoolVar(&fixed, "fixed-chunks", false, "fixed-size chunks of --chunk-size instead of content-defined ones")
	return cmd
}

// sourceDateEpoch returns SOURCE_DATE_EPOCH, or now when it is unset.
func sourceDateEpoch(v string) (int64, error) {
	if v == "" {
		return time.Now().Unix(), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since the epoch", v)
	}
	return n, nil
}

// writeBundleFile writes a bundle to name through a temporary file renamed
// at the end, so a failure never leaves a partial bundle behind.
func writeBundleFile(name string, write func(io.Writer) (bundle.Hash, error)) (bundle.Hash, error) {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tandem-bundle-*")
	if err != nil {
		return bundle.Hash{}, err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	hash, err := write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	return hash, err
}

// openBundle opens a bundle file and reads its header and signatures.
func openBundle(name string) (*bundle.Reader, *os.File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	r, err := bundle.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return r, f, nil
}

func acceptAll(*bundle.Header, bundle.Hash, []signature.Signature) error { return nil }
