package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/trafficswitch"
)

// Switchd is the traffic switch's own process, `deployd switchd`: the
// data plane. It holds the listeners nginx sends requests to and forwards
// them to the active colors the daemon sets over its control socket. It
// opens no store and no Docker client, so the daemon can crash, be killed
// or restart without a request noticing, and it keeps its routing in a
// state file so that its own restart resumes where it left off.
type Switchd struct {
	Config *config.Config
	Logger *logrus.Logger
	// Listeners binds addresses, or hands over the ones the previous
	// process of an upgrade passed on (tableflip's Upgrader); tests use
	// freshListeners.
	Listeners listeners
	// Upgrade replaces the process with a new one that takes over the
	// listeners (tableflip); nil where that is not possible.
	Upgrade func() error

	sw       *trafficswitch.Switch
	ctl      *http.Server
	tcpCtl   *http.Server // the control API on control_listen; nil when off
	started  time.Time
	saveMu   sync.Mutex
	serveErr chan error
}

// listeners is what tableflip's Upgrader offers: a listener inherited from
// the previous process (nil when there is none) and Listen, which takes
// the inherited one or binds a new one, and passes it on at the next
// upgrade.
type listeners interface {
	Listener(network, addr string) (net.Listener, error)
	Listen(network, addr string) (net.Listener, error)
}

// freshListeners binds every address anew, for processes that are never
// upgraded (tests).
type freshListeners struct{}

func (freshListeners) Listener(string, string) (net.Listener, error) { return nil, nil }
func (freshListeners) Listen(network, addr string) (net.Listener, error) {
	return net.Listen(network, addr)
}

// Run restores the last routing, listens for every service, on the
// control socket and, with traffic.switchd.control_listen, on its TCP
// address, and serves in the background. On failure call Close.
func (d *Switchd) Run(ctx context.Context) error {
	cfg := d.Config
	d.started = time.Now()
	d.serveErr = make(chan error, 2)
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	// Read before anything listens: a missing or short token stops the
	// start rather than leave edges that nobody can drive.
	token, err := cfg.ResolveSwitchdControlToken(os.Getenv, os.ReadFile)
	if err != nil {
		return err
	}
	proxies, err := trafficswitch.ParseTrustedProxies(cfg.Traffic.TrustedProxies)
	if err != nil {
		return cfg.FieldErrorf("traffic.trusted_proxies", "%w", err)
	}
	reg := prometheus.NewRegistry()
	d.sw, err = trafficswitch.New(trafficswitch.Options{Logger: d.Logger, Registerer: reg, TrustedProxies: proxies})
	if err != nil {
		return fmt.Errorf("traffic switch: %w", err)
	}
	// Routing comes back before the first connection is accepted, so a
	// restarted switch sends its first request where the last one went.
	if err := d.restore(); err != nil {
		d.Logger.WithError(err).Warn("switchd: last routing not restored; services answer 503 until deployd sets their targets")
	}
	for _, spec := range cfg.ServiceSpecs() {
		ln, err := d.listenService(cfg.SwitchListen(spec.Name))
		if err != nil {
			return cfg.FieldErrorf(config.SwitchListenPath(spec.Name), "%w", err)
		}
		if err := d.sw.Serve(spec.Name, ln); err != nil {
			return cfg.FieldErrorf(config.SwitchListenPath(spec.Name), "%w", err)
		}
	}
	ln, err := d.listenControl(ctx)
	if err != nil {
		return err
	}
	var tcpLn net.Listener
	if addr := cfg.Traffic.Switchd.ControlListen; addr != "" {
		// Taken over at an upgrade like the other listeners.
		if tcpLn, err = d.Listeners.Listen("tcp", addr); err != nil {
			_ = ln.Close()
			return cfg.FieldErrorf("traffic.switchd.control_listen", "%w", err)
		}
	}
	stopping := make(chan struct{})
	opts := trafficswitch.ServerOptions{
		Switch:   d.sw,
		Info:     d.info,
		Upgrade:  d.Upgrade,
		Metrics:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		OnChange: d.save,
		Stopping: stopping,
	}
	// Shutdown runs this at every call (Handoff, then Close), of either
	// server.
	closeStopping := sync.OnceFunc(func() { close(stopping) })
	d.ctl = d.serveControl(ln, opts, closeStopping)
	if tcpLn != nil {
		// The same API, for a daemon on another node: only with the
		// token, since no file mode guards a TCP port.
		opts.Token = token
		d.tcpCtl = d.serveControl(tcpLn, opts, closeStopping)
	}
	return nil
}

