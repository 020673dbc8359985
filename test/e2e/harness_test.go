package e2e

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/apicheck"
	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/internal/testenv"
	"github.com/deployd/deployd/pkg/controller"
)

const (
	// repository is the image repository every test service deploys from.
	repository = "deployd-e2e-demo"
	tokenEnv   = "DEPLOYD_E2E_TOKEN"
	// viewerTokenEnv holds a read-only token every daemon accepts too.
	viewerTokenEnv = "DEPLOYD_E2E_VIEWER_TOKEN"
	// webhookSecretEnv holds the webhook secret; the daemon reads it only
	// when the config names it (svcConfig.Webhook).
	webhookSecretEnv = "DEPLOYD_E2E_WEBHOOK_SECRET"
	notifyURLEnv     = "DEPLOYD_E2E_NOTIFY_URL"
	notifySecretEnv  = "DEPLOYD_E2E_NOTIFY_SECRET"
	// notifyURL2Env holds the URL of the second, unsigned target.
	notifyURL2Env = "DEPLOYD_E2E_NOTIFY_URL_2"

	daemonStartTimeout = 30 * time.Second
	daemonStopTimeout  = 20 * time.Second
	deploymentTimeout  = 90 * time.Second
	apiTimeout         = 10 * time.Second
)

// deploydBin is the daemon under test, built once by TestMain: building it
// per test would dominate the run time.
var deploydBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "deployd-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: temp dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// With the race detector when the tests run with it, so daemon races
	// fail here too, and with the fault points that faults_test.go uses.
	root, err := lab.ModuleRoot(ctx)
	if err == nil {
		deploydBin, err = lab.BuildDeployd(ctx, root, dir, raceEnabled, lab.FaultInject)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	return m.Run()
}

// images the tests deploy; each tag has its behaviour baked in.
var imageArgs = map[string]map[string]string{
	"v1": {"APP_VERSION": "v1"},
	"v2": {"APP_VERSION": "v2"},
	// v3 ships a breaking migration (demoapp showmigrations).
	"v3":       {"APP_VERSION": "v3"},
	"v2-fail":  {"APP_VERSION": "v2", "HEALTH_MODE": "failing"},
	"v2-crash": {"APP_VERSION": "v2", "CRASH_AT_START": "1"},
	"v2-slow":  {"APP_VERSION": "v2", "STARTUP_DELAY": "4s"},
	"v2-mig3":  {"APP_VERSION": "v2", "MIGRATE_EXIT": "3"},
	// v2-crash2s turns healthy, then dies two seconds after it started.
	"v2-crash2s": {"APP_VERSION": "v2", "CRASH_AFTER": "2s"},
	// v2-failreq says healthy at /health and answers 500 to everything
	// else: the app the traffic rule is for.
	"v2-failreq": {"APP_VERSION": "v2", "FAIL_REQUESTS": "1"},
}

// svcConfig is the part of the daemon's config a test varies.
type svcConfig struct {
	Replicas     int
	StartTimeout time.Duration
	Drain        time.Duration
	Restart      string
	Standby      string
	PreDeploy    []string
	// Backup is the service's backup block, when set.
	Backup *config.Backup
	// Schema, when set, is the service's schema block.
	Schema *config.Schema
	// TestCommand replaces nginx's config test command when set.
	TestCommand []string
	// Webhook turns on POST /hooks/deploy with the env's webhook secret.
	Webhook     bool
	AllowedRefs []string
	// AllowedTags is the service's allowed_tags pattern.
	AllowedTags string
	// RepositoryURL makes the status page link commits.
	RepositoryURL string
	// DockerHost replaces the default Docker socket when set.
	DockerHost string
	// WatchInterval and UnhealthyThreshold configure the watchdog (and
	// bake) when WatchInterval is set.
	WatchInterval      time.Duration
	UnhealthyThreshold int
	// ReconcileInterval configures the reconciler when set.
	ReconcileInterval time.Duration
	// IgnoreExits turns off the reconciler's following of container exits,
	// leaving dead containers to the scheduled rounds.
	IgnoreExits bool
	Bake        time.Duration
	// BakeMaxErrorRate and BakeMinRequests are bake's traffic rule
	// (switch mode); 0 leaves the rule off and the default minimum.
	BakeMaxErrorRate float64
	BakeMinRequests  int
	AutoRollback     bool
	// Notify adds a signed webhook target whose URL and secret the daemon
	// reads from notifyURLEnv and notifySecretEnv (see env.notifyURL).
	Notify bool
	// Notify2 adds a second webhook target, e2e-second, whose URL the
	// daemon reads from notifyURL2Env (see env.notifyURL2).
	Notify2 bool
	// TrustedProxies is the top-level trusted_proxies: peers whose
	// X-Forwarded-For names the client.
	TrustedProxies []string
	// Traffic is traffic.mode: "" is reload (what the suite was written
	// for), trafficDefault what a config that does not say gets. In switch
	// mode the service's switch listens on a free loopback port.
	Traffic string
	// Image replaces the demo repository when set.
	Image string
	// Pull replaces the service's pull policy (missing) when set.
	Pull string
	// Env, EnvFile and Network are the service's env, env_file and network.
	Env     map[string]string
	EnvFile string
	Network string
	// HealthTimeout replaces the probes' timeout when set.
	HealthTimeout time.Duration
}

