package cli

import (
	"errors"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/channel"
	"github.com/tandem-ota/tandem/internal/signature"
)

func (a *app) channelCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "channel",
		Short: "Publish, inspect and verify update channel files (tandem watch follows them)",
		Long: `An update channel file is a small signed JSON document on any HTTP server, object store or CDN
that names the current release of a channel: the bundle's URL (absolute, or relative to the channel
file), its bundle hash, its version, and optionally a rollout percentage and a device selector.
Devices follow it with "tandem watch URL". Format and workflow: docs/integrations/channels.md.`,
	}
	cmd.AddCommand(a.channelPublishCommand(), a.channelInspectCommand(), a.channelVerifyCommand())
	return cmd
}

func (a *app) channelPublishCommand() *cobra.Command {
	var fl channel.PublishFlags
	cmd := &cobra.Command{
		Use:   "publish --channel NAME --bundle FILE --key KEY -o CHANNEL.json",
		Short: "Write a signed channel file naming a bundle as the channel's current release",
		Long: `Write the channel file that makes a bundle the current release of a channel. The bundle is
verified first (signature and every chunk); its hash, version and compatible go into the file, so
devices install exactly this bundle (pinned by hash) and still check its own signature.

The bundle's signature is checked against --trust files, or (without --trust) against the public
keys of the --key files: the usual setup signs bundles and channels with the same release key.

The bundle URL in the file is --url (absolute), or --relative NAME resolved against the channel
file's own URL on the device (default: the bundle's file name), so that a mirror of both files works.
The patches in --patches (default BUNDLE.patches/, from "tandem bundle delta") are verified and
listed with their URLs next to the bundle's (docs/delta.md, "Publishing patches").

The sequence number must grow with every publish: devices refuse a file older than one they saw.
Without --sequence it is the larger of (the sequence in the existing -o file + 1) and the current
Unix time in seconds, so CI needs no state. The file is written atomically; upload the bundle first,
then the channel file.

  tandem channel publish --channel stable --bundle v2.tandem --key release.key -o stable.json
  tandem channel publish --channel stable --bundle v2.tandem --key release.key --rollout 10 -o stable.json
  tandem channel publish --channel beta --bundle v2.tandem --url https://cdn.example/b/v2.tandem \
      --key release.key --select ring=beta --expires 7d -o beta.json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := fl.Check()
			if err != nil {
				return usageError{err}
			}
			if err := p.Load(fl.Keys, fl.Trust); err != nil {
				return err
			}
			pub, err := channel.Publish(p)
			if err != nil {
				return err
			}
			if fl.JSON {
				return a.printJSON(pub.File.Info(""))
			}
			a.printf("%s\n", pub.Summary(fl.Out))
			return nil
		},
	}
	fl.Define(cmd.Flags())
	return cmd
}

// ChannelInfo is what `channel inspect --json` prints (docs/cli.md).
type ChannelInfo = channel.Info

func (a *app) channelInspectCommand() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "inspect FILE|URL",
		Short: "Show what a channel file says (checks its format, not its signature)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := channel.Load(args[0])
			if err != nil {
				return err
			}
			return a.show(jsonOut, f.Info(""), func(w io.Writer) error { return f.WriteText(w, "") })
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func (a *app) channelVerifyCommand() *cobra.Command {
	var (
		o                   channel.CheckOptions
		trust               []string
		jsonOut             bool
		bundlePath, keysDir string
	)
	cmd := &cobra.Command{
		Use:   "verify FILE|URL --trust KEY...",
		Short: "Verify a channel file as a device would (signature, expiry, and optionally name and bundle)",
		Long: `Verify a channel file's signature under --trust (public keys or root certificates) and that it
has not expired, as a device running "tandem watch" does. With --channel and --compatible the name
and device type are checked too; --min-sequence refuses a file older than a sequence you know of;
--bundle checks that a bundle file is the one the channel pins.

  tandem channel verify stable.json --trust release.pub
  tandem channel verify https://cdn.example/fleet/stable.json --trust release.pub --channel stable --bundle v2.tandem`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(trust) == 0 && keysDir == "" {
				return usageError{errors.New("--trust (or --keys-dir) is required: a channel file is only as good as its signature")}
			}
			var err error
			if o.Trust, err = signature.LoadTrustNamed(keysDir, trust); err != nil { // a --keys-dir must exist
				return err
			}
			o.Now = time.Now()
			f, acc, err := channel.VerifyFile(args[0], o, bundlePath)
			if err != nil {
				return err
			}
			verified := "signed by " + acc.Signer.String()
			return a.show(jsonOut, f.Info(verified), func(w io.Writer) error { return f.WriteText(w, verified) })
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&trust, "trust", nil, "trusted public key or root certificate (PEM, repeatable)")
	fl.StringVar(&keysDir, "keys-dir", "", "also trust every key in this directory (as a device does)")
	fl.StringVar(&o.Channel, "channel", "", "the channel name the file must carry")
	fl.StringVar(&o.Compatible, "compatible", "", "the compatible the file must carry")
	fl.Uint64Var(&o.MinSequence, "min-sequence", 0, "refuse a sequence below this")
	fl.BoolVar(&o.AllowExpired, "allow-expired", false, "check the signature only, not the expiry")
	fl.StringVar(&bundlePath, "bundle", "", "check that this bundle file is the one the channel pins (and verify it)")
	fl.BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}
