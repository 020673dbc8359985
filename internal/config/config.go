// Package config is deployd's configuration file: its types and
// defaults, loading and validation, and the secrets it names.
package config

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/notify"
)

// Config is deployd's configuration file. Build one with Load (or
// Default and Validate when constructing it in code).
//
// Only keys whose zero value is also their default are omitempty, so that
// WriteFile writes every other value out and the file reads back as the
// Config it came from.
type Config struct {
	Listen string `yaml:"listen"`
	// TrustedProxies are the peers (nginx in front of the API) whose
	// X-Forwarded-For names the client, for rate limits and the audit
	// trail's addresses; empty trusts no one.
	TrustedProxies  []string           `yaml:"trusted_proxies,omitempty"`
	DataDir         string             `yaml:"data_dir"`
	LogFormat       string             `yaml:"log_format"`
	ShutdownTimeout time.Duration      `yaml:"shutdown_timeout"`
	Auth            Auth               `yaml:"auth"`
	Docker          Docker             `yaml:"docker"`
	Nginx           Nginx              `yaml:"nginx"`
	Traffic         Traffic            `yaml:"traffic"`
	Web             Web                `yaml:"web"`
	Events          Events             `yaml:"events"`
	Services        map[string]Service `yaml:"services"`
	Watch           Watch              `yaml:"watch"`
	Reconcile       Reconcile          `yaml:"reconcile"`
	Retention       Retention          `yaml:"retention"`
	Audit           Audit              `yaml:"audit"`
	Metrics         Metrics            `yaml:"metrics"`
	Notify          []NotifyTarget     `yaml:"notify,omitempty"`

	// origins maps a field path to where its value came from
	// ("deployd.yml:12", "env DEPLOYD_LISTEN") so that Validate can point
	// at it. Nil for a Config built in code.
	origins map[string]string
}

// Web tunes the status page's login sessions.
type Web struct {
	// SessionTTL is how long a login lasts.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// SecureCookies marks the session cookie Secure even when deployd
	// itself serves plain HTTP, as it does behind a TLS-terminating nginx.
	// Requests that arrive over TLS always get Secure cookies.
	SecureCookies bool `yaml:"secure_cookies,omitempty"`
	// SessionsPerToken caps the live sessions of one token; a login past
	// it ends that token's oldest session, never another token's.
	SessionsPerToken int `yaml:"sessions_per_token"`
	// LoginsPerMinute caps the successful logins of one token in any
	// minute; each one is a write to the store.
	LoginsPerMinute int `yaml:"logins_per_minute"`
}

// Events caps the API's server-sent event streams, each an open
// connection and a goroutine for as long as the client stays.
type Events struct {
	// MaxStreams is the most streams open at once, all tokens together.
	MaxStreams int `yaml:"max_streams"`
	// MaxStreamsPerToken is the most one token may hold open at once.
	MaxStreamsPerToken int `yaml:"max_streams_per_token"`
}

// Auth lists the API tokens and where the webhook secret lives. With
// no tokens the API refuses every request except /healthz; with no webhook
// secret POST /hooks/deploy refuses every delivery.
type Auth struct {
	Tokens []Token `yaml:"tokens,omitempty"`
	// WebhookSecretEnv and WebhookSecretFile name where the HMAC secret of
	// signed webhook deliveries lives; at most one is set.
	WebhookSecretEnv  string `yaml:"webhook_secret_env,omitempty"`
	WebhookSecretFile string `yaml:"webhook_secret_file,omitempty"`
	// WebhookAllowUnstamped accepts deliveries without X-Deployd-Timestamp,
	// signed over the body alone. Off by default: such a request can be
	// replayed once the replay cache has forgotten it.
	WebhookAllowUnstamped bool `yaml:"webhook_allow_unstamped,omitempty"`
}

// Roles, weakest first; each includes the rights of those before it.
const (
	RoleViewer   = "viewer"
	RoleDeployer = "deployer"
	RoleOperator = "operator"
)

// Token names an API token and where its secret lives. The secret
// itself is never in the file: exactly one of TokenEnv and TokenFile is set.
type Token struct {
	Name      string `yaml:"name"`
	Role      string `yaml:"role"`
	TokenEnv  string `yaml:"token_env,omitempty"`
	TokenFile string `yaml:"token_file,omitempty"`
}

// Docker says how to reach the Docker engine.
type Docker struct {
	// Host is a Docker host URL; empty means DOCKER_HOST, else the local
	// socket.
	Host string `yaml:"host,omitempty"`
}

// TrafficPause bounds every pause (POST /api/v1/services/{name}/pause):
// how long one request is held and how many are held at once; past either
// a request gets a 503 with Retry-After. A pause may ask for less.
type TrafficPause struct {
	MaxHold time.Duration `yaml:"max_hold"`
	MaxHeld int           `yaml:"max_held"`
}

