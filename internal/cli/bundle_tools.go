package cli

import (
	"errors"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/bundle/spec"
	"github.com/tandem-ota/tandem/internal/signature"
)

// BundleInfo is what `bundle inspect --json` prints (docs/cli.md).
type BundleInfo = bundle.Info

func (a *app) bundleInspectCommand() *cobra.Command {
	var chunks, jsonOut bool
	cmd := &cobra.Command{
		Use:   "inspect BUNDLE [--json] [--chunks]",
		Short: "Show a bundle's hash, metadata, signers and payloads (nothing is verified)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := bundle.Inspect(args[0], chunks)
			if err != nil {
				return err
			}
			return a.show(jsonOut, info, info.WriteText)
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print one JSON document")
	cmd.Flags().BoolVar(&chunks, "chunks", false, "list every chunk of every payload")
	return cmd
}

func (a *app) bundleVerifyCommand() *cobra.Command {
	var trust []string
	cmd := &cobra.Command{
		Use:   "verify BUNDLE --trust KEY_OR_CERT...",
		Short: "Verify a bundle's signature and every chunk, as a device would",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var who signature.Signer
			verify, err := bundle.TrustFiles(trust, &who)
			if err != nil {
				return err
			}
			_, hash, err := bundle.VerifyFile(args[0], verify)
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
			keys, err := spec.WithCert(keys, cert)
			if err != nil {
				return usageError{err}
			}
			sign, err := spec.Signer(keys)
			if err != nil {
				return err
			}
			hash, err := bundle.AddSignatures(args[0], sign)
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
			f, err := bundle.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = a.env.Stdout.Write(signature.Message(f.Hash))
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
			detached, err := signature.ReadDetached(sigFile, pubFile, chainFile)
			if err != nil {
				return err
			}
			hash, err := bundle.AddSignatures(args[0], func(h bundle.Hash) ([]signature.Signature, error) {
				sig, err := detached(h)
				return []signature.Signature{sig}, err
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
			if insecure {
				return bundle.ExtractFile(args[0], args[1], args[2], bundle.Unverified)
			}
			verify, err := bundle.TrustFiles(trust, nil)
			if err != nil {
				return err
			}
			return bundle.ExtractFile(args[0], args[1], args[2], verify)
		},
	}
	cmd.Flags().StringArrayVar(&trust, "trust", nil, "trusted public key or root certificate (PEM, repeatable)")
	cmd.Flags().BoolVar(&insecure, "insecure-skip-verification", false, "extract without checking the signature (chunks are still checked)")
	return cmd
}
