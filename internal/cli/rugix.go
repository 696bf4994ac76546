package cli

import (
	"fmt"
	"path"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/device"
	rugixctrl "github.com/tandem-ota/tandem/internal/fleet/rugix"
)

// RugixName is the program name (argv[0] base name) that selects the
// rugix-ctrl compatible command line (docs/integrations/rugix-ctrl.md).
const RugixName = "rugix-ctrl"

// rugixCommand is the subset of rugix-ctrl's command line that the public
// Rugix integrations (Mender module, thin-edge.io workflow, Memfault
// template, Nexigon script) call, mapped onto tandem. Only the flags listed
// here are accepted; any other fails as a usage error, so that a script never
// silently gets a behaviour it did not ask for.
func (a *app) rugixCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   RugixName,
		Short: "tandem's rugix-ctrl compatible command line",
		Long: `This is tandem, invoked as rugix-ctrl: it accepts the commands and flags the public Rugix
fleet integrations call, so that their scripts run unchanged on a tandem device; the bundles are
tandem bundles and the device is the one /etc/tandem/system.toml describes (TANDEM_ROOT for a
simulated one). Every command and flag: docs/integrations/rugix-ctrl.md; tandem's own: tandem --help.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true // only rugix-ctrl's commands

	root.AddCommand(group("update", "Install updates", a.rugixInstallCommand()),
		group("system", "Boot state: info, commit, reboot", a.rugixInfoCommand(), a.rugixCommitCommand(), a.rugixRebootCommand()),
		group("slots", "Slot indexes for delta updates", a.rugixCreateIndexCommand()),
		group("state", "State: factory reset", a.rugixStateResetCommand()), a.bootCommand())
	return root
}

func (a *app) rugixInstallCommand() *cobra.Command {
	var fl rugixctrl.InstallFlags
	cmd := &cobra.Command{
		Use:   "install BUNDLE",
		Short: "Install a tandem bundle (path, - for stdin, or http(s) URL) into the spare group",
		Long: `Install a tandem bundle into the spare group, as "tandem update install" does.

--reboot yes (the default, as in rugix-ctrl) arranges a trial boot of the new group and
reboots; set (and deferred, which tandem treats as set) arranges the trial without
rebooting; no only writes. --bundle-hash takes tandem's bundle hash (64 hex digits, as
"tandem bundle inspect" prints it; a "sha256:" prefix is accepted). Without it the bundle
must be signed by a key the device trusts, unless --insecure-skip-bundle-verification.

Progress: when stdout is not a terminal, JSON lines {"event":"UpdateProgress","progress":P}.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mode, err := fl.Parse()
			if err != nil {
				return usageError{err}
			}
			d, err := a.open()
			if err != nil {
				return err
			}
			o := fl.Options
			o.Source, o.Stdin = args[0], a.env.Stdin
			return rugixctrl.RunInstall(cmd.Context(), d, o, mode, a.env.Stdout, a.rugixSay)
		},
	}
	fl.Define(cmd.Flags())
	return cmd
}

func (a *app) rugixInfoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "info [--json]",
		Short: "Print the boot state as JSON with rugix-ctrl's field names",
		Long: `Print one JSON document: slots (active, hashes, size, updatedAt), boot (bootFlow,
activeGroup, defaultGroup, groups) and state (status). It is JSON with or without --json,
as scripts written for rugix-ctrl expect, e.g.

  rugix-ctrl system info --json | jq -r .boot.activeGroup`,
		Args: exactArgs(0),
		RunE: a.onDevice(func(d *device.Device, _ []string) error {
			info, err := rugixctrl.SystemInfo(d)
			if err != nil {
				return err
			}
			return a.printJSON(info)
		}),
	}
	cmd.Flags().Bool("json", false, "print JSON (always on)")
	return cmd
}

func (a *app) rugixCommitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "commit",
		Short: "Make the running group the default (keep a trial)",
		Args:  exactArgs(0),
		RunE: a.onDevice(func(d *device.Device, _ []string) error {
			return rugixctrl.Commit(d, a.rugixSay)
		}),
	}
}

func (a *app) rugixRebootCommand() *cobra.Command {
	var spare bool
	cmd := &cobra.Command{
		Use:   "reboot [--spare]",
		Short: "Reboot, with --spare into the spare group on trial",
		Args:  exactArgs(0),
		RunE: a.onDevice(func(d *device.Device, _ []string) error {
			return rugixctrl.Reboot(d, spare)
		}),
	}
	cmd.Flags().BoolVar(&spare, "spare", false, "boot the spare group once on trial")
	return cmd
}

func (a *app) rugixCreateIndexCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "create-index SLOT CHUNKER HASH-ALG",
		Short: "Index a slot for delta updates (mapped to tandem slots index)",
		Long: `Index a slot's chunks as "tandem slots index" does. CHUNKER is casync-N (content-defined,
average N KiB) or fixed-N (N KiB blocks); HASH-ALG (sha256, sha512-256, sha512) is accepted
but tandem's index always uses SHA-256, the digest of its bundles. tandem indexes the slots
it writes by itself and the others on first need, so this command only saves time on the
first delta install. A slot this device does not have (e.g. boot-a in the thin-edge.io
workflow on a device without boot slots) is skipped with a warning and exit status 0.`,
		Args: exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			x, err := rugixctrl.ParseIndex(args[1], args[2])
			if err != nil {
				return usageError{err}
			}
			d, err := a.open()
			if err != nil {
				return err
			}
			return rugixctrl.CreateIndex(d, args[0], x, a.rugixSay)
		},
	}
}

func (a *app) rugixStateResetCommand() *cobra.Command {
	var backup bool
	var name string
	cmd := &cobra.Command{
		Use:   "reset [--backup] [--backup-name NAME]",
		Short: "Factory-reset the state at the next boot and reboot now",
		Long: `Record a factory reset as "tandem state reset --reboot" does, and reboot: the next boot
replaces the state by a clean one before anything uses it (docs/state.md). --backup keeps
the old state aside (tandem's --keep-backup); --backup-name implies it, but tandem keeps one
backup and does not name it (a warning says so).`,
		Args: exactArgs(0),
		RunE: a.onDevice(func(d *device.Device, _ []string) error {
			return rugixctrl.StateReset(d, backup, name, a.rugixSay)
		}),
	}
	cmd.Flags().BoolVar(&backup, "backup", false, "keep the old state aside instead of wiping it")
	cmd.Flags().StringVar(&name, "backup-name", "", "accepted; implies --backup (tandem's backup has no name)")
	return cmd
}

// rugixSay writes one line of rugix-ctrl's messages to stderr.
func (a *app) rugixSay(s string) { fmt.Fprintf(a.env.Stderr, "%s: %s\n", RugixName, s) }

// isRugixName reports whether argv0 invokes the rugix-ctrl command line.
func isRugixName(argv0 string) bool { return path.Base(argv0) == RugixName }