// Nginx modes.
const (
	NginxModeExec   = "exec"
	NginxModeDocker = "docker"
	// NginxModeStatic is nginx configured by its operator to proxy to the
	// traffic switch (the edges of a cluster, where deployd cannot reach
	// nginx): deployd writes no upstream file and reloads nothing, and
	// traffic moves inside the switch only. Switch mode only.
	NginxModeStatic = "static"
)

// Nginx says where upstream files go and how nginx is tested and
// reloaded: with local commands (exec) or inside a container (docker);
// in static mode none of it is used.
type Nginx struct {
	Mode          string   `yaml:"mode"`
	UpstreamDir   string   `yaml:"upstream_dir"`
	TestCommand   []string `yaml:"test_command"`
	ReloadCommand []string `yaml:"reload_command"`
	// PIDFile is the master's pid file in exec mode; empty means the one
	// nginx's own configuration names, read at startup (see
	// nginxconf.ConfiguredPIDFile).
	PIDFile              string        `yaml:"pid_file,omitempty"`
	Container            string        `yaml:"container,omitempty"`
	Template             string        `yaml:"template,omitempty"`
	ReloadConfirmTimeout time.Duration `yaml:"reload_confirm_timeout"`
}

// NginxStatic reports whether nginx is the operator's (nginx.mode
// static): deployd neither writes its upstreams nor reloads it.
func (c *Config) NginxStatic() bool { return c.Nginx.Mode == NginxModeStatic }

// Watch is the watchdog: how often the active colors are probed and
// how many failed rounds in a row make one unhealthy. Bake uses the same
// rules.
type Watch struct {
	Interval           time.Duration `yaml:"interval"`
	UnhealthyThreshold int           `yaml:"unhealthy_threshold"`
	// MaxErrorRate, when set, also fails a round of an active color whose
	// share of 5xx answers over the traffic switch's window is above it,
	// once the window holds MinRequests requests; 0 is off.
	MaxErrorRate ErrorRate `yaml:"max_error_rate,omitempty"`
	MinRequests  int       `yaml:"min_requests"`
}

// Reconcile is how often the store, Docker and the upstream files are
// compared and repaired.
type Reconcile struct {
	Interval time.Duration `yaml:"interval"`
	// OnContainerExit also runs a service's pass as soon as Docker reports
	// one of its containers died, instead of at the next interval.
	OnContainerExit bool `yaml:"on_container_exit"`
}

// Retention bounds the old images and stopped containers kept per
// service, besides the active and standby ones.
type Retention struct {
	Images   int           `yaml:"images"`
	Interval time.Duration `yaml:"interval"`
}

// Audit is the audit trail.
type Audit struct {
	Retention AuditRetention `yaml:"retention"`
}

// AuditRetention bounds the audit trail; retention.interval's job drops
// entries older than MaxAge and, beyond the newest MaxEntries, the oldest.
// 0 turns a bound off.
type AuditRetention struct {
	MaxAge     time.Duration `yaml:"max_age"`
	MaxEntries int           `yaml:"max_entries"`
}

// Metrics is GET /metrics.
type Metrics struct {
	// Public serves metrics without a token, for a Prometheus that cannot
	// send one; the metrics name services and images.
	Public bool `yaml:"public,omitempty"`
}

// Notification target types.
const (
	NotifyTypeWebhook = notify.TypeWebhook
	NotifyTypeSlack   = notify.TypeSlack
)

// NotifyTarget is one notification target. Its URL and secret never sit in
// the file: a Slack webhook's URL is itself a secret.
type NotifyTarget struct {
	Name       string   `yaml:"name"`
	Type       string   `yaml:"type"`
	URLEnv     string   `yaml:"url_env,omitempty"`
	URLFile    string   `yaml:"url_file,omitempty"`
	SecretEnv  string   `yaml:"secret_env,omitempty"`
	SecretFile string   `yaml:"secret_file,omitempty"`
	Events     []string `yaml:"events,omitempty"`
}

// notifyEvents are the kinds a target may filter on.
var notifyEvents = []string{
	controller.NotifyDeployStarted, controller.NotifyDeploySucceeded, controller.NotifyDeployFailed,
	controller.NotifyDeployInterrupted, controller.NotifyRolledBack, controller.NotifyServiceUnhealthy, controller.NotifyRepair,
}

