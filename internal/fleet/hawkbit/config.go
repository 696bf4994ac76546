package hawkbit

import (
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/retry"
)

// DefaultConfigPath is where `tandem hawkbit` reads its configuration.
const DefaultConfigPath = "/etc/tandem/hawkbit.toml"

// maxConfig bounds the configuration file.
const maxConfig = 256 << 10

// Config is /etc/tandem/hawkbit.toml (docs/integrations/hawkbit.md).
type Config struct {
	// Preset fills in a server's conventions: "" or "memfault".
	Preset       string `toml:"preset"`
	Server       string `toml:"server"`
	Tenant       string `toml:"tenant"`
	ControllerID string `toml:"controller-id"`
	TargetToken  string `toml:"target-token"`
	GatewayToken string `toml:"gateway-token"`
	CAFile       string `toml:"ca-file"`
	ClientCert   string `toml:"client-cert"`
	ClientKey    string `toml:"client-key"`
	// Attributes are extra configData attributes.
	Attributes map[string]string `toml:"attributes"`
	Poll       struct {
		Min     config.Duration `toml:"min"`
		Max     config.Duration `toml:"max"`
		Default config.Duration `toml:"default"`
	} `toml:"poll"`
	// For the memfault preset: the configData values Memfault expects.
	HardwareVersion string `toml:"hardware-version"`
	SoftwareType    string `toml:"software-type"`
}

// Memfault's DDI endpoint and tenant.
const (
	MemfaultServer = "https://device.memfault.com/api/v0/hawkbit"
	MemfaultTenant = "default"
)

// LoadConfig reads and checks the configuration file at path; preset, when
// not "", is applied as if the file said preset = "…".
func LoadConfig(path, preset string) (*Config, error) {
	return config.LoadSmall(path, maxConfig, func(b []byte) (*Config, error) { return parseConfig(b, preset) })
}

// ConfigError is an unusable configuration file; it wraps
// config.ErrInvalid (the command line's exit code 3).
type ConfigError = config.FileError

// ParseConfig decodes a configuration strictly (an unknown key is an error),
// applies the preset and the defaults, and checks it.
func ParseConfig(data []byte) (*Config, error) { return parseConfig(data, "") }

func parseConfig(data []byte, preset string) (*Config, error) {
	c := &Config{}
	if err := config.DecodeStrict(data, c); err != nil {
		return nil, err
	}
	if preset != "" {
		if c.Preset != "" && c.Preset != preset {
			return nil, fmt.Errorf("preset %q, but preset %q was asked for", c.Preset, preset)
		}
		c.Preset = preset
	}
	return c, c.Check()
}

// Check applies the preset and the defaults and checks the configuration.
func (c *Config) Check() error {
	switch c.Preset {
	case "":
		if c.Tenant == "" {
			c.Tenant = "DEFAULT"
		}
	case "memfault":
		if c.Server == "" {
			c.Server = MemfaultServer
		}
		if c.Tenant == "" {
			c.Tenant = MemfaultTenant
		}
		switch {
		case c.GatewayToken == "":
			return fmt.Errorf("preset memfault: gateway-token must be the Memfault project key")
		case c.TargetToken != "":
			return fmt.Errorf("preset memfault: Memfault authenticates with the project key (gateway-token), not target-token")
		case c.HardwareVersion == "" || c.SoftwareType == "":
			return fmt.Errorf("preset memfault: hardware-version and software-type are required (Memfault picks the release by them)")
		}
	default:
		return fmt.Errorf("preset %q: want memfault or none", c.Preset)
	}
	if c.Server == "" {
		return fmt.Errorf("server is required (e.g. https://hawkbit.example.com)")
	}
	// Checked here, not at the first poll (issue 11, hardening 10): an
	// unusable URL is a configuration error, not a server to retry.
	if err := config.CheckURL("server", c.Server); err != nil {
		return err
	}
	switch {
	case c.ControllerID == "":
		return fmt.Errorf("controller-id is required (the device's name on the server)")
	case strings.ContainsAny(c.ControllerID, "/?#") || strings.ContainsAny(c.Tenant, "/?#"):
		return fmt.Errorf("controller-id and tenant must not contain / ? or #")
	case c.TargetToken != "" && c.GatewayToken != "":
		return fmt.Errorf("target-token and gateway-token: set one, not both")
	case (c.ClientCert == "") != (c.ClientKey == ""):
		return fmt.Errorf("client-cert and client-key go together")
	}
	if c.Poll.Min.Duration == 0 {
		c.Poll.Min.Duration = 10 * time.Second
	}
	if c.Poll.Max.Duration == 0 {
		c.Poll.Max.Duration = 24 * time.Hour
	}
	if c.Poll.Default.Duration == 0 {
		c.Poll.Default.Duration = 5 * time.Minute
	}
	if c.Poll.Min.Duration > c.Poll.Max.Duration {
		return fmt.Errorf("poll.min %s is above poll.max %s", c.Poll.Min, c.Poll.Max)
	}
	for k := range c.Attributes {
		if k == "" || len(k) > 128 {
			return fmt.Errorf("attributes: keys must be 1 to 128 characters")
		}
	}
	return nil
}

