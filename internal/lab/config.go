package lab

import (
	"net"
	"strconv"
	"time"

	"github.com/deployd/deployd/internal/config"
)

// DaemonConfig is the configuration of a deployd under test: one service
// deployed from repository behind ng, with quick health checks and a short
// drain, its state in dataDir, a free port chosen at start and the given
// API tokens. Callers adjust it and write it with WriteFile.
func DaemonConfig(dataDir string, ng *Nginx, service, repository string, tokens ...config.Token) *config.Config {
	c := config.Default()
	c.Listen, c.DataDir, c.LogFormat, c.ShutdownTimeout = "127.0.0.1:0", dataDir, "text", 10*time.Second
	c.Auth.Tokens = tokens
	// Each test and benchmark strategy picks its mode; UseTrafficSwitch
	// turns the switch on.
	c.Traffic.Mode = config.TrafficModeReload
	c.Nginx = config.Nginx{
		Mode: config.NginxModeExec, UpstreamDir: ng.UpstreamDir, TestCommand: ng.TestCommand,
		ReloadCommand: ng.ReloadCommand, PIDFile: ng.PIDFile, ReloadConfirmTimeout: 5 * time.Second,
	}
	svc := config.DefaultService()
	svc.Image, svc.Port, svc.Pull, svc.Drain = repository, 8000, "missing", 200*time.Millisecond
	svc.Health = config.Health{Path: "/health", Interval: 100 * time.Millisecond, Timeout: time.Second,
		HealthyThreshold: 2, StartTimeout: 20 * time.Second}
	c.Services = map[string]config.Service{service: svc}
	return c
}

// UseTrafficSwitch puts c in traffic.mode switch, each service's switch
// on a free loopback port (nginx reaches it there too).
func UseTrafficSwitch(c *config.Config) error {
	c.Traffic.Mode = config.TrafficModeSwitch
	for name, svc := range c.Services {
		port, err := FreePort()
		if err != nil {
			return err
		}
		svc.Switch = config.ServiceSwitch{Listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		c.Services[name] = svc
	}
	return nil
}
