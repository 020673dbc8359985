package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/clientaddr"
	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/dockerx"
	"github.com/deployd/deployd/pkg/health"
	"github.com/deployd/deployd/pkg/metrics"
	"github.com/deployd/deployd/pkg/nginxconf"
	"github.com/deployd/deployd/pkg/notify"
	"github.com/deployd/deployd/pkg/store"
	"github.com/deployd/deployd/pkg/swarmx"
	"github.com/deployd/deployd/pkg/trafficswitch"
	"github.com/deployd/deployd/web"
)

// These prove at compile time that the adapters fit the controller's ports.
var (
	_ controller.Runtime  = (*dockerx.Client)(nil)
	_ controller.Router   = (*nginxconf.Router)(nil)
	_ controller.Router   = (*trafficswitch.Router)(nil)
	_ controller.Prober   = (*health.Prober)(nil)
	_ controller.Store    = (*store.Store)(nil)
	_ controller.Notifier = (*notify.Notifier)(nil)
	_ notify.Outbox       = (*store.Store)(nil)
	_ controller.Observer = (*metrics.Metrics)(nil)
	_ jobRunner           = (*controller.Controller)(nil)
	_ nginxconf.Driver    = (*dockerx.NginxContainer)(nil)
	_ api.Controller      = (*controller.Controller)(nil)
	_ web.Controller      = (*controller.Controller)(nil)
	_ api.Pages           = (*web.Pages)(nil)
)

// Login attempts from one address are limited, so a token cannot be
// guessed through the login form; the key count bounds the limiter's memory.
const (
	loginFailuresPerMinute = 10
	limiterKeys            = 10000
)

// notifierCloseTimeout bounds how long shutdown spends sending queued
// notifications, out of what is left of the shutdown budget. A healthy
// target takes milliseconds for a queue; a failing one is not retried at
// shutdown, and what it did not get stays in the store and is sent after
// the next start. So this only cuts short a request to a target that
// hangs.
const notifierCloseTimeout = time.Second

// Main is the whole daemon: the store, the Docker client, nginx, the
// controller and the API server. Tests boot it on a free port with Run and
// stop it with Close, exactly as the serve command does.
type Main struct {
	Config *config.Config
	// ConfigPath is the file Config came from; switch mode needs it to
	// start switchd with the same configuration.
	ConfigPath string
	Getenv     func(string) string
	Logger     *logrus.Logger

	store  *store.Store
	docker *dockerx.Client
	// switchd and stopWatch: the traffic switch process and the watch
	// over it, in traffic.mode switch; nil in reload mode.
	switchd *trafficswitch.Client
	// edges is the edge switches' plane with traffic.switchd.edges; nil
	// otherwise.
	edges     *trafficswitch.Fanout
	stopWatch context.CancelFunc
	watchDone chan struct{}
	// swarm is the engine's Swarm side, made by swarmManager the first
	// time a service or the edge switches need it.
	swarm    *swarmx.Runtime
	ctrl     *controller.Controller
	metrics  *metrics.Metrics
	notifier *notify.Notifier
	jobs     *Jobs
	server   *api.Server
	ln       net.Listener
	serveErr chan error

	// nginxPIDFile is the nginx master's pid file in exec mode:
	// nginx.pid_file, or the path nginx's config names (see askNginxPID).
	nginxPIDFile string

	// trafficControl is the traffic switch's pause and maintenance, set
	// by startSwitch in switch mode; nil in reload mode, where the API
	// answers those calls 409.
	trafficControl controller.TrafficControl
	// trafficReader is the traffic switch's per-color request counts, set
	// beside trafficControl; nil in reload mode, where the traffic rules
	// of bake and the watchdog are off.
	trafficReader controller.TrafficReader
}

// NewMain returns a daemon for cfg logging to logOut.
func NewMain(cfg *config.Config, getenv func(string) string, logOut io.Writer) *Main {
	return &Main{Config: cfg, Getenv: getenv, Logger: newLogger(cfg, logOut), serveErr: make(chan error, 1)}
}

// newLogger logs to out in the configured format.
func newLogger(cfg *config.Config, out io.Writer) *logrus.Logger {
	log := logrus.New()
	log.Out = out
	if cfg.LogFormat == "text" {
		log.Formatter = &logrus.TextFormatter{FullTimestamp: true}
	} else {
		log.Formatter = &logrus.JSONFormatter{}
	}
	return log
}

