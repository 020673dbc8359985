package main

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/distribution/reference"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/notify"
)

// Config is deployd's configuration file. Build one with LoadConfig (or
// DefaultConfig and Validate when constructing it in code).
type Config struct {
	Listen          string                   `yaml:"listen"`
	DataDir         string                   `yaml:"data_dir"`
	LogFormat       string                   `yaml:"log_format"`
	ShutdownTimeout time.Duration            `yaml:"shutdown_timeout"`
	Auth            AuthConfig               `yaml:"auth"`
	Docker          DockerConfig             `yaml:"docker"`
	Nginx           NginxConfig              `yaml:"nginx"`
	Web             WebConfig                `yaml:"web"`
	Services        map[string]ServiceConfig `yaml:"services"`
	Watch           WatchConfig              `yaml:"watch"`
	Reconcile       ReconcileConfig          `yaml:"reconcile"`
	Retention       RetentionConfig          `yaml:"retention"`
	Metrics         MetricsConfig            `yaml:"metrics"`
	Notify          []NotifyConfig           `yaml:"notify"`

	// origins maps a field path to where its value came from
	// ("deployd.yml:12", "env DEPLOYD_LISTEN") so that Validate can point
	// at it. Nil for a Config built in code.
	origins map[string]string
}

// WebConfig tunes the status page's login sessions.
type WebConfig struct {
	// SessionTTL is how long a login lasts.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// SecureCookies marks the session cookie Secure even when deployd
	// itself serves plain HTTP, as it does behind a TLS-terminating nginx.
	// Requests that arrive over TLS always get Secure cookies.
	SecureCookies bool `yaml:"secure_cookies"`
}

// AuthConfig lists the API tokens and where the webhook secret lives. With
// no tokens the API refuses every request except /healthz; with no webhook
// secret POST /hooks/deploy refuses every delivery.
type AuthConfig struct {
	Tokens []TokenConfig `yaml:"tokens"`
	// WebhookSecretEnv and WebhookSecretFile name where the HMAC secret of
	// signed webhook deliveries lives; at most one is set.
	WebhookSecretEnv  string `yaml:"webhook_secret_env"`
	WebhookSecretFile string `yaml:"webhook_secret_file"`
}

// Roles, weakest first; each includes the rights of those before it.
const (
	RoleViewer   = "viewer"
	RoleDeployer = "deployer"
	RoleOperator = "operator"
)

// TokenConfig names an API token and where its secret lives. The secret
// itself is never in the file: exactly one of TokenEnv and TokenFile is set.
type TokenConfig struct {
	Name      string `yaml:"name"`
	Role      string `yaml:"role"`
	TokenEnv  string `yaml:"token_env"`
	TokenFile string `yaml:"token_file"`
}

// DockerConfig says how to reach the Docker engine.
type DockerConfig struct {
	// Host is a Docker host URL; empty means DOCKER_HOST, else the local
	// socket.
	Host string `yaml:"host"`
}

// Nginx modes.
const (
	NginxModeExec   = "exec"
	NginxModeDocker = "docker"
)

// NginxConfig says where upstream files go and how nginx is tested and
// reloaded: with local commands (exec) or inside a container (docker).
type NginxConfig struct {
	Mode                 string        `yaml:"mode"`
	UpstreamDir          string        `yaml:"upstream_dir"`
	TestCommand          []string      `yaml:"test_command"`
	ReloadCommand        []string      `yaml:"reload_command"`
	PIDFile              string        `yaml:"pid_file"`
	Container            string        `yaml:"container"`
	Template             string        `yaml:"template"`
	ReloadConfirmTimeout time.Duration `yaml:"reload_confirm_timeout"`
}

// WatchConfig is the watchdog: how often the active colors are probed and
// how many failed rounds in a row make one unhealthy. Bake uses the same
// rules.
type WatchConfig struct {
	Interval           time.Duration `yaml:"interval"`
	UnhealthyThreshold int           `yaml:"unhealthy_threshold"`
}

