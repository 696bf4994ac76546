package cli

import (
	"net"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/sim"
)

func (a *app) simCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulated devices: try tandem, bundles and hooks without hardware",
		Long: `A simulated device is a directory that holds a whole device: its configuration, a boot
partition of plain files, file-backed slots and a data directory. Run any tandem command on
it with --root DIR; "tandem sim reboot DIR" plays its boot loader.

Power cuts: with TANDEM_SIM_CUT=N, a tandem command on a simulated device loses power at its
N-th cut point (a file write, fsync, rename or removal, or just before or after running an
external program) and exits with status 10. TANDEM_SIM_CUT_MODE says what survives:
drop (default: nothing that was not synced), tear (as drop, but the interrupted write lands
half) or keep (everything done so far). docs/simulator.md has the details.`,
	}
	cmd.AddCommand(a.simNewCommand(), a.simRebootCommand(), a.simServeCommand())
	return cmd
}

func (a *app) simNewCommand() *cobra.Command {
	var o sim.Options
	cmd := &cobra.Command{
		Use:   "new DIR --boot-flow FLOW",
		Short: "Create a simulated device in DIR (group a active and default)",
		Example: `  tandem sim new /tmp/dev --boot-flow grub
  tandem sim new /tmp/dev --boot-flow uboot --slot-size 64M --image rootfs.ext4 --trust release.pub`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Check(); err != nil {
				return usageError{err}
			}
			if err := sim.New(args[0], o); err != nil {
				return err
			}
			a.printf("created a simulated %s device in %s: group a is active and default\n", o.BootFlow, args[0])
			a.printf("next: tandem --root %s system info\n", args[0])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.BootFlow, "boot-flow", "", "boot flow: "+strings.Join(sim.Flows, ", ")+" (required)")
	f.StringVar(&o.Compatible, "compatible", "tandem-sim", "the device's compatible string")
	f.StringVar(&o.SlotSizeText, "slot-size", "", "size of each system slot: bytes, or with a K, M or G (binary) suffix (default 16M, or the image size)")
	f.StringVar(&o.Image, "image", "", "factory image written into system-a")
	f.StringArrayVar(&o.Trust, "trust", nil, "trusted public key file to install (repeatable)")
	f.IntVar(&o.Attempts, "attempts", 1, "trial boot attempts before falling back (grub, uboot, custom, rauc-uboot, systemd-boot with --boot-counting)")
	f.StringVar(&o.FactoryVersion, "factory-version", "1.0.0", "version of the factory image in group a (\"\" for unknown)")
	f.StringVar(&o.UBootBackend, "uboot-backend", config.UBootBackendFile, "U-Boot flows' back end: file or fw-setenv")
	f.BoolVar(&o.BootCounting, "boot-counting", false, "systemd-boot: per-group entries with boot counting (kernel, initrd, cmdline slots)")
	f.StringArrayVar(&o.State, "state", nil, "state configuration file to install in /etc/tandem/state.d (repeatable; docs/state.md)")
	return cmd
}

func (a *app) simRebootCommand() *cobra.Command {
	var hang bool
	cmd := &cobra.Command{
		Use:   "reboot DIR [--hang]",
		Short: "Reboot a simulated device: play its boot loader and start the chosen group",
		Long: `Play the boot loader of the device's boot flow by its rule table (docs/boot-flows.md):
one-shot trials, attempt counters and fallback. The chosen group becomes the running one.
The last line of the output is the bare name of that group.

--hang: the chosen system fails before it can commit (one failed attempt); until the next
reboot, commands that would need the hung system (system commit, system reboot --spare,
update install) refuse to run.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			group, notes, err := sim.RebootEnv(args[0], hang, a.env.Getenv)
			for _, n := range notes {
				a.printf("%s\n", n)
			}
			if err != nil {
				return err
			}
			if hang {
				a.printf("group %s hangs before it can commit\n", group)
			}
			a.printf("%s\n", group)
			return nil
		},
	}
	cmd.Flags().BoolVar(&hang, "hang", false, "the started system fails before it can commit")
	return cmd
}

func (a *app) simServeCommand() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "serve DIR [--addr 127.0.0.1:8080]",
		Short: "Serve the files of DIR over HTTP with Range support, like a plain CDN (for delta tests)",
		Long: `Serve DIR read-only over HTTP on a loopback address, with Range requests, ETag and
Last-Modified, as any web server or CDN would: simulated devices install bundles from it
by delta. The first line of output is the base URL. Runs until interrupted.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			a.printf("http://%s/\n", ln.Addr())
			if f, ok := a.env.Stdout.(interface{ Sync() error }); ok {
				_ = f.Sync()
			}
			return sim.Serve(ln, args[0])
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:0", "address to listen on (port 0: any free port)")
	return cmd
}