// Run opens everything, recovers from an earlier crash and starts serving
// the API in the background. It returns once the daemon is ready or failed
// to start; on failure call Close to release what was opened.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.Config
	tokens, err := m.tokens()
	if err != nil {
		return err
	}
	if len(tokens) == 0 {
		m.Logger.Warn("no API tokens configured: every /api/v1 request will be refused")
	}
	webhookSecret, err := cfg.ResolveWebhookSecret(m.Getenv, os.ReadFile)
	if err != nil {
		return err
	}
	notifyTargets, err := cfg.ResolveNotifyTargets(m.Getenv, os.ReadFile)
	if err != nil {
		return err
	}
	proxies, err := clientaddr.Parse(cfg.TrustedProxies)
	if err != nil {
		return cfg.FieldErrorf("trusted_proxies", "%w", err)
	}
	for _, w := range cfg.Warnings() {
		m.Logger.Warn(w)
	}
	hook := m.faultHook()
	if cfg.Nginx.Mode == config.NginxModeExec {
		// Before anything is opened: a wrong pid file is a configuration
		// error, found here rather than at the first deploy's switch.
		path, warning, err := askNginxPID(ctx, cfg.Nginx).resolve(cfg)
		if err != nil {
			return err
		}
		if warning != "" {
			m.Logger.Warn(warning)
		}
		m.nginxPIDFile = path
	}

	m.store, err = store.Open(ctx, store.Options{Path: filepath.Join(cfg.DataDir, "deployd.db")})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	m.docker, err = dockerx.New(ctx, dockerx.Options{
		Host:         cfg.Docker.Host,
		PublishPorts: publishPorts(cfg),
		Logger:       m.Logger,
	})
	if err != nil {
		return fmt.Errorf("connect to docker: %w", err)
	}
	nginxRouter, err := m.nginxRouter(hook)
	if err != nil {
		return err
	}
	m.metrics = metrics.New()
	specs := cfg.ServiceSpecs()
	serviceNames := make([]string, 0, len(specs))
	for _, s := range specs {
		serviceNames = append(serviceNames, s.Name)
	}
	m.metrics.InitServices(serviceNames)
	targetNames := make([]string, 0, len(notifyTargets))
	for _, t := range notifyTargets {
		targetNames = append(targetNames, t.Name)
	}
	m.metrics.InitTargets(targetNames)
	router := nginxRouter
	if cfg.SwitchMode() {
		// switchd answers before the controller starts, so that recovery
		// points each service at its active color on a live address.
		if router, err = m.startSwitch(ctx, nginxRouter); err != nil {
			return err
		}
	}
	m.notifier = notify.New(ctx, notify.Options{
		Targets:   notifyTargets,
		Logger:    m.Logger,
		OnFailure: m.metrics.NotificationFailed,
		Outbox:    m.store,
	})

	warnTrafficRulesOff(m.Logger, cfg, m.trafficReader)
	swarmRT, err := m.swarmRuntime(ctx)
	if err != nil {
		return err
	}
	m.ctrl = controller.New(controller.Options{
		Services:  specs,
		Runtime:   m.docker,
		Swarm:     swarmRT,
		Router:    router,
		Prober:    health.NewProber(m.Logger),
		Store:     m.store,
		Logger:    m.Logger,
		Notifier:  m.notifier,
		Observer:  m.metrics,
		Hook:      hook,
		Exits:     m.exitFeed(),
		Watch:     cfg.WatchSpec(),
		Retention: cfg.RetentionSpec(),
		Pause:     cfg.PauseLimits(),
		// Set by startSwitch in switch mode; nil in reload mode, where
		// pause and maintenance answer 409 and the traffic rules are off.
		TrafficControl: m.trafficControl,
		TrafficReader:  m.trafficReader,
		// The API and the page answer from a view of the containers
		// that Docker's events keep; it is listed again on the
		// reconciler's interval.
		Containers: m.docker,
		ViewResync: cfg.Reconcile.Interval,
	})
	if err := m.ctrl.Start(ctx); err != nil {
		return fmt.Errorf("recover state: %w", err)
	}
	m.jobs, err = StartJobs(m.ctrl, jobIntervals{
		Watch:     cfg.Watch.Interval,
		Reconcile: cfg.Reconcile.Interval,
		Retain:    cfg.Retention.Interval,
	}, m.metrics.JobRan, m.Logger)
	if err != nil {
		return err
	}

	m.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	// The page and the API share one session store: the page logs in, the
	// API serves the page's requests with that session. Sessions live in
	// the store too, so a restart keeps operators logged in.
	pageAuth := auth.NewAuthenticator(tokens, m.Logger)
	sessions, err := auth.OpenSessions(ctx, auth.SessionOptions{
		TTL:      cfg.Web.SessionTTL,
		PerToken: cfg.Web.SessionsPerToken,
		Tokens:   pageAuth,
		Store:    sessionStore{m.store},
	})
	if err != nil {
		return err
	}
	pages := web.New(web.Options{
		Controller:     m.ctrl,
		StatusOf:       api.StatusOf,
		Auth:           pageAuth,
		Sessions:       sessions,
		LoginLimiter:   auth.NewLimiter(loginFailuresPerMinute, time.Minute, limiterKeys, time.Now),
		LoginSuccesses: auth.NewLimiter(cfg.Web.LoginsPerMinute, time.Minute, limiterKeys, time.Now),
		SecureCookies:  cfg.Web.SecureCookies,
		Logger:         m.Logger,
	})
	m.server = api.New(api.Options{
		Controller: m.ctrl, Tokens: tokens, Logger: m.Logger,
		WebhookSecret: webhookSecret, WebhookAllowUnstamped: cfg.Auth.WebhookAllowUnstamped,
		Sessions: sessions, Pages: pages, TrustedProxies: proxies,
		Metrics: m.metrics.Handler(m.extraMetrics()...), MetricsPublic: cfg.Metrics.Public,
		MaxStreams: cfg.Events.MaxStreams, MaxStreamsPerToken: cfg.Events.MaxStreamsPerToken,
	})
	go func() {
		if err := m.server.Serve(m.ln); err != nil {
			m.serveErr <- err
		}
	}()
	return nil
}