// serveControl serves the control API on ln in the background.
func (d *Switchd) serveControl(ln net.Listener, opts trafficswitch.ServerOptions, onShutdown func()) *http.Server {
	srv := &http.Server{Handler: trafficswitch.NewControlHandler(opts), ReadHeaderTimeout: 5 * time.Second}
	srv.RegisterOnShutdown(onShutdown)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.serveErr <- err
		}
	}()
	return srv
}

// controlServers are the servers of the control API that run.
func (d *Switchd) controlServers() []*http.Server {
	var out []*http.Server
	for _, s := range []*http.Server{d.ctl, d.tcpCtl} {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// listenService takes a service's listener over from the previous
// process, or binds it. A unix socket left by a switchd that is gone is
// replaced, and the new one is open to every local user, as a loopback
// port is: nginx's workers run as another user and must connect.
func (d *Switchd) listenService(addr string) (net.Listener, error) {
	network, address := trafficswitch.SplitListenAddr(addr)
	if network != "unix" {
		return d.Listeners.Listen(network, address)
	}
	if ln, err := d.Listeners.Listener(network, address); err != nil || ln != nil {
		return ln, err
	}
	if err := removeStaleSocket(address); err != nil {
		return nil, err
	}
	ln, err := d.Listeners.Listen(network, address)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(address, 0o666); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("open %s to nginx: %w", address, err)
	}
	return ln, nil
}

// removeStaleSocket removes the socket file at path unless something
// accepts connections there.
func removeStaleSocket(path string) error {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("listen on %s: %w", path, syscall.EADDRINUSE)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// listenControl takes the control socket over from the previous process,
// or binds it, first removing a file left by a switchd that is gone. A
// switchd that still answers there is an error: two would fight over the
// state file.
func (d *Switchd) listenControl(ctx context.Context) (net.Listener, error) {
	sock := d.Config.SwitchdSocket()
	if ln, err := d.Listeners.Listener("unix", sock); err != nil || ln != nil {
		return ln, err
	}
	if _, err := trafficswitch.NewClient(sock).Info(ctx); err == nil {
		return nil, fmt.Errorf("another switchd answers on %s", sock)
	}
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale control socket: %w", err)
	}
	ln, err := d.Listeners.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	// Whoever can write to the socket moves traffic: only deployd's user.
	if err := os.Chmod(sock, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("restrict control socket: %w", err)
	}
	return ln, nil
}

func (d *Switchd) statePath() string { return filepath.Join(d.Config.DataDir, "switchd.state.json") }

// restore applies the state file to the switch, for the configured
// services only: a service removed from the configuration is not served.
func (d *Switchd) restore() error {
	st, err := trafficswitch.LoadState(d.statePath())
	if err != nil {
		return err
	}
	for name := range st.Services {
		if _, ok := d.Config.Services[name]; !ok {
			delete(st.Services, name)
		}
	}
	return d.sw.Restore(st)
}

// save writes the switch's state after every change the daemon makes.
// A failed write is logged: routing in memory is right, only a restart of
// switchd would come back to older routing, which the daemon corrects.
func (d *Switchd) save() {
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	if err := trafficswitch.SaveState(d.statePath(), d.sw.State()); err != nil {
		d.Logger.WithError(err).Error("switchd: save routing state")
	}
}

func (d *Switchd) info() trafficswitch.Info {
	return trafficswitch.Info{PID: os.Getpid(), Version: version, Fingerprint: switchdFingerprint(d.Config), Started: d.started}
}

// ServeErr delivers an error if the control server stops on its own.
func (d *Switchd) ServeErr() <-chan error { return d.serveErr }

// Close stops the switch: held requests get a 503, in-flight ones finish
// within ctx.
func (d *Switchd) Close(ctx context.Context) error {
	var errs []error
	for _, srv := range d.controlServers() {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop control API: %w", err))
		}
	}
	if d.sw != nil {
		if err := d.sw.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close traffic switch: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Handoff is the old process's end after an upgrade: the new process has
// the listeners and the control socket. This one serves the connections it
// has until they close (see Switch.Handoff), following the state file the
// new process writes, so that a switch made meanwhile reaches these
// connections too.
func (d *Switchd) Handoff(ctx context.Context) error {
	servers := d.controlServers()
	ctlDone := make(chan error, len(servers))
	for _, srv := range servers {
		go func() { ctlDone <- srv.Shutdown(ctx) }()
	}
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		d.follow(followCtx)
	}()
	errs := []error{d.sw.Handoff(ctx)}
	stopFollowing()
	<-followed
	for range servers {
		errs = append(errs, <-ctlDone)
	}
	return errors.Join(errs...)
}

// followInterval is how often the old process of an upgrade rereads the
// state file.
const followInterval = 100 * time.Millisecond

func (d *Switchd) follow(ctx context.Context) {
	t := time.NewTicker(followInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.restore(); err != nil {
				d.Logger.WithError(err).Debug("switchd: follow the new process's routing")
			}
		}
	}
}

