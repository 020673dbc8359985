package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/trafficswitch"
)

// switchConfig loads a switch-mode config for services api, on a free
// port, and web, on webListen, with its data dir (and so switchd's socket)
// in a fresh directory.
func switchConfig(t *testing.T, webListen string) *config.Config {
	t.Helper()
	// A short directory: a unix socket's path holds about 100 bytes, and
	// t.TempDir's names are long.
	dir, err := os.MkdirTemp("", "sw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	yml := "data_dir: " + filepath.Join(dir, "data") + "\ntraffic:\n  mode: switch\nservices:\n" +
		"  api:\n    image: demoapp\n    port: 8000\n    switch:\n      listen: " + freeAddr(t) + "\n" +
		"  web:\n    image: demoapp\n    port: 8000\n    switch:\n      listen: " + webListen + "\n      upstream: deployd:7501\n"
	path := filepath.Join(dir, "deployd.yml")
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

func quietLogger() *logrus.Logger {
	log := logrus.New()
	log.Out = io.Discard
	return log
}

// runSwitchdInProcess runs a Switchd for cfg in this process, closed at
// the test's end (unless the test closes it itself: Close is idempotent).
func runSwitchdInProcess(t *testing.T, cfg *config.Config) (*Switchd, error) {
	t.Helper()
	d := &Switchd{Config: cfg, Logger: quietLogger(), Listeners: freshListeners{}}
	err := d.Run(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d, err
}

func TestSwitchd_PortInUseNamesServiceAndField(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := switchConfig(t, taken.Addr().String())

	_, err = runSwitchdInProcess(t, cfg)
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("error = %v, want EADDRINUSE", err)
	}
	if !strings.Contains(err.Error(), "deployd.yml:14: services.web.switch.listen: ") {
		t.Fatalf("error = %q, want it to name the file's line and services.web.switch.listen", err)
	}
}

func TestSwitchd_ServesEveryServiceAndAnswersWithItsFingerprint(t *testing.T) {
	addr := freeAddr(t)
	cfg := switchConfig(t, addr)
	if _, err := runSwitchdInProcess(t, cfg); err != nil {
		t.Fatalf("Run: %v", err)
	}
	c := trafficswitch.NewClient(cfg.SwitchdSocket())
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.PID != os.Getpid() || info.Fingerprint != switchdFingerprint(cfg) {
		t.Errorf("Info = %+v, want this process and fingerprint %s", info, switchdFingerprint(cfg))
	}
	st, err := c.Status(ctx, "web")
	if err != nil || st.Addr != addr {
		t.Fatalf("web: %+v (%v), want it served on %s", st, err, addr)
	}
	fi, err := os.Stat(cfg.SwitchdSocket())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket %v (%v), want mode 0600: whoever writes to it moves traffic", fi.Mode(), err)
	}
}

// A switchd that restarts (a crash, a reboot) comes back to the routing it
// had, before the daemon says anything.
func TestSwitchd_RestoresItsRoutingAfterARestart(t *testing.T) {
	cfg := switchConfig(t, freeAddr(t))
	ctx := context.Background()
	first, err := runSwitchdInProcess(t, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	c := trafficswitch.NewClient(cfg.SwitchdSocket())
	if err := c.SetTargets(ctx, "web", "green", []string{"127.0.0.1:9001", "127.0.0.1:9002"}); err != nil {
		t.Fatalf("SetTargets: %v", err)
	}
	if err := c.Maintenance(ctx, "api", true, "back at 10"); err != nil {
		t.Fatalf("Maintenance: %v", err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}

	if _, err := runSwitchdInProcess(t, cfg); err != nil {
		t.Fatalf("Run again: %v", err)
	}
	web, err := c.Status(ctx, "web")
	if err != nil || web.Active != "green" {
		t.Fatalf("web after restart: %+v (%v), want green active", web, err)
	}
	for _, cs := range web.Colors {
		if cs.Color == "green" && strings.Join(cs.Addrs, ",") != "127.0.0.1:9001,127.0.0.1:9002" {
			t.Errorf("green's targets = %v", cs.Addrs)
		}
	}
	api, err := c.Status(ctx, "api")
	if err != nil || !api.Maintenance || api.Message != "back at 10" {
		t.Fatalf("api after restart: %+v (%v), want maintenance with its message", api, err)
	}
}

func TestSwitchd_RefusesASecondProcessOnItsSocket(t *testing.T) {
	cfg := switchConfig(t, freeAddr(t))
	if _, err := runSwitchdInProcess(t, cfg); err != nil {
		t.Fatalf("Run: %v", err)
	}
	other := *cfg
	other.Services = map[string]config.Service{}
	_, err := runSwitchdInProcess(t, &other)
	if err == nil || !strings.Contains(err.Error(), "another switchd answers on") {
		t.Fatalf("second switchd: %v, want it refused", err)
	}
}

func TestSwitchd_ReplacesAStaleSocketFile(t *testing.T) {
	cfg := switchConfig(t, freeAddr(t))
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	// What a killed switchd leaves: the socket file, nobody listening.
	ln, err := net.Listen("unix", cfg.SwitchdSocket())
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	if _, err := runSwitchdInProcess(t, cfg); err != nil {
		t.Fatalf("Run over a stale socket: %v", err)
	}
	if _, err := trafficswitch.NewClient(cfg.SwitchdSocket()).Info(context.Background()); err != nil {
		t.Fatalf("Info: %v", err)
	}
}

func TestSwitchdFingerprint_ChangesWithWhatSwitchdServes(t *testing.T) {
	cfg := switchConfig(t, "127.0.0.1:7501")
	base := switchdFingerprint(cfg)
	moved := *cfg
	moved.Services = map[string]config.Service{}
	for name, s := range cfg.Services {
		moved.Services[name] = s
	}
	web := moved.Services["web"]
	web.Switch.Listen = "127.0.0.1:7502"
	moved.Services["web"] = web
	proxies := *cfg
	proxies.Traffic.TrustedProxies = []string{"10.0.0.0/8"}
	pause := *cfg
	pause.Traffic.Pause.MaxHeld = 7 // the daemon's business, not switchd's
	for _, tc := range []struct {
		name string
		cfg  *config.Config
		same bool
	}{
		{"same config", cfg, true},
		{"a listen address moved", &moved, false},
		{"other trusted proxies", &proxies, false},
		{"pause limits", &pause, true},
	} {
		if got := switchdFingerprint(tc.cfg) == base; got != tc.same {
			t.Errorf("%s: same fingerprint = %v, want %v", tc.name, got, tc.same)
		}
	}
}

// Without spawning, a daemon whose switchd is not running says what to do.
func TestSwitchdKeeper_WithoutSpawnSaysHowToStartSwitchd(t *testing.T) {
	cfg := switchConfig(t, freeAddr(t))
	cfg.Traffic.Switchd.Spawn = false
	k := &switchdKeeper{cfg: cfg, client: trafficswitch.NewClient(cfg.SwitchdSocket()), log: quietLogger(), startTimeout: 300 * time.Millisecond}
	err := k.ensure(context.Background())
	if !errors.Is(err, trafficswitch.ErrUnreachable) || !strings.Contains(err.Error(), "deployd switchd --config") {
		t.Fatalf("ensure = %v, want ErrUnreachable and the command to run", err)
	}
}

func TestSwitchdEnv_KeepsNoSecrets(t *testing.T) {
	got := switchdEnv([]string{"PATH=/bin", "DEPLOYD_ADMIN_TOKEN=s3cret", "DEPLOYD_DATA_DIR=/d", "DEPLOYD_WEBHOOK_SECRET=x", "HOME=/root", "AWS_SECRET_ACCESS_KEY=y"})
	if strings.Join(got, " ") != "PATH=/bin DEPLOYD_DATA_DIR=/d HOME=/root" {
		t.Fatalf("switchdEnv = %v", got)
	}
}

// On traffic.switchd.control_listen, switchd serves the control API over
// TCP to whoever has the token, and to nobody else; the unix socket
// needs none.
func TestSwitchd_ControlOverTCPAnswersOnlyWithTheToken(t *testing.T) {
	cfg := switchConfig(t, freeAddr(t))
	tokenBytes := make([]byte, 32)
	if _, err := rand.Read(tokenBytes); err != nil {
		t.Fatal(err)
	}
	token := hex.EncodeToString(tokenBytes)
	t.Setenv("DEPLOYD_TEST_SWITCHD_CONTROL_TOKEN", token)
	addr := freeAddr(t)
	cfg.Traffic.Switchd.Spawn = false
	cfg.Traffic.Switchd.ControlListen = addr
	cfg.Traffic.Switchd.ControlTokenEnv = "DEPLOYD_TEST_SWITCHD_CONTROL_TOKEN"
	if _, err := runSwitchdInProcess(t, cfg); err != nil {
		t.Fatalf("Run: %v", err)
	}
	ctx := context.Background()

	tcp := trafficswitch.NewTCPClient(addr, token)
	if err := tcp.SetTargets(ctx, "web", "green", []string{"127.0.0.1:9001"}); err != nil {
		t.Fatalf("SetTargets over TCP with the token: %v", err)
	}
	if info, err := tcp.Info(ctx); err != nil || info.PID != os.Getpid() {
		t.Fatalf("Info over TCP: %+v (%v)", info, err)
	}
	st, err := trafficswitch.NewClient(cfg.SwitchdSocket()).Status(ctx, "web")
	if err != nil || st.Active != "green" {
		t.Fatalf("web on the socket: %+v (%v), want green, as set over TCP", st, err)
	}

	for name, c := range map[string]*trafficswitch.Client{
		"no token":    trafficswitch.NewTCPClient(addr, ""),
		"wrong token": trafficswitch.NewTCPClient(addr, strings.Repeat("x", len(token))),
	} {
		if err := c.SetTargets(ctx, "web", "blue", []string{"127.0.0.1:9002"}); !errors.Is(err, trafficswitch.ErrUnauthorized) {
			t.Errorf("%s: SetTargets = %v, want ErrUnauthorized", name, err)
		}
		if _, err := c.Info(ctx); !errors.Is(err, trafficswitch.ErrUnauthorized) {
			t.Errorf("%s: Info = %v, want ErrUnauthorized", name, err)
		}
	}
	st, err = tcp.Status(ctx, "web")
	if err != nil || st.Active != "green" {
		t.Fatalf("web after refused calls: %+v (%v), want green still", st, err)
	}
}

func TestSwitchd_ShortControlTokenStopsTheStart(t *testing.T) {
	cfg := switchConfig(t, freeAddr(t))
	t.Setenv("DEPLOYD_TEST_SWITCHD_CONTROL_TOKEN", "too-short")
	cfg.Traffic.Switchd.Spawn = false
	cfg.Traffic.Switchd.ControlListen = freeAddr(t)
	cfg.Traffic.Switchd.ControlTokenEnv = "DEPLOYD_TEST_SWITCHD_CONTROL_TOKEN"
	_, err := runSwitchdInProcess(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "shorter than 32 bytes") || strings.Contains(err.Error(), "too-short") {
		t.Fatalf("Run = %v, want a refusal of the short token that does not show it", err)
	}
}