// ReconcileConfig is how often the store, Docker and the upstream files are
// compared and repaired.
type ReconcileConfig struct {
	Interval time.Duration `yaml:"interval"`
	// OnContainerExit also runs a service's pass as soon as Docker reports
	// one of its containers died, instead of at the next interval.
	OnContainerExit bool `yaml:"on_container_exit"`
}

// RetentionConfig bounds the old images and stopped containers kept per
// service, besides the active and standby ones.
type RetentionConfig struct {
	Images   int           `yaml:"images"`
	Interval time.Duration `yaml:"interval"`
}

// MetricsConfig is GET /metrics.
type MetricsConfig struct {
	// Public serves metrics without a token, for a Prometheus that cannot
	// send one; the metrics name services and images.
	Public bool `yaml:"public"`
}

// Notification target types.
const (
	NotifyTypeWebhook = notify.TypeWebhook
	NotifyTypeSlack   = notify.TypeSlack
)

// NotifyConfig is one notification target. Its URL and secret never sit in
// the file: a Slack webhook's URL is itself a secret.
type NotifyConfig struct {
	Name       string   `yaml:"name"`
	Type       string   `yaml:"type"`
	URLEnv     string   `yaml:"url_env"`
	URLFile    string   `yaml:"url_file"`
	SecretEnv  string   `yaml:"secret_env"`
	SecretFile string   `yaml:"secret_file"`
	Events     []string `yaml:"events"`
}

func (n *NotifyConfig) unknownKeyHint(key string) string {
	switch key {
	case "url", "webhook_url":
		return "a webhook URL is a secret and does not belong in the configuration file; name an environment variable with url_env or a file with url_file"
	case "secret", "token", "password":
		return "secrets do not belong in the configuration file; name an environment variable with secret_env or a file with secret_file"
	}
	return ""
}

// notifyEvents are the kinds a target may filter on.
var notifyEvents = []string{
	controller.NotifyDeployStarted, controller.NotifyDeploySucceeded, controller.NotifyDeployFailed,
	controller.NotifyDeployInterrupted, controller.NotifyRolledBack, controller.NotifyServiceUnhealthy, controller.NotifyRepair,
}

// ServiceConfig is one service; see controller.ServiceSpec for meanings.
type ServiceConfig struct {
	Image     string            `yaml:"image"`
	Replicas  int               `yaml:"replicas"`
	Port      int               `yaml:"port"`
	Env       map[string]string `yaml:"env"`
	EnvFile   string            `yaml:"env_file"`
	Network   string            `yaml:"network"`
	Restart   string            `yaml:"restart"`
	Pull      string            `yaml:"pull"`
	Health    HealthConfig      `yaml:"health"`
	PreDeploy PreDeployConfig   `yaml:"pre_deploy"`
	Drain     time.Duration     `yaml:"drain"`
	Standby   string            `yaml:"standby"`
	// RepositoryURL is the http(s) address of the source repository, for
	// commit links on the status page.
	RepositoryURL string `yaml:"repository_url"`
	// AllowedRefs limits webhook deploys to these git refs; empty allows
	// any ref.
	AllowedRefs []string `yaml:"allowed_refs"`
	// Bake watches a new color this long after the switch; 0 disables.
	Bake time.Duration `yaml:"bake"`
	// AutoRollback lets the watchdog roll back to a healthy standby.
	AutoRollback bool `yaml:"auto_rollback"`
}

// HealthConfig is how a replica is judged healthy.
type HealthConfig struct {
	Path             string        `yaml:"path"`
	Interval         time.Duration `yaml:"interval"`
	Timeout          time.Duration `yaml:"timeout"`
	HealthyThreshold int           `yaml:"healthy_threshold"`
	StartTimeout     time.Duration `yaml:"start_timeout"`
	ExpectStatus     int           `yaml:"expect_status"`
	ExpectBody       string        `yaml:"expect_body"`
}

// PreDeployConfig is the one-off command run before a new color starts.
type PreDeployConfig struct {
	Command []string      `yaml:"command"`
	Timeout time.Duration `yaml:"timeout"`
}

// ResolvedToken is an API token with its secret read from the environment
// or a file.
type ResolvedToken struct {
	Name, Role, Secret string
}