// trafficModes are the traffic modes the core behaviours run in.
var trafficModes = []string{config.TrafficModeReload, config.TrafficModeSwitch}

// eachTrafficMode runs fn as a parallel subtest per traffic mode, named
// after it.
func eachTrafficMode(t *testing.T, fn func(t *testing.T, mode string)) {
	t.Helper()
	for _, mode := range trafficModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			fn(t, mode)
		})
	}
}

// failFastStartTimeout is start_timeout for tests whose new color never
// turns healthy: short, since their health step waits that long, but not
// too short for a loaded engine, since it bounds the start step too (a
// container start took over 3 s in a CI run with the suites side by side).
const failFastStartTimeout = 8 * time.Second

func defaultSvc() svcConfig {
	return svcConfig{Replicas: 1, StartTimeout: 20 * time.Second, Drain: 200 * time.Millisecond}
}

// env is one test's world: a unique service, its own nginx, its own data
// dir and token, and the Docker client to check the engine's state.
type env struct {
	t       *testing.T
	cli     *client.Client
	svc     string
	ng      *testenv.Nginx
	dir     string
	dataDir string
	token   string // an operator's
	viewer  string // a viewer's token
	// webhookSecret signs webhook deliveries of configs with Webhook set.
	webhookSecret string
	// notifyURL is the notification receiver of configs with Notify set;
	// notifySecret signs what is sent there.
	notifyURL    string
	notifySecret string
	// notifyURL2 is the second target of configs with Notify2 set.
	notifyURL2 string
	// switchMode is set while the latest config written is in
	// traffic.mode switch; switchAddr is where the switch serves the
	// service (and nginx's upstream points), the same for every config of
	// the env.
	switchMode bool
	switchAddr string
	// bin, when set, is the daemon binary launched instead of deploydBin.
	bin string
}

// newEnv prepares a test's world and builds the images it names. Cleanups
// run in reverse: daemons stop first, then nginx, then the containers go.
func newEnv(t *testing.T, tags ...string) *env {
	t.Helper()
	return newNamedEnv(t, testenv.UniqueService(t), tags...)
}

// newNamedEnv is newEnv for a service of a given name. It refuses to start
// when containers of that service exist already, because its cleanup would
// remove containers that are not its own.
func newNamedEnv(t *testing.T, svc string, tags ...string) *env {
	t.Helper()
	cli := testenv.Docker(t)
	probe := &env{t: t, cli: cli, svc: svc}
	if cs := probe.containers(); len(cs) > 0 {
		t.Fatalf("containers of service %q already exist (%s, ...); remove them first", svc, cs[0].Name)
	}
	t.Cleanup(func() { testenv.RemoveServiceContainers(t, cli, svc) })
	for _, tag := range tags {
		args, ok := imageArgs[tag]
		if !ok {
			t.Fatalf("no image args for tag %q", tag)
		}
		testenv.DemoImage(t, cli, repository+":"+tag, args)
	}
	ng := testenv.StartNginx(t, svc)
	dir := t.TempDir()
	e := &env{t: t, cli: cli, svc: svc, ng: ng, dir: dir, dataDir: filepath.Join(dir, "data"),
		token: randomSecret(t), viewer: randomSecret(t), webhookSecret: randomSecret(t), notifySecret: randomSecret(t)}
	// Registered before any daemon starts, so it runs after they stopped:
	// in switch mode they start switchd detached, and it outlives them.
	t.Cleanup(e.stopSwitchd)
	return e
}

