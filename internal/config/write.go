package config

import (
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// WriteFile writes c to path as a configuration file that Load reads back
// as c, for the tests and the benchmark that start deployd as a
// subprocess. The file is private to its owner: it names where secrets
// live.
func (c *Config) WriteFile(path string) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode configuration: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write configuration: %w", err)
	}
	return nil
}
