package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/fleet/watch"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

func (a *app) watchCommand() *cobra.Command {
	var (
		cfgPath string
		fl      = watch.Config{Jitter: &config.Duration{}}
		labels  []string
		lf      loopFlags
	)
	cmd := &cobra.Command{
		Use:   "watch [CHANNEL_URL] [--once]",
		Short: "Follow an update channel file on any HTTP server or CDN: install, trial, commit",
		Long: `Poll a signed update channel file (written by "tandem channel publish") and install the release it
names when it differs from the running version and this device is selected and inside the rollout:
a delta install from the bundle URL with the bundle hash pinned (the bundle's own signature is
checked too), then a reboot into the trial; after the reboot "tandem health" commits or rolls back,
and the watcher records the outcome in <data-dir>/watch/<channel>.json. A bundle that failed on
this device is not tried again; a new bundle (new version or rebuild) is. A bundle that is not the
pinned one, or whose signature section was damaged on the way, is tried again at the next poll.

The channel file must be signed by a key in the device's keys directory (or --trust), carry this
channel's name (--channel, default: the URL's file name without extension, "stable" for
.../stable.json) and the device's compatible, must not be expired, and its sequence number must not
be below the highest one seen (an old file replayed is refused).

Polls use If-None-Match / If-Modified-Since, wait --interval ± --jitter between polls, start after a
random part of the jitter, and back off (30s doubling up to --interval) after transient failures.

Settings come from flags and /etc/tandem/watch.toml (--watch-config); flags win.

  tandem watch https://cdn.example.com/fleet/stable.json
  tandem watch https://cdn.example.com/fleet/stable.json --once        # one poll (cron, timers)
  tandem watch --label ring=beta --interval 15m https://cdn.example.com/fleet/beta.json

Exit codes (--once): 0 nothing to do, skipped, rebooting into a trial, or an outcome recorded; 6 the
channel file or the bundle was refused; 4 another watcher is at work, or a trial the watcher did not
start runs; 3 a bad configuration file; others as for every command (docs/cli.md).
Without --once it runs until stopped and logs one record per event (JSON lines with --json).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{errors.New("at most one CHANNEL_URL")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := watch.LoadConfig(rootfs.Join(a.root, cfgPath), cmd.Flags().Changed("watch-config"))
			if err != nil {
				return err
			}
			if fl.Labels, err = watch.ParseLabels(labels); err != nil {
				return usageError{fmt.Errorf("--label %w", err)}
			}
			c.Override(&fl, cmd.Flags().Changed)
			if len(args) == 1 {
				c.URL = args[0]
			}
			if c.URL == "" {
				return usageError{errors.New("no channel URL: give CHANNEL_URL or url in " + cfgPath)}
			}
			w, err := watch.New(c, a.open, a.logger())
			if err != nil {
				return usageError{err}
			}
			return a.runAdapter(w, c.Loop(), lf)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "watch-config", watch.DefaultConfigPath, "device path of the watch configuration (TOML; optional at the default path)")
	f.StringVar(&fl.Channel, "channel", "", "channel name the file must carry (default: the URL's file name without extension)")
	f.DurationVar(&fl.Interval.Duration, "interval", 0, "time between polls (default 1h)")
	f.DurationVar(&fl.Jitter.Duration, "jitter", 0, "each wait is the interval ± up to this (default interval/10; 0 = none)")
	f.StringVar(&fl.DeviceID, "device-id", "", "this device's id for selectors and rollout (default: the device id file)")
	f.StringVar(&fl.DeviceIDFile, "device-id-file", "", "device path of a file holding the device id (default /etc/machine-id)")
	f.StringArrayVar(&labels, "label", nil, "a label NAME=VALUE that release selectors match (repeatable)")
	f.StringArrayVar(&fl.Trust, "trust", nil, "extra trusted public key or root certificate, for channel and bundle (repeatable)")
	f.BoolVar(&fl.AllowDowngrade, "allow-downgrade", false, "install a release older than the running version")
	f.StringVar(&fl.CAFile, "ca-file", "", "PEM roots for https instead of the system's")
	f.StringVar(&fl.CertFile, "cert-file", "", "TLS client certificate (PEM)")
	f.StringVar(&fl.KeyFile, "key-file", "", "its key (PEM)")
	f.StringArrayVar(&fl.Headers, "header", nil, "extra HTTP header \"Name: value\" (repeatable)")
	lf.add(cmd, a)
	return cmd
}
