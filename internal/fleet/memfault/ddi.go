package memfault

import "github.com/tandem-ota/tandem/internal/fleet/hawkbit"

// LoadDDIConfig reads the configuration file at path (LoadConfig) and
// returns the hawkBit client configuration for Memfault's DDI endpoint
// (DDIConfig); a configuration the hawkBit client cannot use is a
// ConfigError naming path.
func LoadDDIConfig(path string) (*hawkbit.Config, error) {
	c, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	h, err := c.DDIConfig()
	if err != nil {
		return nil, &ConfigError{File: path, Err: err}
	}
	return h, nil
}
