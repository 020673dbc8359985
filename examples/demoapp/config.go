package main

import (
	"fmt"
	"strconv"
	"time"
)

// Health modes the app can be told to misbehave in.
const (
	healthOK            = "ok"
	healthFailing       = "failing"
	healthSlow          = "slow"
	healthUnhealthyBody = "unhealthy-body"
)

// config is everything the environment can ask of the app. An image build
// arg becomes an ENV, so a test bakes a behaviour into an image tag.
type config struct {
	Port            int
	Version         string
	Color           string
	Service         string
	Deployment      string
	HealthMode      string
	SlowHealthDelay time.Duration
	StartupDelay    time.Duration
	CrashAtStart    bool
	CrashAfter      time.Duration
	MigrateExit     int
	MigrateDelay    time.Duration
	// FailRequests answers every request but /health with a 500: the app
	// whose health endpoint says ok while its real requests fail.
	FailRequests bool
}

func defaultConfig() config {
	return config{
		Port:            8000,
		Version:         "dev",
		HealthMode:      healthOK,
		SlowHealthDelay: 10 * time.Second,
	}
}

// loadConfig reads the environment through getenv. Empty values mean the
// default, because the Dockerfile turns every unset build arg into an empty
// ENV. An unparsable value is an error naming the variable, so a typo in a
// test's build args fails loudly instead of silently meaning "healthy".
func loadConfig(getenv func(string) string) (config, error) {
	c := defaultConfig()
	c.Color = getenv("DEPLOYD_COLOR")
	c.Service = getenv("DEPLOYD_SERVICE")
	c.Deployment = getenv("DEPLOYD_DEPLOYMENT")
	if v := getenv("APP_VERSION"); v != "" {
		c.Version = v
	}

	var err error
	if v := getenv("PORT"); v != "" {
		c.Port, err = strconv.Atoi(v)
		if err != nil || c.Port < 1 || c.Port > 65535 {
			return c, fmt.Errorf("PORT: %q is not a TCP port", v)
		}
	}
	switch v := getenv("HEALTH_MODE"); v {
	case "", "healthy", healthOK:
	case healthFailing, healthSlow, healthUnhealthyBody:
		c.HealthMode = v
	default:
		return c, fmt.Errorf("HEALTH_MODE: unknown mode %q (want ok, failing, slow or unhealthy-body)", v)
	}
	durations := []struct {
		name string
		dst  *time.Duration
	}{
		{"SLOW_HEALTH_DELAY", &c.SlowHealthDelay},
		{"STARTUP_DELAY", &c.StartupDelay},
		{"CRASH_AFTER", &c.CrashAfter},
		{"MIGRATE_DELAY", &c.MigrateDelay},
	}
	for _, d := range durations {
		if v := getenv(d.name); v != "" {
			if *d.dst, err = parseDuration(v); err != nil {
				return c, fmt.Errorf("%s: %w", d.name, err)
			}
		}
	}
	if v := getenv("CRASH_AT_START"); v != "" {
		if c.CrashAtStart, err = strconv.ParseBool(v); err != nil {
			return c, fmt.Errorf("CRASH_AT_START: %q is not a boolean", v)
		}
	}
	if v := getenv("FAIL_REQUESTS"); v != "" {
		if c.FailRequests, err = strconv.ParseBool(v); err != nil {
			return c, fmt.Errorf("FAIL_REQUESTS: %q is not a boolean", v)
		}
	}
	if v := getenv("MIGRATE_EXIT"); v != "" {
		c.MigrateExit, err = strconv.Atoi(v)
		if err != nil || c.MigrateExit < 0 || c.MigrateExit > 255 {
			return c, fmt.Errorf("MIGRATE_EXIT: %q is not an exit code", v)
		}
	}
	return c, nil
}

// parseDuration accepts Go durations ("2s", "500ms") and, like most
// container tooling, a bare number of seconds ("2").
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}