// stopSwitchd stops the env's traffic switch processes, if any, and fails
// the test when one reported a data race (it is built like the daemon).
func (e *env) stopSwitchd() {
	if err := lab.StopSwitchd(context.Background(), e.dataDir, daemonStopTimeout); err != nil {
		e.t.Errorf("stop switchd: %v", err)
	}
	log, err := os.ReadFile(filepath.Join(e.dataDir, "switchd.log"))
	if err != nil {
		return
	}
	if strings.Contains(string(log), "WARNING: DATA RACE") {
		e.t.Errorf("switchd reported a data race:\n%s", log)
	} else if e.t.Failed() {
		e.t.Logf("switchd log:\n%s", log)
	}
}

// randomSecret returns 48 random hex digits, for tokens and secrets.
func randomSecret(t *testing.T) string {
	t.Helper()
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random secret: %v", err)
	}
	return hex.EncodeToString(b[:])
}

// writeConfig writes a daemon config named name for the service and
// returns its path.
func (e *env) writeConfig(name string, s svcConfig) string {
	e.t.Helper()
	c := lab.DaemonConfig(e.dataDir, e.ng, e.svc, repository,
		config.Token{Name: "e2e", Role: config.RoleOperator, TokenEnv: tokenEnv},
		config.Token{Name: "e2e-viewer", Role: config.RoleViewer, TokenEnv: viewerTokenEnv})
	if s.Webhook {
		c.Auth.WebhookSecretEnv = webhookSecretEnv
	}
	if s.TestCommand != nil {
		c.Nginx.TestCommand = s.TestCommand
	}
	c.TrustedProxies = s.TrustedProxies
	svc := c.Services[e.svc]
	if s.Image != "" {
		svc.Image = s.Image
	}
	if s.Pull != "" {
		svc.Pull = s.Pull
	}
	svc.Env, svc.EnvFile, svc.Network = s.Env, s.EnvFile, s.Network
	if s.HealthTimeout > 0 {
		svc.Health.Timeout = s.HealthTimeout
	}
	svc.Replicas, svc.Health.StartTimeout, svc.Drain = s.Replicas, s.StartTimeout, s.Drain
	svc.AllowedRefs, svc.RepositoryURL, svc.Bake, svc.AutoRollback = s.AllowedRefs, s.RepositoryURL, s.Bake, s.AutoRollback
	svc.AllowedTags = s.AllowedTags
	svc.BakeMaxErrorRate = config.ErrorRate(s.BakeMaxErrorRate)
	if s.BakeMinRequests > 0 {
		svc.BakeMinRequests = s.BakeMinRequests
	}
	if s.Restart != "" {
		svc.Restart = s.Restart
	}
	if s.Standby != "" {
		svc.Standby = s.Standby
	}
	if len(s.PreDeploy) > 0 {
		svc.PreDeploy = config.PreDeploy{Command: s.PreDeploy, Timeout: 30 * time.Second}
	}
	svc.Backup = s.Backup
	if s.Schema != nil {
		svc.Schema = *s.Schema
	}
	c.Services[e.svc] = svc
	e.switchMode = s.Traffic == config.TrafficModeSwitch || s.Traffic == trafficDefault
	if s.Traffic == trafficDefault {
		// What a user gets who says nothing: switch mode on a unix
		// socket next to the upstream file.
		c.Traffic = config.Default().Traffic
		e.switchAddr = c.SwitchUpstream(e.svc)
	} else if e.switchMode {
		if err := lab.UseTrafficSwitch(c); err != nil {
			e.t.Fatalf("switch mode: %v", err)
		}
		if e.switchAddr == "" {
			e.switchAddr = c.Services[e.svc].Switch.Listen
		}
		svc := c.Services[e.svc]
		svc.Switch.Listen = e.switchAddr
		c.Services[e.svc] = svc
	}
	c.Docker.Host = s.DockerHost
	if s.WatchInterval > 0 {
		// Only these two: the other keys (the traffic rule's minimum)
		// keep their defaults, which Validate requires.
		c.Watch.Interval, c.Watch.UnhealthyThreshold = s.WatchInterval, max(s.UnhealthyThreshold, 1)
	}
	if s.ReconcileInterval > 0 {
		c.Reconcile.Interval = s.ReconcileInterval
	}
	c.Reconcile.OnContainerExit = !s.IgnoreExits
	if s.Notify {
		c.Notify = append(c.Notify, config.NotifyTarget{Name: "e2e-receiver", Type: config.NotifyTypeWebhook,
			URLEnv: notifyURLEnv, SecretEnv: notifySecretEnv})
	}
	if s.Notify2 {
		c.Notify = append(c.Notify, config.NotifyTarget{Name: "e2e-second", Type: config.NotifyTypeWebhook, URLEnv: notifyURL2Env})
	}
	path := filepath.Join(e.dir, name)
	if err := c.WriteFile(path); err != nil {
		e.t.Fatalf("write config: %v", err)
	}
	return path
}