// Authorization is the Authorization header value the configuration asks for.
func (c *Config) Authorization() string {
	switch {
	case c.TargetToken != "":
		return "TargetToken " + c.TargetToken
	case c.GatewayToken != "":
		return "GatewayToken " + c.GatewayToken
	}
	return ""
}

// HTTPOptions are the TLS settings of the configuration, for the install's
// artifact download.
func (c *Config) HTTPOptions() install.HTTPOptions {
	return install.HTTPOptions{CAFile: c.CAFile, CertFile: c.ClientCert, KeyFile: c.ClientKey}
}

// NewHTTPClient returns an HTTP client with the TLS settings of o (its
// Headers are not used); it honours the proxy environment variables.
func NewHTTPClient(o install.HTTPOptions) (*http.Client, error) {
	conf, err := o.TLSConfig()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = conf
	tr.ResponseHeaderTimeout = time.Minute
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute}, nil
}

// Loop is the loop the adapter runs under: the polling interval the server
// asks for comes with each step (Step.Wait, within poll.min and poll.max);
// poll.default is the wait after a failed step, and failed polls back off
// from poll.min.
func (c *Config) Loop() fleet.Loop {
	return fleet.Loop{Interval: c.Poll.Default.Duration,
		Retry: retry.Policy{Min: c.Poll.Min.Duration, Max: max(c.Poll.Min.Duration, c.Poll.Default.Duration)}}
}

// New builds the adapter c describes on the device open opens; base holds
// the install options (trust, progress) of the artifact install; log
// receives what happens within a step (nil = discard).
func New(c *Config, open func() (*device.Device, error), base install.Options, log *slog.Logger) (*Adapter, error) {
	hc, err := NewHTTPClient(c.HTTPOptions())
	if err != nil {
		return nil, err
	}
	base.HTTP.CAFile, base.HTTP.CertFile, base.HTTP.KeyFile = c.CAFile, c.ClientCert, c.ClientKey
	if log != nil {
		log = log.With("adapter", AdapterName)
	}
	a := &Adapter{
		Client: &Client{Server: c.Server, Tenant: c.Tenant, ControllerID: c.ControllerID, Authorization: c.Authorization(),
			HTTP: hc, Log: log},
		Agent:       &fleet.Agent{Open: open, Adapter: AdapterName},
		Install:     base,
		Attributes:  maps.Clone(c.Attributes),
		PollMin:     c.Poll.Min.Duration,
		PollMax:     c.Poll.Max.Duration,
		PollDefault: c.Poll.Default.Duration,
		Log:         log,
	}
	if a.Attributes == nil {
		a.Attributes = map[string]string{}
	}
	if c.Preset == "memfault" {
		hw, sw := c.HardwareVersion, c.SoftwareType
		a.DeviceAttributes = func(d *device.Device) (map[string]string, error) {
			m, err := DefaultAttributes(d)
			if err != nil {
				return nil, err
			}
			m["memfault__current_version"] = m["tandem.version"]
			m["memfault__hardware_version"] = hw
			m["memfault__software_type"] = sw
			return m, nil
		}
	}
	return a, nil
}