// nginxRouter is the Router that writes nginx's upstream files and
// reloads it; nil with nginx.mode static, where nginx is the operator's
// and the switch Router runs without an edge. A nil interface, not a nil
// *nginxconf.Router, so that the switch Router sees no edge.
func (m *Main) nginxRouter(hook controller.Hook) (controller.Router, error) {
	cfg := m.Config
	if cfg.NginxStatic() {
		m.Logger.Info("nginx.mode static: deployd writes no nginx upstream and reloads nothing; nginx proxies to the traffic switch as configured")
		return nil, nil
	}
	r, err := nginxconf.New(nginxconf.Options{
		Dir:                  cfg.Nginx.UpstreamDir,
		TemplatePath:         cfg.Nginx.Template,
		Driver:               m.nginxDriver(),
		Logger:               m.Logger,
		ReloadConfirmTimeout: cfg.Nginx.ReloadConfirmTimeout,
		Hook:                 hook,
	})
	if err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	return r, nil
}

// publishPorts is whether containers publish their port on the host's
// loopback: when nginx runs on the host (exec), and in static mode, where
// the switch deployd drives runs on the host beside deployd. In docker
// mode nginx and the switch reach containers by name on their network.
func publishPorts(cfg *config.Config) bool {
	return cfg.Nginx.Mode == config.NginxModeExec || cfg.NginxStatic()
}

// startSwitch makes sure the traffic switch process (switchd) runs with
// this configuration, starts watching it, and returns the Router that
// moves traffic through it, nginx (edge) pointing at the switch; edge is
// nil with nginx.mode static.
//
// With traffic.switchd.edges the switches are the edges' (edgesPlane):
// the daemon starts and watches none of its own.
func (m *Main) startSwitch(ctx context.Context, edge controller.Router) (controller.Router, error) {
	cfg := m.Config
	if cfg.EdgesOn() {
		f, err := m.edgesPlane(ctx)
		if err != nil {
			return nil, err
		}
		m.edges = f
		return m.switchRouter(f, edge)
	}
	m.switchd = trafficswitch.NewClient(cfg.SwitchdSocket())
	keeper := &switchdKeeper{
		cfg: cfg, configPath: m.ConfigPath, client: m.switchd, log: m.Logger,
		up: m.metrics.SwitchdUp, respawned: m.metrics.SwitchdRespawned, exited: make(chan struct{}, 1),
	}
	if err := keeper.ensure(ctx); err != nil {
		return nil, err
	}
	m.metrics.SwitchdUp(true)
	watchCtx, stop := context.WithCancel(context.Background())
	m.stopWatch, m.watchDone = stop, make(chan struct{})
	go func() {
		defer close(m.watchDone)
		keeper.watch(watchCtx)
	}()
	return m.switchRouter(m.switchd, edge)
}

// switchRouter is the Router on p, nginx (edge) pointing at the switch,
// or no edge with nginx.mode static, and sets the pause, maintenance and
// traffic counts on p as well.
func (m *Main) switchRouter(p trafficswitch.Plane, edge controller.Router) (controller.Router, error) {
	cfg := m.Config
	m.trafficControl = trafficswitch.NewControl(p)
	m.trafficReader = trafficswitch.NewTrafficReader(p, trafficswitch.DefaultErrorWindow)
	o := trafficswitch.RouterOptions{Plane: p, Edge: edge, Logger: m.Logger}
	if edge == nil {
		for name := range cfg.Services {
			o.Services = append(o.Services, name)
		}
	} else {
		o.Upstreams = make(map[string]string, len(cfg.Services))
		for name := range cfg.Services {
			o.Upstreams[name] = cfg.SwitchUpstream(name)
		}
	}
	r, err := trafficswitch.NewRouter(o)
	if err != nil {
		return nil, fmt.Errorf("traffic switch: %w", err)
	}
	return r, nil
}

