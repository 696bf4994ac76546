// Package memfault connects a tandem device to Memfault's OTA service in
// either of its two ways: the hawkBit-compatible DDI endpoint (a preset of
// package hawkbit: gateway token = project key, the memfault__* configData
// keys) and the releases API (GET /api/v0/releases/latest), which Poller
// polls: 204 is "no update", 200 a Release whose artifact is the bundle,
// 503 and 429 ask to retry after Retry-After. The bundle is installed
// through fleet.Agent, booted on trial and kept only when the health check
// commits it; a version that failed on the device is not installed again.
package memfault

import (
	"fmt"
	"time"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit"
)

// DefaultConfigPath is where `tandem memfault` reads its configuration.
const DefaultConfigPath = "/etc/tandem/memfault.toml"

// Memfault's endpoints.
const (
	DefaultAPI = "https://api.memfault.com"
	DefaultDDI = hawkbit.MemfaultServer
)

const maxConfig = 64 << 10

// Config is /etc/tandem/memfault.toml (docs/integrations/memfault.md).
type Config struct {
	ProjectKey      string `toml:"project-key"`
	DeviceSerial    string `toml:"device-serial"`
	HardwareVersion string `toml:"hardware-version"`
	SoftwareType    string `toml:"software-type"`
	API             string `toml:"api-url"`
	DDI             string `toml:"ddi-url"`
	CAFile          string `toml:"ca-file"`
	Poll            struct {
		Interval config.Duration `toml:"interval"`
	} `toml:"poll"`
}

// ConfigError is an unusable configuration file; it wraps
// config.ErrInvalid (exit code 3).
type ConfigError = config.FileError

// LoadConfig reads and checks the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	return config.LoadSmall(path, maxConfig, ParseConfig)
}

// ParseConfig decodes a configuration strictly and checks it.
func ParseConfig(data []byte) (*Config, error) {
	c := &Config{}
	if err := config.DecodeStrict(data, c); err != nil {
		return nil, err
	}
	if c.API == "" {
		c.API = DefaultAPI
	}
	if c.DDI == "" {
		c.DDI = DefaultDDI
	}
	if c.Poll.Interval.Duration == 0 {
		c.Poll.Interval.Duration = time.Hour
	}
	for _, r := range []struct{ key, v string }{{"project-key", c.ProjectKey}, {"device-serial", c.DeviceSerial},
		{"hardware-version", c.HardwareVersion}, {"software-type", c.SoftwareType}} {
		if r.v == "" {
			return nil, fmt.Errorf("%s is required", r.key)
		}
	}
	for _, u := range []struct{ key, v string }{{"api-url", c.API}, {"ddi-url", c.DDI}} {
		if err := config.CheckURL(u.key, u.v); err != nil {
			return nil, err
		}
	}
	if c.Poll.Interval.Duration < time.Minute {
		return nil, fmt.Errorf("poll.interval %s: want at least 1m", c.Poll.Interval)
	}
	return c, nil
}

// DDIConfig is the hawkBit client configuration for Memfault's DDI
// endpoint: tenant "default", controller id = device serial, gateway token
// = project key, and the memfault__* configData keys.
func (c *Config) DDIConfig() (*hawkbit.Config, error) {
	h := &hawkbit.Config{Preset: "memfault", Server: c.DDI, ControllerID: c.DeviceSerial, GatewayToken: c.ProjectKey,
		CAFile: c.CAFile, HardwareVersion: c.HardwareVersion, SoftwareType: c.SoftwareType}
	return h, h.Check()
}
