package cli

import (
	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/bundle/spec"
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
		a.bundleSignCommand(), a.bundleMessageCommand(), a.bundleAttachCommand(), a.bundleExtractCommand(), a.bundleDeltaCommand())
	return cmd
}

func (a *app) keyCommand() *cobra.Command {
	return group("key", "Signing keys", &cobra.Command{
		Use:   "generate NAME",
		Short: "Generate an ed25519 key pair: NAME.key (private, mode 0600) and NAME.pub",
		Long: `Generate an ed25519 signing key. Keep NAME.key on the build host (or better, in an HSM and
use the detached signing path); install NAME.pub on devices in the keys directory
(/etc/tandem/keys) or pass it to "tandem sim new --trust".`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := signature.GenerateKeyFiles(args[0]); err != nil {
				return err
			}
			a.printf("wrote %s.key (keep it secret) and %s.pub (install it on devices)\n", args[0], args[0])
			return nil
		},
	})
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
			s := &spec.Spec{Header: meta, Level: bundle.Level(level)}
			var err error
			if specFile != "" {
				if s, err = spec.Load(specFile); err != nil {
					return err
				}
				keys = append(s.Keys, keys...)
			} else if s.Payloads, err = spec.SlotPayloads(slots, chunkSize, fixed); err != nil {
				return usageError{err}
			} else if incremental {
				s.Header.Flags |= bundle.FlagIncremental
			}
			if keys, err = spec.WithCert(keys, cert); err != nil {
				return usageError{err}
			}
			if s.Header.Created, err = spec.Created(a.env.Getenv("SOURCE_DATE_EPOCH")); err != nil {
				return usageError{err}
			}
			sign, err := spec.Signer(keys)
			if err != nil {
				return err
			}
			hash, err := s.Create(args[0], sign, a.warn)
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
