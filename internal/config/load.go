package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Path returns the configuration file to load: the --config flag's
// value, else DEPLOYD_CONFIG.
func Path(flagValue string, getenv func(string) string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if p := getenv("DEPLOYD_CONFIG"); p != "" {
		return p, nil
	}
	return "", errors.New("no configuration file: pass --config PATH or set DEPLOYD_CONFIG")
}

// Load reads the configuration file at path, fills in defaults,
// resolves relative paths against the file's directory, applies the
// DEPLOYD_LISTEN, DEPLOYD_DATA_DIR and DEPLOYD_LOG_FORMAT overrides read
// through getenv and validates the result. The error lists every problem
// found, each naming its field.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("configuration path %s: %w", path, err)
	}
	return parseConfig(path, data, filepath.Dir(abs), getenv)
}

// parseConfig is Load without the file system: name labels error
// messages, dir anchors relative paths.
func parseConfig(name string, data []byte, dir string, getenv func(string) string) (*Config, error) {
	c := Default()
	lines, err := decode(name, data, c)
	if err != nil {
		return nil, err
	}
	c.origins = make(map[string]string, len(lines))
	for p, l := range lines {
		c.origins[p] = fmt.Sprintf("%s:%d", name, l)
	}
	c.resolvePaths(dir)
	c.applyEnv(getenv)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// resolvePaths makes relative paths absolute against dir, the directory of
// the configuration file. deployd runs under systemd or in a container,
// where the working directory is "/" or whatever the image chose; the one
// directory an operator reliably knows is the one holding the file they
// wrote, so "./data" means "next to deployd.yml" wherever deployd starts.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.DataDir)
	abs(&c.Nginx.UpstreamDir)
	abs(&c.Nginx.Template)
	abs(&c.Nginx.PIDFile)
	abs(&c.Traffic.Switchd.Socket)
	abs(&c.Traffic.Switchd.ControlTokenFile)
	for i := range c.Auth.Tokens {
		abs(&c.Auth.Tokens[i].TokenFile)
	}
	abs(&c.Auth.WebhookSecretFile)
	for i := range c.Notify {
		abs(&c.Notify[i].URLFile)
		abs(&c.Notify[i].SecretFile)
	}
	for name, s := range c.Services {
		abs(&s.EnvFile)
		if s.Backup != nil {
			b := *s.Backup
			abs(&b.EnvFile)
			s.Backup = &b
		}
		c.Services[name] = s
	}
}

// applyEnv applies the explicit environment overrides. Paths given this way
// are taken as they are: whoever sets DEPLOYD_DATA_DIR chose it relative to
// the working directory they start deployd in, not to the file.
func (c *Config) applyEnv(getenv func(string) string) {
	set := func(env, path string, dst *string) {
		if v := getenv(env); v != "" {
			*dst = v
			if c.origins == nil {
				c.origins = map[string]string{}
			}
			c.origins[path] = "env " + env
		}
	}
	set("DEPLOYD_LISTEN", "listen", &c.Listen)
	set("DEPLOYD_DATA_DIR", "data_dir", &c.DataDir)
	set("DEPLOYD_LOG_FORMAT", "log_format", &c.LogFormat)
}

// Warnings returns valid but probably unintended settings, for logging at
// startup.
func (c *Config) Warnings() []string {
	var w []string
	if len(c.Auth.Tokens) == 0 {
		w = append(w, "auth.tokens is empty: the API refuses every request except /healthz")
	}
	if c.webhookConfigured() {
		for _, name := range c.serviceNames() {
			if len(c.Services[name].AllowedRefs) == 0 {
				w = append(w, fmt.Sprintf("services.%s.allowed_refs is empty: a signed webhook may deploy it from any git ref", name))
			}
		}
	}
	if r := c.Audit.Retention; r.MaxAge == 0 && r.MaxEntries == 0 {
		w = append(w, "audit.retention keeps every entry (max_age and max_entries are 0): the audit trail grows without bound")
	}
	return w
}
