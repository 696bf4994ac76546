package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tandem-ota/tandem/internal/api"
	"github.com/tandem-ota/tandem/internal/install"
)

func (a *app) updateCommand() *cobra.Command {
	var o install.Options
	var reboot string
	var jsonOut bool
	installCmd := &cobra.Command{
		Use:   "install SOURCE",
		Short: "Install a bundle (path, - for stdin, or http(s) URL) into the spare group",
		Long: `Install a bundle into the spare group. Every chunk is verified against the signed bundle
header before it is written; the bundle must be signed by a trusted key (the device's keys
directory, or --trust) or match --bundle-hash. compatible, version policy and payload sizes
are checked before the first byte is written. Nothing of the running or default group is
ever touched, and a failure leaves the boot configuration as it was.

From an http(s) URL whose server supports Range requests, only the chunks the device does
not already hold in its slots are downloaded (docs/delta.md); --no-delta downloads it all.

--reboot no (default) only writes; set arranges a trial boot of the new group at the next
reboot; yes does that and reboots now.

Progress: a progress bar on a terminal; otherwise, or with --json, JSON lines on stdout:
{"event":"progress",...} events, then one final {"event":"done",...} or {"event":"error",...}.`,
		Example: `  tandem update install /data/v2.tandem --reboot yes
  curl -s https://updates.example.com/v2.tandem | tandem update install - --json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mode, err := install.ParseReboot(reboot)
			if err != nil {
				return usageError{fmt.Errorf("--reboot %w", err)}
			}
			o.Source, o.Stdin = args[0], a.env.Stdin
			bar := install.NewPrinter(a.env.Stdout, jsonOut)
			res, err := a.ops().Install(cmd.Context(), api.InstallRequest{Options: o, Reboot: mode}, bar.Event)
			return bar.End(res, err)
		},
	}
	f := installCmd.Flags()
	f.StringVar(&reboot, "reboot", string(install.RebootNo), "no, set or yes")
	addFetchFlags(f, &o)
	f.StringVar(&o.Trust.BundleHash, "bundle-hash", "", "accept the bundle with this hash (as bundle inspect prints it) instead of a signature")
	f.BoolVar(&o.Trust.Insecure, "insecure-skip-verification", false, "install without verifying the signature (never in production)")
	f.BoolVar(&o.Policy.AllowDowngrade, "allow-downgrade", false, "allow a version older than the running one")
	f.StringVar(&o.Group, "group", "", "target group (default: the only spare group)")
	f.BoolVar(&jsonOut, "json", false, "JSON lines on stdout instead of a progress bar")
	f.Int64Var(&o.HTTP.DeltaGap, "delta-gap", 0, "fetch up to this many bytes between two needed chunks to save a request (default 4096, -1 = never)")
	return group("update", "Install updates", installCmd)
}

// addFetchFlags adds the trust, HTTPS and delta flags of every installing command.
func addFetchFlags(f *pflag.FlagSet, o *install.Options) {
	f.StringArrayVar(&o.Trust.Files, "trust", nil, "extra trusted public key or root certificate (PEM, repeatable)")
	f.StringVar(&o.HTTP.CAFile, "ca-file", "", "PEM roots for https")
	f.StringVar(&o.HTTP.CertFile, "client-cert", "", "client certificate for https (PEM)")
	f.StringVar(&o.HTTP.KeyFile, "client-key", "", "key of the client certificate (PEM)")
	f.StringArrayVar(&o.HTTP.Headers, "header", nil, "extra HTTP header \"Name: value\" (repeatable)")
	f.BoolVar(&o.HTTP.NoDelta, "no-delta", false, "download the whole bundle even when the server supports ranges")
	f.BoolVar(&o.HTTP.NoPatch, "no-patch", false, "do not look for a patch next to the bundle (chunk reuse only)")
}