// syncBuffer collects a subprocess's stderr while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// daemon is a running deployd subprocess.
type daemon struct {
	*lab.Daemon
	e      *env
	name   string
	url    string // the embedded URL, under the name the tests use
	stderr *syncBuffer
	// contract checks every answer of the daemon's API against the
	// OpenAPI document the daemon serves. Requests go through Client()
	// (Do uses it), so that none escapes the check.
	contract *apicheck.Transport
	breaches *contractBreaches
}

// contractBreaches collects the answers that broke the OpenAPI document;
// the test fails with them when the daemon stops. It keeps the first
// maxBreaches and counts the rest: a test polling a deployment would
// otherwise repeat one breach hundreds of times. Safe for concurrent use.
type contractBreaches struct {
	mu      sync.Mutex
	errs    []error
	dropped int
}

const maxBreaches = 10

func (b *contractBreaches) add(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) == maxBreaches {
		b.dropped++
		return
	}
	b.errs = append(b.errs, err)
}

// report fails t with the breaches, if any.
func (b *contractBreaches) report(t *testing.T, daemon string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, err := range b.errs {
		t.Errorf("deployd %s broke its OpenAPI document: %v", daemon, err)
	}
	if b.dropped > 0 {
		t.Errorf("deployd %s broke its OpenAPI document %d more times", daemon, b.dropped)
	}
}

// launch starts deployd with config and returns without waiting for it to
// be ready; extraEnv ("K=V") is added to its environment. The process is
// stopped (SIGTERM, then SIGKILL) at cleanup and its log is shown if the
// test failed.
func (e *env) launch(name, config string, extraEnv ...string) *daemon {
	e.t.Helper()
	return e.launchAt(name, config, "", extraEnv...)
}

// launchAt is launch on the API address listen ("" for a free port).
func (e *env) launchAt(name, config, listen string, extraEnv ...string) *daemon {
	e.t.Helper()
	env := []string{tokenEnv + "=" + e.token, viewerTokenEnv + "=" + e.viewer, webhookSecretEnv + "=" + e.webhookSecret}
	if e.notifyURL != "" {
		env = append(env, notifyURLEnv+"="+e.notifyURL, notifySecretEnv+"="+e.notifySecret)
	}
	if e.notifyURL2 != "" {
		env = append(env, notifyURL2Env+"="+e.notifyURL2)
	}
	d := &daemon{e: e, name: name, stderr: &syncBuffer{}, breaches: &contractBreaches{}}
	d.contract = &apicheck.Transport{Base: &http.Transport{Proxy: nil}, Token: e.viewer, Report: d.breaches.add}
	var err error
	d.Daemon, err = lab.LaunchDaemon(lab.DaemonOptions{
		Bin: cmp.Or(e.bin, deploydBin), Config: config, Env: append(env, extraEnv...),
		Output: d.stderr, StopTimeout: daemonStopTimeout, Transport: d.contract, Listen: listen,
	})
	if err != nil {
		e.t.Fatalf("start deployd: %v", err)
	}
	d.url = d.URL
	e.t.Cleanup(func() {
		d.stop()
		d.breaches.report(e.t, d.name)
		log := d.stderr.String()
		// The daemon is built with -race when the tests are: a race it
		// reports is a failure of this test, not noise in a log.
		if strings.Contains(log, "WARNING: DATA RACE") {
			e.t.Errorf("deployd %s reported a data race", d.name)
		}
		for what, secret := range map[string]string{"the API token": e.token, "the viewer token": e.viewer, "the webhook secret": e.webhookSecret, "the notification secret": e.notifySecret} {
			if strings.Contains(log, secret) {
				e.t.Errorf("deployd %s logged %s", d.name, what)
				log = strings.ReplaceAll(log, secret, "<secret>")
			}
		}
		if e.t.Failed() {
			e.t.Logf("deployd %s log:\n%s", d.name, log)
		}
	})
	return d
}