// swarmRuntime is the Swarm runtime when a service runs on one; nil when
// none does.
func (m *Main) swarmRuntime(ctx context.Context) (controller.Runtime, error) {
	for _, spec := range m.Config.ServiceSpecs() {
		if spec.Runtime == controller.RuntimeSwarm {
			return m.swarmManager(ctx, "services."+spec.Name+".runtime", "swarm")
		}
	}
	return nil, nil
}

// swarmManager is the Swarm side of the daemon's engine connection, which
// must be a swarm manager's: checked the first time, so that a config
// asking for a swarm on an engine that is not one fails startup naming
// field (what says what needed it). Services and edge switches share it.
func (m *Main) swarmManager(ctx context.Context, field, what string) (*swarmx.Runtime, error) {
	if m.swarm != nil {
		return m.swarm, nil
	}
	rt := swarmx.New(m.docker.API(), m.docker, m.Logger)
	if err := rt.Ping(ctx); err != nil {
		return nil, m.Config.FieldErrorf(field, "%s: this Docker engine is not a swarm manager: %w", what, err)
	}
	m.swarm = rt
	return rt, nil
}

// extraMetrics are the metrics /metrics serves besides the daemon's own:
// the traffic switch's, gathered from switchd, in switch mode; with edge
// switches, every edge's, each series labelled with its edge.
func (m *Main) extraMetrics() []prometheus.Gatherer {
	switch {
	case m.edges != nil:
		return []prometheus.Gatherer{m.edges}
	case m.switchd != nil:
		return []prometheus.Gatherer{m.switchd}
	}
	return nil
}

// exitFeed is Docker's event stream when the reconciler is to follow
// container exits, else nil.
func (m *Main) exitFeed() controller.ExitFeed {
	if !m.Config.Reconcile.OnContainerExit {
		return nil
	}
	return m.docker
}

func (m *Main) nginxDriver() nginxconf.Driver {
	n := m.Config.Nginx
	if n.Mode == config.NginxModeDocker {
		return m.docker.NginxContainer(n.Container)
	}
	return &nginxconf.ExecDriver{TestCommand: n.TestCommand, ReloadCommand: n.ReloadCommand, PIDFile: m.nginxPIDFile}
}

func (m *Main) tokens() ([]auth.Token, error) {
	resolved, err := m.Config.ResolveTokens(m.Getenv, os.ReadFile)
	if err != nil {
		return nil, err
	}
	tokens := make([]auth.Token, 0, len(resolved))
	for _, t := range resolved {
		role, err := auth.ParseRole(t.Role)
		if err != nil {
			return nil, fmt.Errorf("token %s: %w", t.Name, err)
		}
		tokens = append(tokens, auth.Token{Name: t.Name, Role: role, Secret: t.Secret})
	}
	return tokens, nil
}

// Addr is the address the API listens on, once Run has returned.
func (m *Main) Addr() string {
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// Controller exposes the controller to in-process tests.
func (m *Main) Controller() *controller.Controller { return m.ctrl }

// ServeErr delivers an error if the API server stops on its own.
func (m *Main) ServeErr() <-chan error { return m.serveErr }

// Close shuts down in order: stop taking requests, stop the scheduled jobs,
// let running deployments reach a safe point, stop watching switchd
// (which keeps serving traffic), deliver queued
// notifications (briefly; the store keeps the rest), then close Docker and
// the store.
func (m *Main) Close(ctx context.Context) error {
	var errs []error
	if m.server != nil {
		if err := m.server.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop API: %w", err))
		}
	} else if m.ln != nil {
		errs = append(errs, m.ln.Close())
	}
	if m.jobs != nil {
		if err := m.jobs.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop jobs: %w", err))
		}
	}
	if m.ctrl != nil {
		if err := m.ctrl.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop deployments: %w", err))
		}
	}
	// switchd goes on serving: it is stopped on its own, never with
	// the daemon.
	if m.stopWatch != nil {
		m.stopWatch()
		<-m.watchDone
	}
	if m.notifier != nil {
		nctx, cancel := context.WithTimeout(ctx, notifierCloseTimeout)
		err := m.notifier.Close(nctx)
		cancel()
		if err != nil {
			// The store keeps what is not delivered yet; anything lost
			// besides is logged and counted, and must not fail the
			// shutdown of a daemon that stopped cleanly.
			m.Logger.WithError(err).Warn("notifications left undelivered at shutdown")
		}
	}
	if m.docker != nil {
		if err := m.docker.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close docker client: %w", err))
		}
	}
	if m.store != nil {
		if err := m.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
	}
	return errors.Join(errs...)
}
