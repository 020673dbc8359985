package lab

import (
	"path/filepath"
	"testing"

	"github.com/deployd/deployd/internal/config"
)

func TestDaemonConfig_WritesAConfigThatLoads(t *testing.T) {
	dir := t.TempDir()
	ng := &Nginx{UpstreamDir: filepath.Join(dir, "upstreams"), PIDFile: filepath.Join(dir, "nginx.pid"),
		TestCommand: []string{"nginx", "-t"}, ReloadCommand: []string{"nginx", "-s", "reload"}}
	c := DaemonConfig(filepath.Join(dir, "data"), ng, "web", "demoapp",
		config.Token{Name: "op", Role: config.RoleOperator, TokenEnv: "OP_TOKEN"})
	path := filepath.Join(dir, "deployd.yml")
	if err := c.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s := got.Services["web"]; s.Image != "demoapp" || s.Health.Interval != c.Services["web"].Health.Interval || got.Nginx.PIDFile != ng.PIDFile {
		t.Fatalf("loaded %+v, want what DaemonConfig built", got)
	}
}

func TestUseTrafficSwitch_WritesASwitchConfigThatLoads(t *testing.T) {
	dir := t.TempDir()
	ng := &Nginx{UpstreamDir: filepath.Join(dir, "upstreams"), PIDFile: filepath.Join(dir, "nginx.pid"),
		TestCommand: []string{"nginx", "-t"}, ReloadCommand: []string{"nginx", "-s", "reload"}}
	c := DaemonConfig(filepath.Join(dir, "data"), ng, "web", "demoapp")
	if err := UseTrafficSwitch(c); err != nil {
		t.Fatalf("UseTrafficSwitch: %v", err)
	}
	path := filepath.Join(dir, "deployd.yml")
	if err := c.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !got.SwitchMode() || got.Services["web"].Switch.Listen != c.Services["web"].Switch.Listen || got.Services["web"].Switch.Listen == "" {
		t.Fatalf("loaded traffic %+v, web switch %+v; want switch mode on %s", got.Traffic, got.Services["web"].Switch, c.Services["web"].Switch.Listen)
	}
}