// startDaemon launches deployd (with extraEnv, see launch) and waits until
// /healthz answers.
func (e *env) startDaemon(name, config string, extraEnv ...string) *daemon {
	e.t.Helper()
	return e.startDaemonAt(name, config, "", extraEnv...)
}

// startDaemonAt is startDaemon on the API address listen ("" for a free
// port).
func (e *env) startDaemonAt(name, config, listen string, extraEnv ...string) *daemon {
	e.t.Helper()
	d := e.launchAt(name, config, listen, extraEnv...)
	if err := d.WaitHealthy(context.Background(), daemonStartTimeout); err != nil {
		if errors.Is(err, lab.ErrDaemonExited) {
			e.t.Fatalf("deployd %s exited at start (%v):\n%s", name, d.ExitErr(), d.stderr.String())
		}
		e.t.Fatalf("deployd %s not answering /healthz after %s:\n%s", name, daemonStartTimeout, d.stderr.String())
	}
	return d
}

// stop ends the daemon gracefully, killing it if it lingers. Safe to call
// more than once and after the process is gone.
func (d *daemon) stop() {
	if err := d.Stop(); errors.Is(err, lab.ErrDaemonKilled) {
		d.e.t.Errorf("deployd %s still running %s after SIGTERM; killing it", d.name, daemonStopTimeout)
	} else if err != nil {
		d.e.t.Errorf("stop deployd %s: %v", d.name, err)
	}
}

// kill9 kills the daemon with SIGKILL and waits until it is reaped.
func (d *daemon) kill9() {
	d.e.t.Helper()
	if err := d.Kill9(); err != nil {
		d.e.t.Fatalf("kill -9 deployd %s: %v", d.name, err)
	}
}

// waitExit waits up to timeout for the process to end and returns its
// exit code.
func (d *daemon) waitExit(timeout time.Duration) int {
	d.e.t.Helper()
	code, err := d.Wait(timeout)
	if errors.Is(err, lab.ErrDaemonStillRunning) {
		d.e.t.Fatalf("deployd %s still running after %s", d.name, timeout)
	}
	if err != nil {
		d.e.t.Fatalf("deployd %s: wait: %v", d.name, err)
	}
	return code
}

// request does an API call with the test's token (or the given one) and
// returns the status and body.
func (d *daemon) request(method, path string, body any, token string) (int, []byte) {
	d.e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	status, b, err := d.Do(ctx, method, path, body, token)
	if err != nil {
		d.e.t.Fatalf("%v", err)
	}
	return status, b
}

// apiError is the API's error JSON.
type apiError struct {
	Error        string `json:"error"`
	Code         string `json:"code"`
	DeploymentID string `json:"deployment_id"`
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, b, err)
	}
	return v
}

// deploy asks for image and returns the accepted deployment.
func (d *daemon) deploy(image string) api.Deployment {
	d.e.t.Helper()
	status, b := d.request(http.MethodPost, "/api/v1/services/"+d.e.svc+"/deployments",
		map[string]string{"image": image, "on_behalf_of": "e2e-run"}, d.e.token)
	if status != http.StatusAccepted {
		d.e.t.Fatalf("deploy %s: status = %d, want %d; body %s", image, status, http.StatusAccepted, b)
	}
	return decode[api.Deployment](d.e.t, b)
}

// rollback asks for a rollback and returns the accepted deployment.
func (d *daemon) rollback() api.Deployment {
	d.e.t.Helper()
	status, b := d.request(http.MethodPost, "/api/v1/services/"+d.e.svc+"/rollback", nil, d.e.token)
	if status != http.StatusAccepted {
		d.e.t.Fatalf("rollback: status = %d, want %d; body %s", status, http.StatusAccepted, b)
	}
	return decode[api.Deployment](d.e.t, b)
}

func (d *daemon) deployment(id string) api.Deployment {
	d.e.t.Helper()
	status, b := d.request(http.MethodGet, "/api/v1/deployments/"+id, nil, d.e.token)
	if status != http.StatusOK {
		d.e.t.Fatalf("GET deployment %s: status = %d, want 200; body %s", id, status, b)
	}
	return decode[api.Deployment](d.e.t, b)
}

