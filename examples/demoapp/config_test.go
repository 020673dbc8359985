package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig_EmptyEnvironmentMeansDefaults(t *testing.T) {
	got, err := loadConfig(envFrom(nil))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if want := defaultConfig(); got != want {
		t.Fatalf("config = %+v, want %+v", got, want)
	}
}

func TestLoadConfig_ReadsEveryVariable(t *testing.T) {
	got, err := loadConfig(envFrom(map[string]string{
		"PORT":               "9001",
		"APP_VERSION":        "v2",
		"DEPLOYD_COLOR":      "green",
		"DEPLOYD_SERVICE":    "web",
		"DEPLOYD_DEPLOYMENT": "d-1",
		"HEALTH_MODE":        "slow",
		"SLOW_HEALTH_DELAY":  "250ms",
		"STARTUP_DELAY":      "2",
		"CRASH_AT_START":     "1",
		"CRASH_AFTER":        "1m",
		"MIGRATE_EXIT":       "3",
		"MIGRATE_DELAY":      "1.5s",
		"FAIL_REQUESTS":      "1",
	}))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	want := config{
		Port:            9001,
		Version:         "v2",
		Color:           "green",
		Service:         "web",
		Deployment:      "d-1",
		HealthMode:      healthSlow,
		SlowHealthDelay: 250 * time.Millisecond,
		StartupDelay:    2 * time.Second,
		CrashAtStart:    true,
		CrashAfter:      time.Minute,
		MigrateExit:     3,
		MigrateDelay:    1500 * time.Millisecond,
		FailRequests:    true,
	}
	if got != want {
		t.Fatalf("config = %+v, want %+v", got, want)
	}
}

func TestLoadConfig_HealthModes(t *testing.T) {
	tests := []struct {
		env  string
		want string
	}{
		{"", healthOK},
		{"ok", healthOK},
		{"healthy", healthOK},
		{"failing", healthFailing},
		{"slow", healthSlow},
		{"unhealthy-body", healthUnhealthyBody},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			c, err := loadConfig(envFrom(map[string]string{"HEALTH_MODE": tt.env}))
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if c.HealthMode != tt.want {
				t.Fatalf("HealthMode = %q, want %q", c.HealthMode, tt.want)
			}
		})
	}
}

func TestLoadConfig_BadValueIsAnErrorNamingTheVariable(t *testing.T) {
	tests := []struct {
		name, value string
	}{
		{"PORT", "http"},
		{"PORT", "0"},
		{"PORT", "70000"},
		{"HEALTH_MODE", "flaky"},
		{"SLOW_HEALTH_DELAY", "soon"},
		{"STARTUP_DELAY", "-1s"},
		{"CRASH_AFTER", "-3"},
		{"MIGRATE_DELAY", "1x"},
		{"CRASH_AT_START", "maybe"},
		{"FAIL_REQUESTS", "sometimes"},
		{"MIGRATE_EXIT", "256"},
		{"MIGRATE_EXIT", "one"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			_, err := loadConfig(envFrom(map[string]string{tt.name: tt.value}))
			if err == nil {
				t.Fatalf("loadConfig(%s=%q) = nil error, want one", tt.name, tt.value)
			}
			if !strings.Contains(err.Error(), tt.name) {
				t.Fatalf("error %q does not name %s", err, tt.name)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"2", 2 * time.Second},
		{"2s", 2 * time.Second},
		{"150ms", 150 * time.Millisecond},
		{"1m30s", 90 * time.Second},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if err != nil {
			t.Fatalf("parseDuration(%q): %v", tt.in, err)
		}
		if got != tt.want {
			t.Fatalf("parseDuration(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// A behaviour is baked into an image tag with --build-arg, which works
// only when the Dockerfile turns the arg into the ENV loadConfig reads.
func TestDockerfile_EveryBehaviourIsABuildArg(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(b)
	for _, name := range []string{"APP_VERSION", "HEALTH_MODE", "SLOW_HEALTH_DELAY", "STARTUP_DELAY",
		"CRASH_AT_START", "CRASH_AFTER", "MIGRATE_EXIT", "MIGRATE_DELAY", "FAIL_REQUESTS"} {
		if !strings.Contains(dockerfile, "\nARG "+name+"=") || !strings.Contains(dockerfile, name+"=${"+name+"}") {
			t.Errorf("Dockerfile does not pass build arg %s on as ENV %s=${%s}", name, name, name)
		}
	}
}
