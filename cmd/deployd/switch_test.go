package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/trafficswitch"
)

// switchConfig loads a switch-mode config for services api, on a free
// port, and web, on webListen.
func switchConfig(t *testing.T, webListen string) *config.Config {
	t.Helper()
	yml := "traffic:\n  mode: switch\nservices:\n" +
		"  api:\n    image: demoapp\n    port: 8000\n    switch:\n      listen: " + freeAddr(t) + "\n" +
		"  web:\n    image: demoapp\n    port: 8000\n    switch:\n      listen: " + webListen + "\n      upstream: deployd:7501\n"
	path := filepath.Join(t.TempDir(), "deployd.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return cfg
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func newSwitch(t *testing.T) *trafficswitch.Switch {
	t.Helper()
	sw, err := trafficswitch.New(trafficswitch.Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := sw.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return sw
}

func TestListenSwitch_PortInUseNamesServiceAndField(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := switchConfig(t, taken.Addr().String())

	_, err = listenSwitch(context.Background(), cfg, newSwitch(t))
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("error = %v, want EADDRINUSE", err)
	}
	if !strings.Contains(err.Error(), "deployd.yml:13: services.web.switch.listen: ") {
		t.Fatalf("error = %q, want it to name the file's line and services.web.switch.listen", err)
	}
}

func TestListenSwitch_ReturnsEachServicesUpstream(t *testing.T) {
	addr := freeAddr(t)
	cfg := switchConfig(t, addr)
	sw := newSwitch(t)
	ups, err := listenSwitch(context.Background(), cfg, sw)
	if err != nil {
		t.Fatalf("listenSwitch: %v", err)
	}
	if got := ups["web"]; got != "deployd:7501" {
		t.Errorf("web's upstream = %q, want deployd:7501", got)
	}
	if got := ups["api"]; got != cfg.Services["api"].Switch.Listen {
		t.Errorf("api's upstream = %q, want its listen address", got)
	}
	if got := sw.Addr("web"); got == nil || got.String() != addr {
		t.Errorf("web listens on %v, want %s", got, addr)
	}
}