// Service is one service; see controller.ServiceSpec for meanings.
type Service struct {
	Image     string            `yaml:"image"`
	Replicas  int               `yaml:"replicas"`
	Port      int               `yaml:"port"`
	Env       map[string]string `yaml:"env,omitempty"`
	EnvFile   string            `yaml:"env_file,omitempty"`
	Network   string            `yaml:"network,omitempty"`
	Restart   string            `yaml:"restart"`
	Pull      string            `yaml:"pull"`
	Health    Health            `yaml:"health"`
	PreDeploy PreDeploy         `yaml:"pre_deploy"`
	// Backup, when present, makes a backup right before pre_deploy runs;
	// see Backup.
	Backup  *Backup       `yaml:"backup,omitempty"`
	Drain   time.Duration `yaml:"drain"`
	Standby string        `yaml:"standby"`
	// StandbyDuringDeploy is keep or remove (see
	// controller.DeployStandbyMode).
	StandbyDuringDeploy string `yaml:"standby_during_deploy"`
	// RepositoryURL is the http(s) address of the source repository, for
	// commit links on the status page.
	RepositoryURL string `yaml:"repository_url,omitempty"`
	// AllowedRefs limits webhook deploys to these git refs; empty allows
	// any ref.
	AllowedRefs []string `yaml:"allowed_refs,omitempty"`
	// Bake watches a new color this long after the switch; 0 disables.
	Bake time.Duration `yaml:"bake,omitempty"`
	// BakeMaxErrorRate, when set, fails the bake as soon as the new
	// color's share of 5xx answers is above it, once the traffic switch's
	// window holds BakeMinRequests requests; 0 is off.
	BakeMaxErrorRate ErrorRate `yaml:"bake_max_error_rate,omitempty"`
	BakeMinRequests  int       `yaml:"bake_min_requests"`
	// AutoRollback lets the watchdog roll back to a healthy standby.
	AutoRollback bool `yaml:"auto_rollback,omitempty"`
	// Switch is where the traffic switch serves the service in
	// traffic.mode switch.
	Switch ServiceSwitch `yaml:"switch,omitempty"`
	// AllowedTags, when set, is a regular expression every deployed tag
	// must match in full; references with a digest always pass.
	AllowedTags string `yaml:"allowed_tags,omitempty"`

	// What the service's containers (and its pre-deploy one-offs) may use
	// and do; see controller.ContainerLimits. Memory, CPUs and PidsLimit 0
	// are no limit.
	Memory          ByteSize `yaml:"memory,omitempty"`
	CPUs            float64  `yaml:"cpus,omitempty"`
	PidsLimit       int      `yaml:"pids_limit"`
	CapDrop         []string `yaml:"cap_drop"`
	CapAdd          []string `yaml:"cap_add,omitempty"`
	NoNewPrivileges bool     `yaml:"no_new_privileges"`
	ReadOnly        bool     `yaml:"read_only,omitempty"`
	User            string   `yaml:"user,omitempty"`

	// Schema reads the service's schema state around pre_deploy, so that
	// rollbacks know which migrations the standby never ran against.
	Schema Schema `yaml:"schema"`

	// Runtime is docker (the local engine) or swarm; Placement and
	// Reservations apply to swarm only.
	Runtime      string       `yaml:"runtime"`
	Placement    Placement    `yaml:"placement,omitempty"`
	Reservations Reservations `yaml:"reservations,omitempty"`
}

// Schema is the command that prints the applied migrations (see
// controller.ParseSchemaState) and which of them old code runs against.
type Schema struct {
	Command []string      `yaml:"command,omitempty"`
	Timeout time.Duration `yaml:"timeout"`
	// Compatible is a regular expression (unanchored) matching the names
	// of expand-only migrations; empty means none is.
	Compatible string `yaml:"compatible,omitempty"`
}

// Health is how a replica is judged healthy.
type Health struct {
	Path             string        `yaml:"path"`
	Interval         time.Duration `yaml:"interval"`
	Timeout          time.Duration `yaml:"timeout"`
	HealthyThreshold int           `yaml:"healthy_threshold"`
	StartTimeout     time.Duration `yaml:"start_timeout"`
	ExpectStatus     int           `yaml:"expect_status,omitempty"`
	ExpectBody       string        `yaml:"expect_body,omitempty"`
}

// PreDeploy is the one-off command run before a new color starts.
type PreDeploy struct {
	Command []string      `yaml:"command,omitempty"`
	Timeout time.Duration `yaml:"timeout"`
}