// Limits checked by Validate.
const (
	maxReplicas           = 20
	minTokenLength        = 16
	maxUnhealthyThreshold = 100
	maxRetainedImages     = 1000
	minNotifySecretLength = 16
)

// DefaultConfig returns the configuration used for every key the file
// leaves out.
func DefaultConfig() *Config {
	return &Config{
		Listen:          "127.0.0.1:7400",
		DataDir:         "./data",
		LogFormat:       "json",
		ShutdownTimeout: 30 * time.Second,
		Web:             WebConfig{SessionTTL: 12 * time.Hour},
		Watch:           WatchConfig{Interval: 10 * time.Second, UnhealthyThreshold: 3},
		Reconcile:       ReconcileConfig{Interval: 30 * time.Second, OnContainerExit: true},
		Retention:       RetentionConfig{Images: 5, Interval: time.Hour},
		Nginx: NginxConfig{
			Mode:                 NginxModeExec,
			UpstreamDir:          "./run/nginx/upstreams",
			TestCommand:          []string{"nginx", "-t"},
			ReloadCommand:        []string{"nginx", "-s", "reload"},
			PIDFile:              "/run/nginx.pid",
			ReloadConfirmTimeout: 5 * time.Second,
		},
	}
}

// DefaultServiceConfig returns the settings a service gets for every key
// it leaves out.
func DefaultServiceConfig() ServiceConfig {
	var s ServiceConfig
	s.applyDefaults()
	return s
}

func (s *ServiceConfig) applyDefaults() {
	*s = ServiceConfig{
		Replicas: 1,
		Restart:  "unless-stopped",
		Pull:     string(controller.PullMissing),
		Health: HealthConfig{
			Path:             "/health",
			Interval:         time.Second,
			Timeout:          2 * time.Second,
			HealthyThreshold: 2,
			StartTimeout:     60 * time.Second,
		},
		PreDeploy: PreDeployConfig{Timeout: 5 * time.Minute},
		Drain:     5 * time.Second,
		Standby:   string(controller.StandbyRunning),
	}
}

func (a *AuthConfig) unknownKeyHint(key string) string {
	switch key {
	case "webhook_secret", "webhook_token":
		return "secrets do not belong in the configuration file; name an environment variable with webhook_secret_env or a file with webhook_secret_file"
	}
	return secretKeyHint(key)
}

func (t *TokenConfig) unknownKeyHint(key string) string {
	return secretKeyHint(key)
}

func secretKeyHint(key string) string {
	switch key {
	case "token", "secret", "password":
		return "secrets do not belong in the configuration file; name an environment variable with token_env or a file with token_file"
	}
	return ""
}

// ConfigPath returns the configuration file to load: the --config flag's
// value, else DEPLOYD_CONFIG.
func ConfigPath(flagValue string, getenv func(string) string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if p := getenv("DEPLOYD_CONFIG"); p != "" {
		return p, nil
	}
	return "", errors.New("no configuration file: pass --config PATH or set DEPLOYD_CONFIG")
}

