package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/fleet/watch"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// DefaultWatchConfig is the device path of tandem watch's configuration.
const DefaultWatchConfig = "/etc/tandem/watch.toml"

// watchConfig is /etc/tandem/watch.toml (docs/integrations/channels.md).
type watchConfig struct {
	URL            string            `toml:"url"`
	Channel        string            `toml:"channel"`
	Interval       string            `toml:"interval"`
	Jitter         string            `toml:"jitter"`
	DeviceID       string            `toml:"device-id"`
	DeviceIDFile   string            `toml:"device-id-file"`
	Labels         map[string]string `toml:"labels"`
	Trust          []string          `toml:"trust"`
	AllowDowngrade bool              `toml:"allow-downgrade"`
	CAFile         string            `toml:"ca-file"`
	CertFile       string            `toml:"cert-file"`
	KeyFile        string            `toml:"key-file"`
	Headers        []string          `toml:"headers"`
}

const maxWatchConfig = 64 << 10

// loadWatchConfig reads the configuration at a device path; a missing file
// is an empty configuration unless required.
func (a *app) loadWatchConfig(p string, required bool) (*watchConfig, error) {
	c := &watchConfig{}
	f, err := os.Open(rootfs.Join(a.root, p))
	if errors.Is(err, os.ErrNotExist) && !required {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("watch config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxWatchConfig+1))
	if err != nil {
		return nil, fmt.Errorf("watch config: %w", err)
	}
	if len(b) > maxWatchConfig {
		return nil, fmt.Errorf("watch config %s: larger than %d bytes", p, maxWatchConfig)
	}
	if err := config.DecodeStrict(b, c); err != nil {
		return nil, usageError{fmt.Errorf("watch config %s: %s", p, oneLine(err.Error()))}
	}
	return c, nil
}

func (a *app) watchCommand() *cobra.Command {
	var (
		cfgPath, interval, jitter string
		flags                     watchConfig
		labels                    []string
		once, jsonOut             bool
	)
	cmd := &cobra.Command{
		Use:   "watch [CHANNEL_URL] [--once]",
		Short: "Follow an update channel file on any HTTP server or CDN: install, trial, commit",
		Long: `Poll a signed update channel file (written by "tandem channel publish") and install the release it
names when it differs from the running version and this device is selected and inside the rollout:
a delta install from the bundle URL with the bundle hash pinned (the bundle's own signature is
checked too), then a reboot into the trial; after the reboot "tandem health" commits or rolls back,
and the watcher records the outcome in <data-dir>/watch/<channel>.json. A bundle that failed on
this device is not tried again; a new bundle (new version or rebuild) is.

The channel file must be signed by a key in the device's keys directory (or --trust), carry this
channel's name (--channel, default: the URL's file name without extension, "stable" for
.../stable.json) and the device's compatible, must not be expired, and its sequence number must not
be below the highest one seen (an old file replayed is refused).

Polls use If-None-Match / If-Modified-Since, wait --interval ± --jitter between polls, start after a
random part of the jitter, and back off (30s doubling up to --interval) after errors.

Settings come from flags and /etc/tandem/watch.toml (--watch-config); flags win.

  tandem watch https://cdn.example.com/fleet/stable.json
  tandem watch https://cdn.example.com/fleet/stable.json --once        # one poll (cron, timers)
  tandem watch --label ring=beta --interval 15m https://cdn.example.com/fleet/beta.json

Exit codes (--once): 0 nothing to do, skipped, rebooting into a trial, or an outcome recorded; 6 the
channel file or the bundle was refused; 4 another watcher is at work, or a trial the watcher did not
start runs; others as for every command (docs/cli.md).
Without --once it runs until stopped and logs one line per event (JSON lines with --json or when
stdout is not a terminal).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{errors.New("at most one CHANNEL_URL")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadWatchConfig(cfgPath, cmd.Flags().Changed("watch-config"))
			if err != nil {
				return err
			}
			// Flags win over the file.
			changed := cmd.Flags().Changed
			if len(args) == 1 {
				cfg.URL = args[0]
			}
			set := func(name string, dst *string, v string) {
				if changed(name) || *dst == "" {
					if v != "" || changed(name) {
						*dst = v
					}
				}
			}
			set("channel", &cfg.Channel, flags.Channel)
			set("interval", &cfg.Interval, interval)
			set("jitter", &cfg.Jitter, jitter)
			set("device-id", &cfg.DeviceID, flags.DeviceID)
			set("device-id-file", &cfg.DeviceIDFile, flags.DeviceIDFile)
			set("ca-file", &cfg.CAFile, flags.CAFile)
			set("cert-file", &cfg.CertFile, flags.CertFile)
			set("key-file", &cfg.KeyFile, flags.KeyFile)
			if changed("allow-downgrade") {
				cfg.AllowDowngrade = flags.AllowDowngrade
			}
			cfg.Trust = append(cfg.Trust, flags.Trust...)
			cfg.Headers = append(cfg.Headers, flags.Headers...)
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return usageError{fmt.Errorf("--label %q: want NAME=VALUE", l)}
				}
				if cfg.Labels == nil {
					cfg.Labels = map[string]string{}
				}
				cfg.Labels[k] = v
			}
			if cfg.URL == "" {
				return usageError{errors.New("no channel URL: give CHANNEL_URL or url in " + cfgPath)}
			}
			sched := watch.Schedule{Interval: time.Hour}
			if cfg.Interval != "" {
				if sched.Interval, err = time.ParseDuration(cfg.Interval); err != nil || sched.Interval < time.Second {
					return usageError{fmt.Errorf("interval %q: want a duration of at least 1s", cfg.Interval)}
				}
			}
			if cfg.Jitter != "" {
				if sched.Jitter, err = time.ParseDuration(cfg.Jitter); err != nil || sched.Jitter < 0 {
					return usageError{fmt.Errorf("jitter %q: want a duration ≥ 0", cfg.Jitter)}
				}
				if sched.Jitter == 0 {
					sched.Jitter = -1 // none
				}
			}
			id := cfg.DeviceID
			if id == "" {
				p := cfg.DeviceIDFile
				if p == "" {
					p = "/etc/machine-id"
				}
				b, err := os.ReadFile(rootfs.Join(a.root, p))
				if err != nil && (cfg.DeviceIDFile != "" || !errors.Is(err, os.ErrNotExist)) {
					return fmt.Errorf("device id: %w", err)
				}
				if len(b) > 256 {
					return fmt.Errorf("device id file %s: larger than 256 bytes", p)
				}
				id = strings.TrimSpace(string(b))
			}
			logEvent := a.watchLogger(jsonOut)
			w, err := watch.New(watch.Options{
				URL: cfg.URL, Channel: cfg.Channel, Open: a.open, DeviceID: id, Labels: cfg.Labels,
				Trust: cfg.Trust, AllowDowngrade: cfg.AllowDowngrade,
				HTTP: install.HTTPOptions{CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, Headers: cfg.Headers},
				Log:  logEvent,
			})
			if err != nil {
				return usageError{err}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if once {
				res, err := w.Once(ctx)
				if err != nil {
					return err
				}
				if res.Action == "idle" || res.Action == "recorded" {
					logEvent(watch.Event{Event: "checked", Message: res.Message})
				}
				return nil
			}
			return w.Run(ctx, sched)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "watch-config", DefaultWatchConfig, "device path of the watch configuration (TOML; optional at the default path)")
	f.StringVar(&flags.Channel, "channel", "", "channel name the file must carry (default: the URL's file name without extension)")
	f.StringVar(&interval, "interval", "", "time between polls (default 1h)")
	f.StringVar(&jitter, "jitter", "", "each wait is the interval ± up to this (default interval/10; 0 = none)")
	f.StringVar(&flags.DeviceID, "device-id", "", "this device's id for selectors and rollout (default: the device id file)")
	f.StringVar(&flags.DeviceIDFile, "device-id-file", "", "device path of a file holding the device id (default /etc/machine-id)")
	f.StringArrayVar(&labels, "label", nil, "a label NAME=VALUE that release selectors match (repeatable)")
	f.StringArrayVar(&flags.Trust, "trust", nil, "extra trusted public key or root certificate, for channel and bundle (repeatable)")
	f.BoolVar(&flags.AllowDowngrade, "allow-downgrade", false, "install a release older than the running version")
	f.StringVar(&flags.CAFile, "ca-file", "", "PEM roots for https instead of the system's")
	f.StringVar(&flags.CertFile, "cert-file", "", "TLS client certificate (PEM)")
	f.StringVar(&flags.KeyFile, "key-file", "", "its key (PEM)")
	f.StringArrayVar(&flags.Headers, "header", nil, "extra HTTP header \"Name: value\" (repeatable)")
	f.BoolVar(&once, "once", false, "poll once (finishing or continuing an update under way) and exit")
	f.BoolVar(&jsonOut, "json", false, "JSON lines on stdout")
	return cmd
}

// watchLogger prints watcher events: JSON lines with --json or when stdout
// is not a terminal, else one human line each.
func (a *app) watchLogger(jsonOut bool) func(watch.Event) {
	isTerm := false
	if f, ok := a.env.Stdout.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			isTerm = true
		}
	}
	enc := json.NewEncoder(a.env.Stdout)
	return func(e watch.Event) {
		if e.Time.IsZero() {
			e.Time = time.Now().UTC().Truncate(time.Second)
		}
		if jsonOut || !isTerm {
			_ = enc.Encode(e)
			return
		}
		a.printf("%s %s: %s\n", e.Time.Local().Format(time.TimeOnly), e.Event, oneLine(e.Message))
	}
}