// Backup is the database backup made before each deploy's pre_deploy (see
// controller.BackupSpec). A block written without values is a backup with
// the defaults, and an image is then required.
type Backup struct {
	// Image is a full reference, with its tag or digest, of an image that
	// holds the dump tool and sh.
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	// Env and EnvFile are the backup's environment (PGHOST, PGUSER,
	// PGPASSWORD, ...), read at each deploy like the service's own.
	Env     map[string]string `yaml:"env,omitempty"`
	EnvFile string            `yaml:"env_file,omitempty"`
	// Volume is the named Docker volume mounted at /backups.
	Volume string `yaml:"volume"`
	// Keep is how many of the service's backup files the volume keeps.
	Keep    int           `yaml:"keep"`
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultBackup returns the settings a backup block gets for every key it
// leaves out.
func DefaultBackup() Backup {
	return Backup{
		Command: controller.DefaultBackupCommand(),
		Volume:  "deployd-backups",
		Keep:    5,
		Timeout: 10 * time.Minute,
	}
}

// UnmarshalYAML decodes a backup block over DefaultBackup, as
// Service.UnmarshalYAML does for services.
func (b *Backup) UnmarshalYAML(n *yaml.Node) error {
	type plain Backup // without this method
	p := plain(DefaultBackup())
	if err := n.Decode(&p); err != nil {
		return err
	}
	*b = Backup(p)
	return nil
}

// ResolvedToken is an API token with its secret read from the environment
// or a file.
type ResolvedToken struct {
	Name, Role, Secret string
}

// Limits checked by Validate.
const (
	maxReplicas            = 20
	minTokenLength         = 16
	maxUnhealthyThreshold  = 100
	defaultMinRequests     = 20
	maxRetainedImages      = 1000
	maxAuditEntries        = 100000000
	maxPauseHeld           = 1000000
	minNotifySecretLength  = 16
	minWebhookSecretLength = 16
)

// Default returns the configuration used for every key the file
// leaves out.
func Default() *Config {
	return &Config{
		Listen:          "127.0.0.1:7400",
		DataDir:         "./data",
		LogFormat:       "json",
		ShutdownTimeout: 30 * time.Second,
		Web:             Web{SessionTTL: 12 * time.Hour, SessionsPerToken: 10, LoginsPerMinute: 10},
		Events:          Events{MaxStreams: 256, MaxStreamsPerToken: 16},
		Watch:           Watch{Interval: 10 * time.Second, UnhealthyThreshold: 3, MinRequests: defaultMinRequests},
		Reconcile:       Reconcile{Interval: 30 * time.Second, OnContainerExit: true},
		Retention:       Retention{Images: 5, Interval: time.Hour},
		Audit:           Audit{Retention: AuditRetention{MaxAge: 90 * 24 * time.Hour, MaxEntries: 100000}},
		Traffic: Traffic{
			// The benchmark and the e2e suite measure switch mode with
			// no failed request at a switch, where every nginx reload
			// resets keep-alive POSTs (README, "Performance").
			Mode:           TrafficModeSwitch,
			TrustedProxies: []string{"127.0.0.1", "::1"},
			Pause:          TrafficPause{MaxHold: controller.DefaultPauseMaxHold, MaxHeld: controller.DefaultPauseMaxHeld},
			// nginx closes an idle upstream connection after 60s by
			// default: a little more lets every idle one end on nginx's
			// side.
			Switchd: Switchd{Spawn: true, HandoffTimeout: 65 * time.Second},
		},
		Nginx: Nginx{
			Mode:                 NginxModeExec,
			UpstreamDir:          "./run/nginx/upstreams",
			TestCommand:          []string{"nginx", "-t"},
			ReloadCommand:        []string{"nginx", "-s", "reload"},
			ReloadConfirmTimeout: 5 * time.Second,
		},
	}
}

// DefaultService returns the settings a service gets for every key
// it leaves out.
func DefaultService() Service {
	return Service{
		Replicas: 1,
		Runtime:  string(controller.RuntimeDocker),
		Restart:  "unless-stopped",
		Pull:     string(controller.PullMissing),
		Health: Health{
			Path:             "/health",
			Interval:         time.Second,
			Timeout:          2 * time.Second,
			HealthyThreshold: 2,
			StartTimeout:     60 * time.Second,
		},
		PreDeploy:           PreDeploy{Timeout: 5 * time.Minute},
		Schema:              Schema{Timeout: time.Minute},
		Drain:               5 * time.Second,
		Standby:             string(controller.StandbyRunning),
		StandbyDuringDeploy: string(controller.DeployStandbyKeep),
		BakeMinRequests:     defaultMinRequests,
		PidsLimit:           defaultPidsLimit,
		CapDrop:             append([]string(nil), defaultCapDrop...),
		NoNewPrivileges:     true,
	}
}

// UnmarshalYAML decodes a service over DefaultService: yaml.v3 starts every
// map value from zero, which would lose the defaults of the keys left out.
// Explicit zeros (replicas: 0) stay, for Validate to refuse.
func (s *Service) UnmarshalYAML(n *yaml.Node) error {
	type plain Service // without this method
	p := plain(DefaultService())
	if err := n.Decode(&p); err != nil {
		return err
	}
	// cap_add: [] and a missing cap_add are the same, and WriteFile
	// leaves both out; nil keeps them equal after a round trip.
	if len(p.CapAdd) == 0 {
		p.CapAdd = nil
	}
	*s = Service(p)
	return nil
}
