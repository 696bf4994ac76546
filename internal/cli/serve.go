package cli

import (
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/api"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
)

func (a *app) serveCommand() *cobra.Command {
	var o api.ServeOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the local API on a Unix socket and, with --listen, the field-service web page",
		Long: `Serve tandem's local API (versioned HTTP/JSON, docs/api.md) on /run/tandem/api.sock: info,
install from a URL or an upload, progress events, cancel, reboot, commit, mark-bad, the last
outcome, one operation at a time. Root may call everything; --read-group and --change-group
let other users in by their groups (checked per call from the socket's peer credentials).
While a server runs, update install, system commit and system reboot go through it.

--listen ADDR also serves the field-service web page over TLS (--tls-cert, --tls-key); it lets
nobody in until a password is set with "tandem serve password" (read from standard input).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Check(); err != nil {
				return usageError{err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			o.Root, o.Local, o.Log = a.root, api.Local{Open: a.open, Warn: a.warn}, a.env.Stderr
			return api.Serve(ctx, o)
		},
	}
	o.Flags(cmd.Flags())
	cmd.AddCommand(&cobra.Command{Use: "password", Short: "Set the web page's password (first line of standard input)", Args: exactArgs(0),
		RunE: a.onDevice(func(d *device.Device, _ []string) error { return api.SetPassword(d, a.env.Stdin) })})
	return cmd
}

// ops are the device's operations: through the server when one answers on
// the socket under --root (with the default configuration), else in process.
func (a *app) ops() api.Ops {
	l := api.Local{Open: a.open, Warn: a.warn}
	if a.configPath != config.DefaultPath {
		return l
	}
	return api.Connect(a.root, l)
}