// switchdFingerprint identifies what a switchd serves: the binary's
// version and the configuration it reads. The daemon upgrades a switchd
// whose fingerprint is not its own.
func switchdFingerprint(cfg *config.Config) string {
	h := sha256.New()
	fmt.Fprintf(h, "version %s\n", version)
	for _, p := range cfg.Traffic.TrustedProxies {
		fmt.Fprintf(h, "proxy %s\n", p)
	}
	if ctl := cfg.Traffic.Switchd.ControlListen; ctl != "" {
		// Not the token: the fingerprint is shown to callers.
		fmt.Fprintf(h, "control %s\n", ctl)
	}
	names := make([]string, 0, len(cfg.Services))
	for name := range cfg.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(h, "service %s %s\n", name, cfg.SwitchListen(name))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// switchdPIDFile is where tableflip writes the pid of the ready switchd.
func switchdPIDFile(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "switchd.pid") }

// runSwitchd is the switchd command. SIGHUP (or the daemon, over the
// control socket) upgrades it in place: tableflip starts the binary anew,
// hands it every listener, and this process serves out its connections.
// SIGTERM and SIGINT stop it.
func runSwitchd(args []string, stderr io.Writer) int {
	cfg, _, err := loadConfigFlag("switchd", args, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "deployd switchd: %v\n", err)
		return 1
	}
	if !cfg.SwitchMode() {
		fmt.Fprintf(stderr, "deployd switchd: traffic.mode is %q; switchd serves traffic.mode %q\n", cfg.Traffic.Mode, config.TrafficModeSwitch)
		return 1
	}
	log := newLogger(cfg, stderr)
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		log.WithError(err).Error("switchd could not start")
		return 1
	}
	upg, err := tableflip.New(tableflip.Options{PIDFile: switchdPIDFile(cfg), UpgradeTimeout: 30 * time.Second})
	if err != nil {
		log.WithError(err).Error("switchd could not start")
		return 1
	}
	defer upg.Stop()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := upg.Upgrade(); err != nil {
					log.WithError(err).Error("switchd upgrade failed; this process goes on serving")
				}
			}
		}
	}()

	d := &Switchd{Config: cfg, Logger: log, Listeners: upg, Upgrade: upg.Upgrade}
	if err := d.Run(ctx); err != nil {
		log.WithError(err).Error("switchd could not start")
		_ = d.Close(context.Background())
		return 1
	}
	if err := upg.Ready(); err != nil {
		log.WithError(err).Error("switchd could not start")
		_ = d.Close(context.Background())
		return 1
	}
	log.WithFields(logrus.Fields{"pid": os.Getpid(), "version": version, "socket": cfg.SwitchdSocket(), "control_listen": cfg.Traffic.Switchd.ControlListen}).Info("switchd started")

	select {
	case <-upg.Exit():
		log.Info("switchd upgraded: handing over to the new process")
		hctx, cancel := context.WithTimeout(context.Background(), cfg.Traffic.Switchd.HandoffTimeout)
		defer cancel()
		if err := d.Handoff(hctx); err != nil {
			log.WithError(err).Warn("switchd handoff cut short")
		}
		log.Info("switchd old process done")
		return 0
	case <-ctx.Done():
		log.Info("switchd stopping")
	case err := <-d.ServeErr():
		log.WithError(err).Error("switchd control socket stopped")
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := d.Close(sctx); err != nil {
		log.WithError(err).Error("switchd shutdown")
		return 1
	}
	log.Info("switchd stopped")
	return 0
}