// LoadConfig reads the configuration file at path, fills in defaults,
// resolves relative paths against the file's directory, applies the
// DEPLOYD_LISTEN, DEPLOYD_DATA_DIR and DEPLOYD_LOG_FORMAT overrides read
// through getenv and validates the result. The error lists every problem
// found, each naming its field.
func LoadConfig(path string, getenv func(string) string) (*Config, error) {
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

// parseConfig is LoadConfig without the file system: name labels error
// messages, dir anchors relative paths.
func parseConfig(name string, data []byte, dir string, getenv func(string) string) (*Config, error) {
	c := DefaultConfig()
	lines, err := decodeStrict(name, data, c)
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
	return w
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validator collects problems, each located by its field path.
type validator struct {
	origins map[string]string
	errs    []error
}

func (v *validator) addf(path, format string, args ...any) {
	v.errs = append(v.errs, &fieldError{Origin: v.origin(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// origin returns where path, or failing that its closest written parent,
// came from: a missing services.web.image is best pointed at services.web.
func (v *validator) origin(path string) string {
	for p := path; p != ""; {
		if o, ok := v.origins[p]; ok {
			return o
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return ""
}

func (v *validator) positive(path string, d time.Duration) {
	if d <= 0 {
		v.addf(path, "must be greater than 0, got %s", d)
	}
}

func (v *validator) oneOf(path, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	last := len(allowed) - 1
	list := strings.Join(allowed[:last], ", ") + " or " + allowed[last]
	v.addf(path, "must be %s, got %q", list, got)
}

// Validate reports every problem in c, joined, each naming its field. It
// does not touch the file system or the environment.
func (c *Config) Validate() error {
	v := &validator{origins: c.origins}

	if host, port, err := net.SplitHostPort(c.Listen); err != nil {
		v.addf("listen", "must be host:port, got %q", c.Listen)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		v.addf("listen", "invalid port %q", port)
	} else if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		v.addf("listen", "invalid host %q", host)
	}
	if c.DataDir == "" {
		v.addf("data_dir", "is required")
	}
	v.oneOf("log_format", c.LogFormat, "json", "text")
	v.positive("shutdown_timeout", c.ShutdownTimeout)

	c.validateAuth(v)
	if c.Web.SessionTTL < time.Minute || c.Web.SessionTTL > 30*24*time.Hour {
		v.addf("web.session_ttl", "must be between 1m and 720h, got %s", c.Web.SessionTTL)
	}
	c.validateDocker(v)
	c.validateNginx(v)
	c.validateJobs(v)
	c.validateNotify(v)

	if len(c.Services) == 0 {
		v.addf("services", "at least one service is required")
	}
	for _, name := range c.serviceNames() {
		c.Services[name].validate(v, joinKey("services", name), name)
	}
	return errors.Join(v.errs...)
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)

func validHostname(h string) bool { return hostnameRE.MatchString(h) }

func (c *Config) validateAuth(v *validator) {
	names := map[string]int{}
	for i, t := range c.Auth.Tokens {
		p := fmt.Sprintf("auth.tokens[%d]", i)
		if t.Name == "" {
			v.addf(p+".name", "is required")
		} else if first, dup := names[t.Name]; dup {
			v.addf(p+".name", "duplicate token name %q (also auth.tokens[%d])", t.Name, first)
		} else {
			names[t.Name] = i
		}
		v.oneOf(p+".role", t.Role, RoleViewer, RoleDeployer, RoleOperator)
		switch {
		case t.TokenEnv == "" && t.TokenFile == "":
			v.addf(p, "one of token_env or token_file is required")
		case t.TokenEnv != "" && t.TokenFile != "":
			v.addf(p, "set token_env or token_file, not both")
		case t.TokenEnv != "" && !envNameRE.MatchString(t.TokenEnv):
			v.addf(p+".token_env", "invalid environment variable name %q", t.TokenEnv)
		}
	}
	a := c.Auth
	switch {
	case a.WebhookSecretEnv != "" && a.WebhookSecretFile != "":
		v.addf("auth", "set webhook_secret_env or webhook_secret_file, not both")
	case a.WebhookSecretEnv != "" && !envNameRE.MatchString(a.WebhookSecretEnv):
		v.addf("auth.webhook_secret_env", "invalid environment variable name %q", a.WebhookSecretEnv)
	}
}

func (c *Config) validateDocker(v *validator) {
	if c.Docker.Host == "" {
		return
	}
	u, err := url.Parse(c.Docker.Host)
	if err != nil {
		v.addf("docker.host", "invalid URL %q", c.Docker.Host)
		return
	}
	switch u.Scheme {
	case "unix", "tcp", "http", "https", "ssh", "npipe":
	default:
		v.addf("docker.host", "must be a unix://, tcp://, ssh:// or npipe:// URL, got %q", c.Docker.Host)
	}
}

func (c *Config) validateNginx(v *validator) {
	n := c.Nginx
	v.oneOf("nginx.mode", n.Mode, NginxModeExec, NginxModeDocker)
	if n.UpstreamDir == "" {
		v.addf("nginx.upstream_dir", "is required")
	}
	switch n.Mode {
	case NginxModeExec:
		validCommand(v, "nginx.test_command", n.TestCommand)
		validCommand(v, "nginx.reload_command", n.ReloadCommand)
		if n.PIDFile == "" {
			v.addf("nginx.pid_file", "is required in exec mode (it is how a reload is confirmed)")
		}
	case NginxModeDocker:
		if n.Container == "" {
			v.addf("nginx.container", "is required in docker mode")
		}
		validCommand(v, "nginx.test_command", n.TestCommand)
		validCommand(v, "nginx.reload_command", n.ReloadCommand)
	}
	v.positive("nginx.reload_confirm_timeout", n.ReloadConfirmTimeout)
}

func (c *Config) validateJobs(v *validator) {
	v.positive("watch.interval", c.Watch.Interval)
	if t := c.Watch.UnhealthyThreshold; t < 1 || t > maxUnhealthyThreshold {
		v.addf("watch.unhealthy_threshold", "must be between 1 and %d, got %d", maxUnhealthyThreshold, t)
	}
	v.positive("reconcile.interval", c.Reconcile.Interval)
	if n := c.Retention.Images; n < 0 || n > maxRetainedImages {
		v.addf("retention.images", "must be between 0 and %d, got %d", maxRetainedImages, n)
	}
	v.positive("retention.interval", c.Retention.Interval)
}

func (c *Config) validateNotify(v *validator) {
	names := map[string]int{}
	for i, n := range c.Notify {
		p := fmt.Sprintf("notify[%d]", i)
		if n.Name == "" {
			v.addf(p+".name", "is required")
		} else if first, dup := names[n.Name]; dup {
			v.addf(p+".name", "duplicate target name %q (also notify[%d])", n.Name, first)
		} else {
			names[n.Name] = i
		}
		v.oneOf(p+".type", n.Type, NotifyTypeWebhook, NotifyTypeSlack)
		switch {
		case n.URLEnv == "" && n.URLFile == "":
			v.addf(p, "one of url_env or url_file is required")
		case n.URLEnv != "" && n.URLFile != "":
			v.addf(p, "set url_env or url_file, not both")
		case n.URLEnv != "" && !envNameRE.MatchString(n.URLEnv):
			v.addf(p+".url_env", "invalid environment variable name %q", n.URLEnv)
		}
		switch {
		case n.SecretEnv != "" && n.SecretFile != "":
			v.addf(p, "set secret_env or secret_file, not both")
		case n.SecretEnv != "" && !envNameRE.MatchString(n.SecretEnv):
			v.addf(p+".secret_env", "invalid environment variable name %q", n.SecretEnv)
		}
		for j, e := range n.Events {
			known := false
			for _, k := range notifyEvents {
				known = known || e == k
			}
			if !known {
				v.addf(fmt.Sprintf("%s.events[%d]", p, j), "must be one of %s, got %q", strings.Join(notifyEvents, ", "), e)
			}
		}
	}
}

func validCommand(v *validator, path string, cmd []string) {
	if len(cmd) == 0 {
		v.addf(path, "must not be empty")
		return
	}
	if cmd[0] == "" {
		v.addf(path+"[0]", "the program name must not be empty")
	}
}

func (s ServiceConfig) validate(v *validator, p, name string) {
	if !controller.ValidServiceName(name) {
		v.addf(p, "invalid service name %q: use lowercase letters, digits, '-' and '_', starting with a letter, at most 63 characters", name)
	}
	validImage(v, p+".image", s.Image)
	if s.Replicas < 1 || s.Replicas > maxReplicas {
		v.addf(p+".replicas", "must be between 1 and %d, got %d", maxReplicas, s.Replicas)
	}
	if s.Port < 1 || s.Port > 65535 {
		v.addf(p+".port", "must be between 1 and 65535, got %d", s.Port)
	}
	for _, k := range sortedKeys(s.Env) {
		if !envNameRE.MatchString(k) {
			v.addf(joinKey(p+".env", k), "invalid environment variable name %q", k)
		}
	}
	if _, err := controller.ParseRestartPolicy(s.Restart); err != nil {
		v.addf(p+".restart", "must be no, always, unless-stopped or on-failure[:N], got %q", s.Restart)
	}
	v.oneOf(p+".pull", s.Pull, string(controller.PullAlways), string(controller.PullMissing), string(controller.PullNever))

	h := s.Health
	if !strings.HasPrefix(h.Path, "/") {
		v.addf(p+".health.path", "must start with /, got %q", h.Path)
	}
	v.positive(p+".health.interval", h.Interval)
	v.positive(p+".health.timeout", h.Timeout)
	if h.HealthyThreshold < 1 {
		v.addf(p+".health.healthy_threshold", "must be at least 1, got %d", h.HealthyThreshold)
	}
	v.positive(p+".health.start_timeout", h.StartTimeout)
	if h.ExpectStatus != 0 && (h.ExpectStatus < 100 || h.ExpectStatus > 599) {
		v.addf(p+".health.expect_status", "must be 0 (any 2xx) or an HTTP status 100-599, got %d", h.ExpectStatus)
	}

	for i, arg := range s.PreDeploy.Command {
		if i == 0 && arg == "" {
			v.addf(p+".pre_deploy.command[0]", "the program name must not be empty")
		}
	}
	v.positive(p+".pre_deploy.timeout", s.PreDeploy.Timeout)
	if s.Drain < 0 {
		v.addf(p+".drain", "must not be negative, got %s", s.Drain)
	}
	if s.Bake < 0 {
		v.addf(p+".bake", "must not be negative, got %s", s.Bake)
	}
	v.oneOf(p+".standby", s.Standby, string(controller.StandbyRunning), string(controller.StandbyStopped))
	if s.RepositoryURL != "" {
		if u, err := url.Parse(s.RepositoryURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			v.addf(p+".repository_url", "must be an http or https URL without credentials, got %q", s.RepositoryURL)
		}
	}
	for i, ref := range s.AllowedRefs {
		if msg := badGitRef(ref); msg != "" {
			v.addf(fmt.Sprintf("%s.allowed_refs[%d]", p, i), "%s, got %q", msg, ref)
		}
	}
}

// badGitRef says what is wrong with ref as a full git ref name, or "" when
// nothing is. Refs are compared exactly with what a webhook sends, so a
// short name ("main") or a pattern would silently never match.
func badGitRef(ref string) string {
	switch {
	case !strings.HasPrefix(ref, "refs/") || len(ref) == len("refs/"):
		return "must be a full git ref such as refs/heads/main or refs/tags/v1"
	case strings.IndexFunc(ref, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return "must not contain whitespace or control characters"
	case strings.ContainsAny(ref, "~^:?*[\\"):
		return "must be an exact ref, without patterns or the characters ~ ^ : ? * [ \\"
	case strings.Contains(ref, "..") || strings.Contains(ref, "//") || strings.HasSuffix(ref, "/") ||
		strings.HasSuffix(ref, ".lock") || strings.Contains(ref, "@{"):
		return "is not a valid git ref name"
	}
	return ""
}

// validImage accepts a repository name only: a deploy names the tag or
// digest, and the configured repository is what keeps a deploy request from
// running an arbitrary image.
func validImage(v *validator, path, image string) {
	if image == "" {
		v.addf(path, "is required")
		return
	}
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		v.addf(path, "invalid repository name %q: %v", image, err)
		return
	}
	if _, ok := named.(reference.Tagged); ok {
		v.addf(path, "must be a repository without a tag, got %q (a deploy names the tag)", image)
	}
	if _, ok := named.(reference.Digested); ok {
		v.addf(path, "must be a repository without a digest, got %q (a deploy names the digest)", image)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (c *Config) serviceNames() []string { return sortedKeys(c.Services) }

// ServiceSpecs returns the services as the controller wants them, sorted by
// name. The specs share nothing with c.
func (c *Config) ServiceSpecs() []controller.ServiceSpec {
	specs := make([]controller.ServiceSpec, 0, len(c.Services))
	for _, name := range c.serviceNames() {
		s := c.Services[name]
		var env map[string]string
		if s.Env != nil {
			env = make(map[string]string, len(s.Env))
			for k, val := range s.Env {
				env[k] = val
			}
		}
		specs = append(specs, controller.ServiceSpec{
			Name:          name,
			Image:         s.Image,
			Replicas:      s.Replicas,
			Port:          s.Port,
			Env:           env,
			EnvFile:       s.EnvFile,
			Network:       s.Network,
			RestartPolicy: s.Restart,
			Pull:          controller.PullPolicy(s.Pull),
			Health: controller.HealthSpec{
				Path:             s.Health.Path,
				Interval:         s.Health.Interval,
				Timeout:          s.Health.Timeout,
				HealthyThreshold: s.Health.HealthyThreshold,
				StartTimeout:     s.Health.StartTimeout,
				ExpectStatus:     s.Health.ExpectStatus,
				ExpectBody:       s.Health.ExpectBody,
			},
			PreDeploy: controller.PreDeploySpec{
				Command: append([]string(nil), s.PreDeploy.Command...),
				Timeout: s.PreDeploy.Timeout,
			},
			Drain:         s.Drain,
			Standby:       controller.StandbyMode(s.Standby),
			AllowedRefs:   append([]string(nil), s.AllowedRefs...),
			RepositoryURL: strings.TrimRight(s.RepositoryURL, "/"),
			Bake:          s.Bake,
			AutoRollback:  s.AutoRollback,
		})
	}
	return specs
}

// WatchSpec is the watchdog's and bake's configuration for the controller.
func (c *Config) WatchSpec() controller.WatchSpec {
	return controller.WatchSpec{UnhealthyThreshold: c.Watch.UnhealthyThreshold, Interval: c.Watch.Interval}
}

// RetentionSpec is the retention configuration for the controller.
func (c *Config) RetentionSpec() controller.RetentionSpec {
	return controller.RetentionSpec{Images: c.Retention.Images}
}

// ResolveNotifyTargets reads every notification target's URL and optional
// signing secret through getenv or readFile. It refuses missing or empty
// values, URLs that are not http(s) with a host, and secrets under 16
// bytes. Errors name the target and never contain a URL or a secret (a
// Slack URL's path is its credential). Files lose their trailing newline.
func (c *Config) ResolveNotifyTargets(getenv func(string) string, readFile func(string) ([]byte, error)) ([]notify.Target, error) {
	var errs []error
	out := make([]notify.Target, 0, len(c.Notify))
	for i, n := range c.Notify {
		label := fmt.Sprintf("notify[%d] (%s)", i, n.Name)
		rawURL, err := readSecretValue(getenv, readFile, n.URLEnv, n.URLFile, "url")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
			continue
		}
		if u, err := url.Parse(string(rawURL)); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: the url is not an http or https URL with a host", label))
			continue
		}
		var secret []byte
		if n.SecretEnv != "" || n.SecretFile != "" {
			secret, err = readSecretValue(getenv, readFile, n.SecretEnv, n.SecretFile, "secret")
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", label, err))
				continue
			}
			if len(secret) < minNotifySecretLength {
				errs = append(errs, fmt.Errorf("%s: secret is shorter than %d bytes; generate a longer one (e.g. openssl rand -hex 32)", label, minNotifySecretLength))
				continue
			}
		}
		out = append(out, notify.Target{
			Name: n.Name, Type: n.Type, URL: string(rawURL), Secret: secret,
			Events: append([]string(nil), n.Events...),
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// readSecretValue reads what key_env or key_file names; exactly one is
// expected to be set. Errors never contain the value.
func readSecretValue(getenv func(string) string, readFile func(string) ([]byte, error), env, file, key string) ([]byte, error) {
	switch {
	case env != "" && file != "":
		return nil, fmt.Errorf("set %s_env or %s_file, not both", key, key)
	case env != "":
		v := getenv(env)
		if v == "" {
			return nil, fmt.Errorf("%s_env: environment variable %s is empty or unset", key, env)
		}
		return []byte(v), nil
	case file != "":
		b, err := readFile(file)
		if err != nil {
			// A PathError names the file, never its content.
			return nil, fmt.Errorf("read %s_file: %w", key, err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("%s_file %s is empty", key, file)
		}
		return b, nil
	}
	return nil, fmt.Errorf("neither %s_env nor %s_file is set", key, key)
}

// ResolveTokens reads every token's secret through getenv or readFile. It
// refuses missing, empty, short (under 16 bytes) and shared secrets, naming
// the token in each error and never the secret. A token file's trailing
// newline is dropped, since editors and `echo` add one.
func (c *Config) ResolveTokens(getenv func(string) string, readFile func(string) ([]byte, error)) ([]ResolvedToken, error) {
	var errs []error
	out := make([]ResolvedToken, 0, len(c.Auth.Tokens))
	owner := map[string]string{}
	for i, t := range c.Auth.Tokens {
		label := fmt.Sprintf("auth.tokens[%d] (%s)", i, t.Name)
		var secret string
		switch {
		case t.TokenEnv != "":
			secret = getenv(t.TokenEnv)
			if secret == "" {
				errs = append(errs, fmt.Errorf("%s: environment variable %s is empty or unset", label, t.TokenEnv))
				continue
			}
		case t.TokenFile != "":
			b, err := readFile(t.TokenFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: read token_file: %w", label, err))
				continue
			}
			secret = string(bytes.TrimRight(b, "\r\n"))
			if secret == "" {
				errs = append(errs, fmt.Errorf("%s: token_file %s is empty", label, t.TokenFile))
				continue
			}
		default:
			errs = append(errs, fmt.Errorf("%s: neither token_env nor token_file is set", label))
			continue
		}
		if len(secret) < minTokenLength {
			errs = append(errs, fmt.Errorf("%s: secret is shorter than %d bytes; generate a longer one (e.g. openssl rand -hex 32)", label, minTokenLength))
			continue
		}
		if first, dup := owner[secret]; dup {
			errs = append(errs, fmt.Errorf("%s: has the same secret as %s; give every token its own", label, first))
			continue
		}
		owner[secret] = label
		out = append(out, ResolvedToken{Name: t.Name, Role: t.Role, Secret: secret})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Limits on the webhook secret.
const minWebhookSecretLength = 16

func (c *Config) webhookConfigured() bool {
	return c.Auth.WebhookSecretEnv != "" || c.Auth.WebhookSecretFile != ""
}

// ResolveWebhookSecret reads the webhook's HMAC secret through getenv or
// readFile; nil, nil when none is configured. It refuses an empty, unreadable
// or short (under 16 bytes) secret, and one equal to an API token's: a
// signing secret lives in CI where a token would be worth more, so one leak
// must not give away both. Tokens are resolved to compare, so their errors
// are returned too. Errors never contain a secret. A file's trailing newline
// is dropped, as for token files.
func (c *Config) ResolveWebhookSecret(getenv func(string) string, readFile func(string) ([]byte, error)) ([]byte, error) {
	var secret []byte
	switch a := c.Auth; {
	case a.WebhookSecretEnv != "" && a.WebhookSecretFile != "":
		return nil, errors.New("auth: set webhook_secret_env or webhook_secret_file, not both")
	case a.WebhookSecretEnv != "":
		v := getenv(a.WebhookSecretEnv)
		if v == "" {
			return nil, fmt.Errorf("auth.webhook_secret_env: environment variable %s is empty or unset", a.WebhookSecretEnv)
		}
		secret = []byte(v)
	case a.WebhookSecretFile != "":
		b, err := readFile(a.WebhookSecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.webhook_secret_file: %w", err)
		}
		secret = bytes.TrimRight(b, "\r\n")
		if len(secret) == 0 {
			return nil, fmt.Errorf("auth.webhook_secret_file: %s is empty", a.WebhookSecretFile)
		}
	default:
		return nil, nil
	}
	if len(secret) < minWebhookSecretLength {
		return nil, fmt.Errorf("auth: webhook secret is shorter than %d bytes; generate a longer one (e.g. openssl rand -hex 32)", minWebhookSecretLength)
	}
	tokens, err := c.ResolveTokens(getenv, readFile)
	if err != nil {
		return nil, fmt.Errorf("resolve tokens to compare with the webhook secret: %w", err)
	}
	for i, t := range tokens {
		if subtle.ConstantTimeCompare([]byte(t.Secret), secret) == 1 {
			return nil, fmt.Errorf("auth: webhook secret is the same as the secret of auth.tokens[%d] (%s); give the webhook its own", i, t.Name)
		}
	}
	return secret, nil
}