func (d *daemon) service() api.Service {
	d.e.t.Helper()
	status, b := d.request(http.MethodGet, "/api/v1/services/"+d.e.svc, nil, d.e.token)
	if status != http.StatusOK {
		d.e.t.Fatalf("GET service: status = %d, want 200; body %s", status, b)
	}
	return decode[api.Service](d.e.t, b)
}

// waitDeployment polls a deployment until it reaches a final status.
func (d *daemon) waitDeployment(id string) api.Deployment {
	d.e.t.Helper()
	return d.waitFor(id, "a final status", func(dep api.Deployment) bool { return dep.Status.Done() })
}

// waitStep polls a deployment until its step name is running.
func (d *daemon) waitStep(id, name string) api.Deployment {
	d.e.t.Helper()
	return d.waitFor(id, "step "+name+" running", func(dep api.Deployment) bool {
		if dep.Status.Done() {
			d.e.t.Fatalf("deployment %s ended (%s: %s) before step %s ran", id, dep.Status, dep.Error, name)
		}
		s := lastStep(dep)
		return s != nil && s.Name == name && s.Status == controller.StepRunning
	})
}

func (d *daemon) waitFor(id, what string, ok func(api.Deployment) bool) api.Deployment {
	d.e.t.Helper()
	deadline := time.Now().Add(deploymentTimeout)
	for {
		dep := d.deployment(id)
		if ok(dep) {
			return dep
		}
		if time.Now().After(deadline) {
			d.e.t.Fatalf("deployment %s: no %s after %s; now %s with steps %s", id, what, deploymentTimeout, dep.Status, stepSummary(dep))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustSucceed deploys image and fails the test unless it succeeds.
func (d *daemon) mustSucceed(image string) api.Deployment {
	d.e.t.Helper()
	dep := d.waitDeployment(d.deploy(image).ID)
	if dep.Status != controller.StatusSucceeded {
		d.e.t.Fatalf("deploy %s: status = %s (%s), want succeeded; steps %s", image, dep.Status, dep.Error, stepSummary(dep))
	}
	return dep
}

func lastStep(d api.Deployment) *api.Step {
	if len(d.Steps) == 0 {
		return nil
	}
	return &d.Steps[len(d.Steps)-1]
}

func findStep(d api.Deployment, name string) *api.Step {
	for i := range d.Steps {
		if d.Steps[i].Name == name {
			return &d.Steps[i]
		}
	}
	return nil
}

func stepSummary(d api.Deployment) string {
	parts := make([]string, 0, len(d.Steps))
	for _, s := range d.Steps {
		parts = append(parts, fmt.Sprintf("%s=%s(%s)", s.Name, s.Status, s.Message))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// appAnswer is what the demo app says at GET /.
type appAnswer struct {
	Version string `json:"version"`
	Color   string `json:"color"`
}

// viaNginx does GET / through the test's nginx on a fresh connection.
func (e *env) viaNginx() (appAnswer, error) {
	status, body, err := testenv.Get(context.Background(), e.ng.URL+"/")
	if err != nil {
		return appAnswer{}, err
	}
	if status != http.StatusOK {
		return appAnswer{}, fmt.Errorf("GET / through nginx: status %d, body %q", status, body)
	}
	var a appAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		return appAnswer{}, fmt.Errorf("GET / through nginx: body %q: %w", body, err)
	}
	return a, nil
}

// assertServes checks nginx answers version/color, a few times in a row
// so that every replica behind it is likely asked.
func (e *env) assertServes(version, color string) {
	e.t.Helper()
	for range 4 {
		got, err := e.viaNginx()
		if err != nil {
			e.t.Fatalf("nginx: %v", err)
		}
		if got.Version != version || got.Color != color {
			e.t.Fatalf("nginx answers version %q color %q, want %q %q", got.Version, got.Color, version, color)
		}
	}
}

func (e *env) upstreamPath() string { return filepath.Join(e.ng.UpstreamDir, e.svc+".conf") }

func (e *env) upstream() []byte {
	e.t.Helper()
	b, err := os.ReadFile(e.upstreamPath())
	if err != nil {
		e.t.Fatalf("read upstream: %v", err)
	}
	return b
}

// ctr is a container of the service as the engine reports it.
type ctr struct {
	Name    string
	State   string
	Labels  map[string]string
	Address string // 127.0.0.1:<published port>, when running
}

// containers lists the service's containers, running or not, by name.
func (e *env) containers() []ctr {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	list, err := e.cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", "deployd.service="+e.svc)),
	})
	if err != nil {
		e.t.Fatalf("list containers: %v", err)
	}
	out := make([]ctr, 0, len(list))
	for _, c := range list {
		x := ctr{State: c.State, Labels: c.Labels}
		if len(c.Names) > 0 {
			x.Name = strings.TrimPrefix(c.Names[0], "/")
		}
		for _, p := range c.Ports {
			if p.PrivatePort == 8000 && p.PublicPort != 0 {
				x.Address = "127.0.0.1:" + strconv.Itoa(int(p.PublicPort))
			}
		}
		out = append(out, x)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// colorContainers returns the service's containers of one color.
func (e *env) colorContainers(color string) []ctr {
	e.t.Helper()
	var out []ctr
	for _, c := range e.containers() {
		if c.Labels["deployd.color"] == color {
			out = append(out, c)
		}
	}
	return out
}

// ofDeployment returns the service's containers labelled with deployment id.
func (e *env) ofDeployment(id string) []ctr {
	e.t.Helper()
	var out []ctr
	for _, c := range e.containers() {
		if c.Labels["deployd.deployment"] == id {
			out = append(out, c)
		}
	}
	return out
}

// replicaName is the container name deployd gives replica n of color
// created by deployment dep.
func (e *env) replicaName(color string, dep string, n int) string {
	return fmt.Sprintf("%s-%s-%s-%d", e.svc, color, dep[strings.LastIndexByte(dep, '-')+1:], n)
}

// assertRunning checks color has exactly n running containers named
// <svc>-<color>-<dep's short id>-1..n, all labelled for deployment dep.
func (e *env) assertRunning(color string, n int, dep string) []ctr {
	e.t.Helper()
	cs := e.colorContainers(color)
	if len(cs) != n {
		e.t.Fatalf("%s containers = %d (%v), want %d", color, len(cs), cs, n)
	}
	for i, c := range cs {
		want := e.replicaName(color, dep, i+1)
		if c.Name != want {
			e.t.Errorf("container %d name = %q, want %q", i, c.Name, want)
		}
		if c.State != "running" {
			e.t.Errorf("container %s state = %q, want running", c.Name, c.State)
		}
		for k, v := range map[string]string{"deployd.managed": "true", "deployd.service": e.svc, "deployd.color": color, "deployd.deployment": dep} {
			if c.Labels[k] != v {
				e.t.Errorf("container %s label %s = %q, want %q", c.Name, k, c.Labels[k], v)
			}
		}
	}
	if e.t.Failed() {
		e.t.FailNow()
	}
	return cs
}

// assertUpstreamIs checks the upstream file names exactly the addresses
// of cs (in switch mode: the switch, which the caller checks serves cs
// with assertServes).
func (e *env) assertUpstreamIs(cs []ctr) {
	e.t.Helper()
	up := string(e.upstream())
	var got []string
	for _, line := range strings.Split(up, "\n") {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) >= 2 && f[0] == "server" {
			got = append(got, strings.TrimSuffix(f[1], ";"))
		}
	}
	want := e.wantUpstream(cs)
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		e.t.Fatalf("upstream servers = %v, want %v; file:\n%s", got, want, up)
	}
}

// wantUpstream is what the upstream file should name when cs serve: their
// addresses in reload mode, the traffic switch in switch mode.
func (e *env) wantUpstream(cs []ctr) []string {
	if e.switchMode {
		return []string{e.switchAddr}
	}
	var want []string
	for _, c := range cs {
		want = append(want, c.Address)
	}
	return want
}

// nginxWorkers returns the PIDs of the nginx master's children, read from
// /proc; a reload replaces them.
func (e *env) nginxWorkers() []int {
	e.t.Helper()
	master, err := e.ng.PID()
	if err != nil {
		e.t.Fatalf("nginx master: %v", err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		e.t.Fatalf("read /proc: %v", err)
	}
	var pids []int
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// The command name may hold spaces and parens; fields after the
		// last ')' are state, ppid, ...
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 2 && f[1] == strconv.Itoa(master) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// elapsedUnder fails the test when took exceeds limit.
func elapsedUnder(t *testing.T, what string, took, limit time.Duration) {
	t.Helper()
	if took > limit {
		t.Fatalf("%s took %s, want under %s", what, took.Round(time.Millisecond), limit)
	}
}
