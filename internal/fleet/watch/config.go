package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/retry"
)

// DefaultConfigPath is the device path of tandem watch's configuration.
const DefaultConfigPath = "/etc/tandem/watch.toml"

// maxConfig bounds the configuration file.
const maxConfig = 64 << 10

// Config is /etc/tandem/watch.toml (docs/integrations/channels.md). Every
// key is optional; the command line's flags override them.
type Config struct {
	// URL is the channel file's http(s) URL.
	URL string `toml:"url"`
	// Channel is the channel name the file must carry; empty: the URL's
	// last path element without its extension (".../stable.json" follows
	// "stable").
	Channel string `toml:"channel"`
	// Interval is the time between polls (default 1h); each wait is
	// Interval ± Jitter (default Interval/10; 0 = none).
	Interval config.Duration  `toml:"interval"`
	Jitter   *config.Duration `toml:"jitter"`
	// DeviceID identifies the device for selectors and rollout; empty: the
	// contents of DeviceIDFile (default /etc/machine-id, which may be
	// missing).
	DeviceID     string `toml:"device-id"`
	DeviceIDFile string `toml:"device-id-file"`
	// Labels are matched by release selectors.
	Labels map[string]string `toml:"labels"`
	// Trust adds trust files (host paths) to the device's keys directory,
	// for channel files and bundles alike.
	Trust []string `toml:"trust"`
	// AllowDowngrade installs a release older than the running version
	// (otherwise such a release is skipped).
	AllowDowngrade bool `toml:"allow-downgrade"`
	// CAFile, CertFile and KeyFile configure TLS, Headers extra HTTP
	// headers ("Name: value"), for the channel and the bundle.
	CAFile   string   `toml:"ca-file"`
	CertFile string   `toml:"cert-file"`
	KeyFile  string   `toml:"key-file"`
	Headers  []string `toml:"headers"`
}

// ConfigError is an unusable configuration file; it wraps
// config.ErrInvalid (the command line's exit code 3).
type ConfigError = config.FileError

// LoadConfig reads and checks the configuration file at the host path
// path. A missing file is an empty configuration unless required.
func LoadConfig(path string, required bool) (*Config, error) {
	c, err := config.LoadSmall(path, maxConfig, ParseConfig)
	var bad *ConfigError
	switch {
	case errors.Is(err, fs.ErrNotExist) && !required:
		return &Config{}, nil
	case err != nil && !errors.As(err, &bad):
		return nil, fmt.Errorf("watch config: %w", err)
	}
	return c, err
}

// ParseConfig decodes a configuration strictly (an unknown key is an
// error) and checks it.
func ParseConfig(data []byte) (*Config, error) {
	c := &Config{}
	if err := config.DecodeStrict(data, c); err != nil {
		return nil, err
	}
	return c, c.Check()
}

// Check checks what the configuration sets; the URL may still be missing
// (New requires it).
func (c *Config) Check() error {
	if c.URL != "" {
		if _, err := ChannelName(c.URL); err != nil {
			return err
		}
	}
	if c.Interval.Duration != 0 && c.Interval.Duration < time.Second {
		return fmt.Errorf("interval %s: want at least 1s", c.Interval)
	}
	if c.Jitter != nil && c.Jitter.Duration < 0 {
		return fmt.Errorf("jitter %s: want a duration ≥ 0", c.Jitter)
	}
	for k := range c.Labels {
		if k == "" {
			return fmt.Errorf("labels: a label needs a name")
		}
	}
	return nil
}

// Loop is the loop the watcher runs under: a poll every interval ± jitter,
// the first one after a random part of the jitter; at most a minute apart
// while the health check decides; after a transient failure (the server
// or the network) backing off from 30 s, doubling up to the interval.
func (c *Config) Loop() fleet.Loop {
	iv := c.Interval.Duration
	if iv == 0 {
		iv = time.Hour
	}
	l := fleet.Loop{Interval: iv, Waiting: time.Minute, Stagger: true,
		Retry: retry.Policy{Min: min(30*time.Second, iv), Max: iv, MaxRetryAfter: iv}}
	if c.Jitter != nil {
		l.Jitter = c.Jitter.Duration
		if l.Jitter == 0 {
			l.Jitter = -1 // none
		}
	}
	return l
}

// Override applies settings given on the command line over c (the command
// line wins over the file): each key that given reports, by its name in the
// file, takes o's value; o's trust files and headers are added to c's, and
// o's labels set over c's one by one. The URL is not among them.
func (c *Config) Override(o *Config, given func(key string) bool) {
	for key, s := range map[string]struct{ dst, val *string }{
		"channel": {&c.Channel, &o.Channel}, "device-id": {&c.DeviceID, &o.DeviceID},
		"device-id-file": {&c.DeviceIDFile, &o.DeviceIDFile}, "ca-file": {&c.CAFile, &o.CAFile},
		"cert-file": {&c.CertFile, &o.CertFile}, "key-file": {&c.KeyFile, &o.KeyFile},
	} {
		if given(key) {
			*s.dst = *s.val
		}
	}
	if given("interval") {
		c.Interval = o.Interval
	}
	if given("jitter") && o.Jitter != nil {
		c.Jitter = &config.Duration{Duration: o.Jitter.Duration}
	}
	if given("allow-downgrade") {
		c.AllowDowngrade = o.AllowDowngrade
	}
	c.Trust = append(c.Trust, o.Trust...)
	c.Headers = append(c.Headers, o.Headers...)
	for k, v := range o.Labels {
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels[k] = v
	}
}

// ParseLabels parses labels given as NAME=VALUE (a later one wins); nil
// for none.
func ParseLabels(labels []string) (map[string]string, error) {
	var m map[string]string
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want NAME=VALUE", l)
		}
		if m == nil {
			m = map[string]string{}
		}
		m[k] = v
	}
	return m, nil
}
