package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/notify"
)

func noEnv(string) string { return "" }

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// minimal is the smallest valid configuration; bad-config cases append to it
// or replace it.
const minimal = `
services:
  web:
    image: demoapp
    port: 8000
`

func parse(t *testing.T, yml string) (*Config, error) {
	t.Helper()
	return parseConfig("config.yml", []byte(yml), "/etc/deployd", noEnv)
}

func TestLoadConfig_BadConfigsNameTheField(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want []string
	}{
		{
			name: "unknown service key",
			yml:  minimal + "    bogus: 1\n",
			want: []string{"config.yml:6: services.web.bogus: unknown key"},
		},
		{
			name: "unknown top-level key",
			yml:  "lisen: 1.2.3.4:80\n" + minimal,
			want: []string{"config.yml:1: lisen: unknown key"},
		},
		{
			name: "invalid duration",
			yml:  minimal + "    health:\n      interval: 1x\n",
			want: []string{`config.yml:7: services.web.health.interval: invalid duration "1x"`},
		},
		{
			name: "duration without unit",
			yml:  minimal + "    drain: 30\n",
			want: []string{`services.web.drain: invalid duration "30": give a unit, e.g. 30s`},
		},
		{
			name: "replicas zero",
			yml:  minimal + "    replicas: 0\n",
			want: []string{"config.yml:6: services.web.replicas: must be between 1 and 20, got 0"},
		},
		{
			name: "replicas not an integer",
			yml:  minimal + "    replicas: two\n",
			want: []string{`config.yml:6: services.web.replicas: must be an integer, got "two"`},
		},
		{
			name: "nginx mode",
			yml:  "nginx:\n  mode: kubectl\n" + minimal,
			want: []string{`config.yml:2: nginx.mode: must be exec, docker or static, got "kubectl"`},
		},
		{
			name: "token role",
			yml:  "auth:\n  tokens:\n    - name: a\n      role: admin\n      token_env: A\n" + minimal,
			want: []string{`config.yml:4: auth.tokens[0].role: must be viewer, deployer or operator, got "admin"`},
		},
		{
			name: "secret in the file",
			yml:  "auth:\n  tokens:\n    - name: a\n      role: viewer\n      token: hunter2hunter2hunter2\n" + minimal,
			want: []string{"config.yml:5: auth.tokens[0].token: secrets do not belong in the configuration file; name an environment variable with token_env or a file with token_file"},
		},
		{
			name: "secret key also refused",
			yml:  "auth:\n  tokens:\n    - name: a\n      role: viewer\n      secret: x\n" + minimal,
			want: []string{"auth.tokens[0].secret: secrets do not belong", "token_env"},
		},
		{
			name: "token needs exactly one source",
			yml:  "auth:\n  tokens:\n    - name: a\n      role: viewer\n    - name: b\n      role: viewer\n      token_env: B\n      token_file: /b\n" + minimal,
			want: []string{
				"config.yml:3: auth.tokens[0]: one of token_env or token_file is required",
				"config.yml:5: auth.tokens[1]: set token_env or token_file, not both",
			},
		},
		{
			name: "token names unique",
			yml:  "auth:\n  tokens:\n    - {name: a, role: viewer, token_env: A}\n    - {name: a, role: viewer, token_env: B}\n" + minimal,
			want: []string{`auth.tokens[1].name: duplicate token name "a" (also auth.tokens[0])`},
		},
		{
			name: "token_env must be an env name",
			yml:  "auth:\n  tokens:\n    - {name: a, role: viewer, token_env: 'A-B'}\n" + minimal,
			want: []string{`auth.tokens[0].token_env: invalid environment variable name "A-B"`},
		},
		{
			name: "duplicate key",
			yml:  minimal + "    port: 9000\n",
			want: []string{"config.yml:6: services.web.port: duplicate key (first defined on line 5)"},
		},
		{
			name: "duplicate service",
			yml:  minimal + "  web:\n    image: other\n",
			want: []string{"config.yml:6: services.web: duplicate key (first defined on line 3)"},
		},
		{
			name: "no services",
			yml:  "listen: 127.0.0.1:7400\n",
			want: []string{"services: at least one service is required"},
		},
		{
			name: "empty file",
			yml:  "",
			want: []string{"services: at least one service is required"},
		},
		{
			name: "services is a list",
			yml:  "services: [web]\n",
			want: []string{"config.yml:1: services: must be a mapping, got a list"},
		},
		{
			name: "bad service name",
			yml:  "services:\n  Web:\n    image: demoapp\n    port: 80\n",
			want: []string{`config.yml:2: services.Web: invalid service name "Web"`},
		},
		{
			name: "image with tag",
			yml:  "services:\n  web:\n    image: demoapp:v1\n    port: 80\n",
			want: []string{`config.yml:3: services.web.image: must be a repository without a tag, got "demoapp:v1"`},
		},
		{
			name: "image with digest",
			yml:  "services:\n  web:\n    image: demoapp@sha256:" + strings.Repeat("a", 64) + "\n    port: 80\n",
			want: []string{"services.web.image: must be a repository without a digest"},
		},
		{
			name: "image unparsable",
			yml:  "services:\n  web:\n    image: Demo_App\n    port: 80\n",
			want: []string{`services.web.image: invalid repository name "Demo_App"`},
		},
		{
			name: "image missing points at the service",
			yml:  "services:\n  web:\n    port: 80\n",
			want: []string{"config.yml:2: services.web.image: is required"},
		},
		{
			name: "port out of range",
			yml:  "services:\n  web:\n    image: demoapp\n    port: 70000\n",
			want: []string{"services.web.port: must be between 1 and 65535, got 70000"},
		},
		{
			name: "port missing",
			yml:  "services:\n  web:\n    image: demoapp\n",
			want: []string{"services.web.port: must be between 1 and 65535, got 0"},
		},
		{
			name: "env key invalid",
			yml:  minimal + "    env:\n      1BAD: x\n      GOOD: y\n",
			want: []string{`config.yml:7: services.web.env.1BAD: invalid environment variable name "1BAD"`},
		},
		{
			name: "odd keys are quoted in the path",
			yml:  minimal + "    env:\n      A.B: x\n",
			want: []string{`config.yml:7: services.web.env["A.B"]: invalid environment variable name "A.B"`},
		},
		{
			name: "env value not a scalar",
			yml:  minimal + "    env:\n      A: [1]\n",
			want: []string{"config.yml:7: services.web.env.A: must be a string, got a list"},
		},
		{
			name: "restart",
			yml:  minimal + "    restart: sometimes\n",
			want: []string{`services.web.restart: must be no, always, unless-stopped or on-failure[:N] with N from 1, got "sometimes"`},
		},
		{
			name: "pull",
			yml:  minimal + "    pull: maybe\n",
			want: []string{`services.web.pull: must be always, missing or never, got "maybe"`},
		},
		{
			name: "standby",
			yml:  minimal + "    standby: paused\n",
			want: []string{`services.web.standby: must be running or stopped, got "paused"`},
		},
		{
			name: "standby during deploy",
			yml:  minimal + "    standby_during_deploy: stop\n",
			want: []string{`services.web.standby_during_deploy: must be keep or remove, got "stop"`},
		},
		{
			name: "health path",
			yml:  minimal + "    health: {path: health}\n",
			want: []string{`services.web.health.path: must start with /, got "health"`},
		},
		{
			name: "expect_status",
			yml:  minimal + "    health: {expect_status: 42}\n",
			want: []string{"services.web.health.expect_status: must be 0 (any 2xx) or an HTTP status 100-599, got 42"},
		},
		{
			name: "health is a string",
			yml:  minimal + "    health: /health\n",
			want: []string{`services.web.health: must be a mapping, got "/health"`},
		},
		{
			name: "schema with a bad pattern and timeout",
			yml:  minimal + "    schema: {command: [show], timeout: 0s, compatible: '(add'}\n",
			want: []string{"services.web.schema.timeout: must be greater than 0, got 0s",
				"services.web.schema.compatible: invalid regular expression"},
		},
		{
			name: "schema compatible without a command",
			yml:  minimal + "    schema: {compatible: '_add_'}\n",
			want: []string{"services.web.schema.compatible: needs schema.command"},
		},
		{
			name: "pre_deploy command as a string",
			yml:  minimal + "    pre_deploy:\n      command: ./manage.py migrate\n",
			want: []string{`config.yml:7: services.web.pre_deploy.command: must be a list of strings`},
		},
		{
			name: "negative timeout",
			yml:  minimal + "    pre_deploy: {timeout: -1s}\n",
			want: []string{"services.web.pre_deploy.timeout: must be greater than 0, got -1s"},
		},
		{
			name: "docker mode needs container",
			yml:  "nginx:\n  mode: docker\n" + minimal,
			want: []string{"nginx.container: is required in docker mode"},
		},
		{
			name: "exec mode needs commands",
			yml:  "nginx:\n  test_command: []\n  reload_command: []\n" + minimal,
			want: []string{"config.yml:2: nginx.test_command: must not be empty", "config.yml:3: nginx.reload_command: must not be empty"},
		},
		{
			name: "log format",
			yml:  "log_format: xml\n" + minimal,
			want: []string{`config.yml:1: log_format: must be json or text, got "xml"`},
		},
		{
			name: "listen",
			yml:  "listen: 7400\n" + minimal,
			want: []string{`config.yml:1: listen: must be host:port, got "7400"`},
		},
		{
			name: "docker host scheme",
			yml:  "docker:\n  host: /var/run/docker.sock\n" + minimal,
			want: []string{"docker.host: must be a unix://"},
		},
		{
			name: "bool-typed field mismatch via list item",
			yml:  "auth:\n  tokens: {name: a}\n" + minimal,
			want: []string{"config.yml:2: auth.tokens: must be a list, got a mapping"},
		},
		{
			name: "merge keys refused",
			yml:  "x: &h {path: /up}\nservices:\n  web:\n    image: demoapp\n    port: 80\n    health:\n      <<: *h\n",
			want: []string{"x: unknown key", "services.web.health: merge keys (<<) are not supported"},
		},
		{
			name: "second document",
			yml:  minimal + "---\nlisten: :80\n",
			want: []string{"config.yml:6: a configuration file holds one YAML document, found a second"},
		},
		{
			name: "syntax error",
			yml:  "services:\n  web: [\n",
			want: []string{"config.yml: yaml: line"},
		},
		{
			name: "both webhook secret sources",
			yml:  "auth:\n  webhook_secret_env: HOOK\n  webhook_secret_file: /hook\n" + minimal,
			want: []string{"config.yml:1: auth: set webhook_secret_env or webhook_secret_file, not both"},
		},
		{
			name: "webhook_secret_env must be an env name",
			yml:  "auth:\n  webhook_secret_env: 'HOOK SECRET'\n" + minimal,
			want: []string{`config.yml:2: auth.webhook_secret_env: invalid environment variable name "HOOK SECRET"`},
		},
		{
			name: "webhook secret in the file",
			yml:  "auth:\n  webhook_secret: hunter2hunter2hunter2\n" + minimal,
			want: []string{"config.yml:2: auth.webhook_secret: secrets do not belong in the configuration file; name an environment variable with webhook_secret_env"},
		},
		{
			name: "repository_url not http",
			yml:  minimal + "    repository_url: javascript:alert(1)\n",
			want: []string{`config.yml:6: services.web.repository_url: must be an http or https URL without credentials, got "javascript:alert(1)"`},
		},
		{
			name: "session ttl too short",
			yml:  "web:\n  session_ttl: 10s\n" + minimal,
			want: []string{`config.yml:2: web.session_ttl: must be between 1m and 720h, got 10s`},
		},
		{
			name: "no sessions per token",
			yml:  "web:\n  sessions_per_token: 0\n" + minimal,
			want: []string{`config.yml:2: web.sessions_per_token: must be between 1 and 1000, got 0`},
		},
		{
			name: "no logins per minute",
			yml:  "web:\n  logins_per_minute: 0\n" + minimal,
			want: []string{`config.yml:2: web.logins_per_minute: must be between 1 and 1000, got 0`},
		},
		{
			name: "more streams per token than in all",
			yml:  "events:\n  max_streams: 10\n  max_streams_per_token: 11\n" + minimal,
			want: []string{`config.yml:3: events.max_streams_per_token: must not exceed events.max_streams (10), got 11`},
		},
		{
			name: "allowed_refs short branch name",
			yml:  minimal + "    allowed_refs: [main]\n",
			want: []string{`config.yml:6: services.web.allowed_refs[0]: must be a full git ref such as refs/heads/main or refs/tags/v1, got "main"`},
		},
		{
			name: "allowed_refs bad refs",
			yml: minimal + "    allowed_refs:\n      - refs/heads/main\n      - 'refs/heads/my branch'\n      - refs/heads/*\n" +
				"      - refs/heads/a..b\n      - refs/\n      - refs/heads/x/\n",
			want: []string{
				`services.web.allowed_refs[1]: must not contain whitespace or control characters, got "refs/heads/my branch"`,
				`services.web.allowed_refs[2]: must be an exact ref, without patterns`,
				`services.web.allowed_refs[3]: is not a valid git ref name, got "refs/heads/a..b"`,
				`services.web.allowed_refs[4]: must be a full git ref`,
				`services.web.allowed_refs[5]: is not a valid git ref name`,
			},
		},
		{
			name: "allowed_refs must be a list",
			yml:  minimal + "    allowed_refs: refs/heads/main\n",
			want: []string{`services.web.allowed_refs: must be a list of strings`},
		},
		{
			name: "replicas not a whole number",
			yml:  minimal + "    replicas: 1.5\n",
			want: []string{`config.yml:6: services.web.replicas: must be an integer, got "1.5"`},
		},
		{
			name: "yes is not a boolean",
			yml:  minimal + "    auto_rollback: yes\n",
			want: []string{`config.yml:6: services.web.auto_rollback: must be true or false, got "yes"`},
		},
		{
			name: "unknown key under a service's health",
			yml:  minimal + "    health:\n      intervall: 1s\n",
			want: []string{"config.yml:7: services.web.health.intervall: unknown key"},
		},
		{
			name: "duplicate key inside a flow mapping",
			yml:  "services:\n  web: {image: demoapp, port: 1, port: 2}\n",
			want: []string{"config.yml:2: services.web.port: duplicate key (first defined on line 2)"},
		},
		{
			name: "pid_file left out with a test command nginx -T cannot be derived from",
			yml:  "nginx:\n  test_command: [/usr/local/bin/check-nginx]\n" + minimal,
			want: []string{`nginx.pid_file: is required when nginx.test_command has no "-t"`},
		},
		{
			name: "memory without a number",
			yml:  minimal + "    memory: lots\n",
			want: []string{`config.yml:6: services.web.memory: invalid memory size "lots"`},
		},
		{
			name: "memory below the engine's minimum",
			yml:  minimal + "    memory: 1m\n",
			want: []string{"services.web.memory: must be at least 6m"},
		},
		{
			name: "cpus too small",
			yml:  minimal + "    cpus: 0.001\n",
			want: []string{"services.web.cpus: must be at least 0.01"},
		},
		{
			name: "negative pids limit",
			yml:  minimal + "    pids_limit: -1\n",
			want: []string{"services.web.pids_limit: must not be negative"},
		},
		{
			name: "capability with a space",
			yml:  minimal + "    cap_add: [NET_RAW, \"SYS ADMIN\"]\n",
			want: []string{`services.web.cap_add[1]: must be ALL or a capability name such as NET_RAW, got "SYS ADMIN"`},
		},
		{
			name: "lowercase capability",
			yml:  minimal + "    cap_drop: [net_raw]\n",
			want: []string{`services.web.cap_drop[0]: must be ALL or a capability name`},
		},
		{
			name: "user with a shell metacharacter",
			yml:  minimal + "    user: \"root;id\"\n",
			want: []string{`services.web.user: must be a user or uid`},
		},
		{
			name: "allowed_tags not a regexp",
			yml:  minimal + "    allowed_tags: \"v(\"\n",
			want: []string{"config.yml:6: services.web.allowed_tags: invalid regular expression"},
		},
		{
			name: "backup without image",
			yml:  minimal + "    backup:\n",
			want: []string{"services.web.backup.image: is required"},
		},
		{
			name: "backup image without tag",
			yml:  minimal + "    backup: {image: postgres}\n",
			want: []string{`config.yml:6: services.web.backup.image: must name a tag or a digest, got "postgres"`},
		},
		{
			name: "backup unknown key",
			yml:  minimal + "    backup:\n      image: postgres:16\n      keep_last: 3\n",
			want: []string{"config.yml:8: services.web.backup.keep_last: unknown key"},
		},
		{
			name: "backup keep zero",
			yml:  minimal + "    backup: {image: postgres:16, keep: 0}\n",
			want: []string{"services.web.backup.keep: must be between 1 and 1000, got 0"},
		},
		{
			name: "backup volume is a path",
			yml:  minimal + "    backup: {image: postgres:16, volume: /srv/backups}\n",
			want: []string{`services.web.backup.volume: must be the name of a Docker volume, not a path, got "/srv/backups"`},
		},
		{
			name: "backup volume bad name",
			yml:  minimal + "    backup: {image: postgres:16, volume: \"my backups\"}\n",
			want: []string{`services.web.backup.volume: must be a Docker volume name`},
		},
		{
			name: "backup timeout without unit",
			yml:  minimal + "    backup: {image: postgres:16, timeout: 600}\n",
			want: []string{`services.web.backup.timeout: invalid duration "600": give a unit`},
		},
		{
			name: "backup negative timeout",
			yml:  minimal + "    backup: {image: postgres:16, timeout: -1m}\n",
			want: []string{"services.web.backup.timeout: must be greater than 0, got -1m0s"},
		},
		{
			name: "backup empty command",
			yml:  minimal + "    backup: {image: postgres:16, command: []}\n",
			want: []string{"services.web.backup.command: must not be empty"},
		},
		{
			name: "backup env name",
			yml:  minimal + "    backup: {image: postgres:16, env: {\"PG HOST\": db}}\n",
			want: []string{`services.web.backup.env["PG HOST"]: invalid environment variable name`},
		},
		{
			name: "unknown runtime",
			yml:  minimal + "    runtime: k8s\n",
			want: []string{`config.yml:6: services.web.runtime: must be docker or swarm, got "k8s"`},
		},
		{
			name: "placement on the docker runtime",
			yml:  minimal + "    placement: {constraints: [node.role==worker]}\n    reservations: {cpus: 1}\n",
			want: []string{`services.web.placement: applies to runtime: swarm only (runtime is "docker")`,
				`services.web.reservations: applies to runtime: swarm only`},
		},
		{
			name: "swarm without a network",
			yml:  minimal + "    runtime: swarm\n",
			want: []string{"services.web.network: is required with runtime: swarm"},
		},
		{
			name: "swarm with a backup",
			yml:  minimal + "    runtime: swarm\n    network: app\n    backup: {image: postgres:16}\n",
			want: []string{"services.web.backup: is not supported with runtime: swarm yet"},
		},
		{
			name: "swarm placement and reservations",
			yml: minimal + "    runtime: swarm\n    network: app\n    placement:\n      constraints: [\"role=worker\", \"node.labels.zone==a\"]\n" +
				"      spread: [zone]\n    reservations: {memory: 1k, cpus: 0.001}\n",
			want: []string{`services.web.placement.constraints[0]: must be <attribute>==<value>`, `services.web.placement.spread[0]: must be a node attribute`,
				"services.web.reservations.memory: must be at least 6m", "services.web.reservations.cpus: must be at least 0.01"},
		},
		{
			name: "all problems reported at once",
			yml:  "log_format: xml\nnginx: {mode: k8s}\nservices:\n  web: {image: demoapp, port: 0, replicas: 99}\n",
			want: []string{"log_format:", "nginx.mode:", "services.web.port:", "services.web.replicas: must be between 1 and 20, got 99"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.yml)
			if err == nil {
				t.Fatalf("parse succeeded with %+v, want an error containing %q", c, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error = %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfig_SecretValueNeverInError(t *testing.T) {
	const secret = "s3cr3t-value-that-must-not-leak"
	_, err := parse(t, "auth:\n  tokens:\n    - name: a\n      role: viewer\n      token: "+secret+"\n"+minimal)
	if err == nil {
		t.Fatal("parse succeeded, want an error for an inline token")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error %q contains the secret", err)
	}
}

func TestLoadConfig_FullExample(t *testing.T) {
	path := filepath.Join("testdata", "full.yml")
	c, err := Load(path, noEnv)
	if err != nil {
		t.Fatalf("LoadConfig(%s): %v", path, err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	in := func(p string) string { return filepath.Join(abs, p) }

	worker := DefaultService()
	worker.Image = "registry.example.com/team/worker"
	worker.Port = 9000
	worker.Pull = "always"
	worker.Standby = "stopped"
	worker.AllowedRefs = []string{"refs/heads/main", "refs/heads/release"}
	worker.Runtime, worker.Network = "swarm", "worker-net"
	worker.Placement = Placement{Constraints: []string{"node.role==worker", "node.labels.zone!=c"}, Spread: []string{"node.labels.zone"}}
	worker.Reservations = Reservations{Memory: 128 << 20, CPUs: 0.25}

	want := &Config{
		Listen:          "127.0.0.1:7400",
		TrustedProxies:  []string{"127.0.0.1"},
		DataDir:         in("data"),
		LogFormat:       "json",
		ShutdownTimeout: 30 * time.Second,
		Auth: Auth{Tokens: []Token{
			{Name: "admin", Role: "operator", TokenEnv: "DEPLOYD_ADMIN_TOKEN"},
			{Name: "ci", Role: "deployer", TokenFile: in("secrets/ci_token")},
		}, WebhookSecretEnv: "DEPLOYD_WEBHOOK_SECRET"},
		Web:    Web{SessionTTL: 12 * time.Hour, SessionsPerToken: 10, LoginsPerMinute: 10},
		Events: Events{MaxStreams: 256, MaxStreamsPerToken: 16},
		Traffic: Traffic{Mode: "reload", TrustedProxies: []string{"127.0.0.1", "::1"}, Pause: TrafficPause{MaxHold: 30 * time.Second, MaxHeld: 1000},
			Switchd: Switchd{Spawn: true, HandoffTimeout: 65 * time.Second,
				ControlListen: ":7600", ControlTokenFile: in("secrets/switchd_token")}},
		Watch:     Watch{Interval: 10 * time.Second, UnhealthyThreshold: 3, MaxErrorRate: 0.05, MinRequests: 20},
		Reconcile: Reconcile{Interval: 30 * time.Second, OnContainerExit: true},
		Retention: Retention{Images: 5, Interval: time.Hour},
		Audit:     Audit{Retention: AuditRetention{MaxAge: 2160 * time.Hour, MaxEntries: 100000}},
		Notify: []NotifyTarget{
			{Name: "chat", Type: "slack", URLEnv: "DEPLOYD_SLACK_URL"},
			{Name: "audit-log", Type: "webhook", URLFile: in("secrets/notify_url"), SecretFile: in("secrets/notify_secret"),
				Events: []string{"deploy_failed", "rolled_back", "service_unhealthy", "repair"}},
			{Name: "ops", Type: "webhook", URLEnv: "DEPLOYD_OPS_HOOK_URL", SecretEnv: "DEPLOYD_OPS_HOOK_SECRET"},
		},
		Nginx: Nginx{
			Mode:                 "exec",
			UpstreamDir:          in("run/nginx/upstreams"),
			TestCommand:          []string{"nginx", "-t"},
			ReloadCommand:        []string{"nginx", "-s", "reload"},
			ReloadConfirmTimeout: 5 * time.Second,
		},
		Services: map[string]Service{
			"web": {
				Image:    "demoapp",
				Replicas: 2,
				Port:     8000,
				Env:      map[string]string{"APP_ENV": "production", "WORKERS": "4"},
				EnvFile:  in("web.env"),
				Network:  "deployd",
				Runtime:  "docker",
				Restart:  "unless-stopped",
				Pull:     "missing",
				Health: Health{
					Path: "/health", Interval: time.Second, Timeout: 2 * time.Second,
					HealthyThreshold: 2, StartTimeout: time.Minute,
				},
				PreDeploy: PreDeploy{
					Command: []string{"python", "manage.py", "migrate", "--noinput"},
					Timeout: 5 * time.Minute,
				},
				Backup: &Backup{
					Image:   "deployd-postgres:16",
					Command: []string{"sh", "-c", `pg_dump --format=custom --file "$DEPLOYD_BACKUP_FILE"`},
					Env:     map[string]string{"PGHOST": "db", "PGUSER": "app", "PGDATABASE": "app"},
					EnvFile: in("backup.env"),
					Volume:  "deployd-backups",
					Keep:    3,
					Timeout: 10 * time.Minute,
				},
				Schema: Schema{
					Command:    []string{"python", "manage.py", "showmigrations", "--plan"},
					Timeout:    time.Minute,
					Compatible: `^[a-z_]+\.\d{4}_add_`,
				},
				Drain:               5 * time.Second,
				Standby:             "running",
				StandbyDuringDeploy: "keep",
				AllowedRefs:         []string{"refs/heads/main"}, RepositoryURL: "https://github.com/example/web",
				Bake: 2 * time.Minute, BakeMaxErrorRate: 0.02, BakeMinRequests: 20, AutoRollback: true,
				Switch:      ServiceSwitch{Listen: "127.0.0.1:7501"},
				AllowedTags: `v[0-9]+(\.[0-9]+)*`,
				Memory:      512 << 20, CPUs: 1.5, PidsLimit: 4096, CapDrop: []string{"NET_RAW"},
				NoNewPrivileges: true,
			},
			"worker": worker,
		},
	}
	c.origins = nil
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("config =\n%+v\nwant\n%+v", c, want)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings = %q, want none", w)
	}
}

func TestLoadConfig_ContainerLimits(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want controller.ContainerLimits
	}{
		{"defaults", "", controller.ContainerLimits{PidsLimit: 4096, CapDrop: []string{"NET_RAW"}, NoNewPrivileges: true}},
		{"everything set", "    memory: 256m\n    cpus: 0.5\n    pids_limit: 100\n    cap_drop: [ALL]\n    cap_add: [NET_BIND_SERVICE]\n" +
			"    no_new_privileges: true\n    read_only: true\n    user: \"1000:1000\"\n",
			controller.ContainerLimits{Memory: 256 << 20, NanoCPUs: 500_000_000, PidsLimit: 100, CapDrop: []string{"ALL"},
				CapAdd: []string{"NET_BIND_SERVICE"}, NoNewPrivileges: true, ReadOnly: true, User: "1000:1000"}},
		{"defaults turned off", "    pids_limit: 0\n    cap_drop: []\n    no_new_privileges: false\n",
			controller.ContainerLimits{CapDrop: []string{}}},
		{"memory in bytes and with a binary unit", "    memory: 1GiB\n", controller.ContainerLimits{Memory: 1 << 30, PidsLimit: 4096,
			CapDrop: []string{"NET_RAW"}, NoNewPrivileges: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, minimal+tt.yml)
			if err != nil {
				t.Fatal(err)
			}
			got := c.ServiceSpecs()[0].Limits
			if got.CapDrop == nil {
				got.CapDrop = []string{}
			}
			if tt.want.CapDrop == nil {
				tt.want.CapDrop = []string{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("limits = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLoadConfig_DefaultsFillEverythingLeftOut(t *testing.T) {
	c, err := parse(t, minimal)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DataDir = "/etc/deployd/data"
	want.Nginx.UpstreamDir = "/etc/deployd/run/nginx/upstreams"
	svc := DefaultService()
	svc.Image, svc.Port = "demoapp", 8000
	want.Services = map[string]Service{"web": svc}
	c.origins = nil
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("config =\n%+v\nwant\n%+v", c, want)
	}

	wantSvc := Service{
		Replicas: 1, Runtime: "docker", Restart: "unless-stopped", Pull: "missing",
		Health: Health{Path: "/health", Interval: time.Second, Timeout: 2 * time.Second,
			HealthyThreshold: 2, StartTimeout: 60 * time.Second},
		PreDeploy:           PreDeploy{Timeout: 5 * time.Minute},
		Schema:              Schema{Timeout: time.Minute},
		Drain:               5 * time.Second,
		Standby:             "running",
		StandbyDuringDeploy: "keep",
		BakeMinRequests:     20,
		PidsLimit:           4096,
		CapDrop:             []string{"NET_RAW"},
		NoNewPrivileges:     true,
	}
	if got := DefaultService(); !reflect.DeepEqual(got, wantSvc) {
		t.Errorf("DefaultServiceConfig() = %+v, want %+v", got, wantSvc)
	}
	if got := c.Warnings(); len(got) != 1 || !strings.Contains(got[0], "auth.tokens is empty") {
		t.Errorf("warnings = %q, want one about empty auth.tokens", got)
	}
}

func TestLoadConfig_KeyWithoutValueKeepsItsDefault(t *testing.T) {
	_, err := parse(t, "nginx:\n  test_command:\nservices:\n  web:\n  api:\n    image: demoapp\n    port: 80\n    drain: 0\n    health:\n")
	if err == nil {
		t.Fatal("parse succeeded, want web's missing image and port")
	}
	// web, written with no value, has the defaults: only image and port
	// are missing.
	if got := strings.Count(err.Error(), "\n") + 1; got != 2 || !strings.Contains(err.Error(), "services.web.image: is required") {
		t.Fatalf("error = %q, want exactly web's image and port", err)
	}
	c, err := parse(t, "nginx:\n  test_command:\nservices:\n  api:\n    image: demoapp\n    port: 80\n    drain: 0\n    health:\n")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Nginx.TestCommand, Default().Nginx.TestCommand; !reflect.DeepEqual(got, want) {
		t.Errorf("nginx.test_command = %q, want the default %q", got, want)
	}
	if api := c.Services["api"]; api.Drain != 0 || api.Health != DefaultService().Health {
		t.Errorf("api drain, health = %s, %+v; want 0 and the default health", api.Drain, api.Health)
	}
}

func TestLoadConfig_BackupDefaults(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want *Backup
	}{
		{name: "no block, no backup", yml: minimal, want: nil},
		{
			name: "image only",
			yml:  minimal + "    backup:\n      image: deployd-postgres:16\n",
			want: &Backup{Image: "deployd-postgres:16", Command: controller.DefaultBackupCommand(),
				Volume: "deployd-backups", Keep: 5, Timeout: 10 * time.Minute},
		},
		{
			name: "every key",
			yml: minimal + "    backup:\n      image: pg@sha256:" + strings.Repeat("a", 64) + "\n" +
				"      command: [pg_dumpall]\n      env_file: pg.env\n      env: {PGHOST: db}\n" +
				"      volume: web-dumps\n      keep: 2\n      timeout: 1h\n",
			want: &Backup{Image: "pg@sha256:" + strings.Repeat("a", 64), Command: []string{"pg_dumpall"},
				EnvFile: "/etc/deployd/pg.env", Env: map[string]string{"PGHOST": "db"},
				Volume: "web-dumps", Keep: 2, Timeout: time.Hour},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.yml)
			if err != nil {
				t.Fatal(err)
			}
			got := c.Services["web"].Backup
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("backup = %+v, want %+v", got, tt.want)
			}
			spec := c.ServiceSpecs()[0].Backup
			if (spec == nil) != (tt.want == nil) {
				t.Fatalf("spec backup = %+v, want one exactly when configured", spec)
			}
			if spec != nil && (spec.Image != tt.want.Image || spec.Keep != tt.want.Keep || spec.Volume != tt.want.Volume ||
				spec.EnvFile != tt.want.EnvFile || spec.Timeout != tt.want.Timeout || !reflect.DeepEqual(spec.Command, tt.want.Command)) {
				t.Errorf("spec backup = %+v, want the configured %+v", spec, tt.want)
			}
		})
	}
	if got := DefaultBackup().Command; !reflect.DeepEqual(got, []string{"sh", "-c", `pg_dump --format=custom --file "$DEPLOYD_BACKUP_FILE"`}) {
		t.Errorf("default command = %q", got)
	}
}

func TestLoadConfig_PartialSectionKeepsOtherDefaults(t *testing.T) {
	c, err := parse(t, minimal+"    health:\n      path: /up\n    pre_deploy:\n")
	if err != nil {
		t.Fatal(err)
	}
	h := c.Services["web"].Health
	if h.Path != "/up" || h.Interval != time.Second || h.HealthyThreshold != 2 {
		t.Errorf("health = %+v, want path /up with the other defaults", h)
	}
	if got, want := c.Services["web"].PreDeploy.Timeout, 5*time.Minute; got != want {
		t.Errorf("pre_deploy.timeout = %s, want %s", got, want)
	}
}

func TestLoadConfig_TopLevelXKeysHoldAnchorsForAliases(t *testing.T) {
	yml := `
x-health: &health
  path: /up
  interval: 3s
services:
  web:
    image: demoapp
    port: 8000
    health: *health
  api:
    image: demoapp
    port: 8001
    health: *health
`
	c, err := parse(t, yml)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", "api"} {
		h := c.Services[name].Health
		if h.Path != "/up" || h.Interval != 3*time.Second || h.Timeout != 2*time.Second {
			t.Errorf("%s health = %+v, want path /up, interval 3s, other defaults", name, h)
		}
	}
}

func TestLoadConfig_RelativePathsResolveAgainstConfigDir(t *testing.T) {
	dir := t.TempDir()
	yml := `
data_dir: state
nginx:
  upstream_dir: ../nginx/upstreams
  template: tmpl/upstream.conf
  pid_file: nginx.pid
auth:
  tokens:
    - {name: a, role: viewer, token_file: secrets/a}
    - {name: b, role: viewer, token_file: /abs/b}
services:
  web:
    image: demoapp
    port: 8000
    env_file: web.env
`
	path := filepath.Join(dir, "deployd.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ field, got, want string }{
		{"data_dir", c.DataDir, filepath.Join(dir, "state")},
		{"nginx.upstream_dir", c.Nginx.UpstreamDir, filepath.Join(filepath.Dir(dir), "nginx", "upstreams")},
		{"nginx.template", c.Nginx.Template, filepath.Join(dir, "tmpl", "upstream.conf")},
		{"nginx.pid_file", c.Nginx.PIDFile, filepath.Join(dir, "nginx.pid")},
		{"auth.tokens[0].token_file", c.Auth.Tokens[0].TokenFile, filepath.Join(dir, "secrets", "a")},
		{"auth.tokens[1].token_file", c.Auth.Tokens[1].TokenFile, "/abs/b"},
		{"services.web.env_file", c.Services["web"].EnvFile, filepath.Join(dir, "web.env")},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.field, tc.got, tc.want)
		}
	}
}

func TestLoadConfig_MissingFileIsNotExist(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yml"), noEnv)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestLoadConfig_EnvOverridesFile(t *testing.T) {
	env := envMap(map[string]string{
		"DEPLOYD_LISTEN":     "0.0.0.0:9999",
		"DEPLOYD_DATA_DIR":   "/var/lib/deployd",
		"DEPLOYD_LOG_FORMAT": "text",
	})
	c, err := parseConfig("config.yml", []byte("listen: 127.0.0.1:1\nlog_format: json\n"+minimal), "/etc/deployd", env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:9999" || c.DataDir != "/var/lib/deployd" || c.LogFormat != "text" {
		t.Errorf("listen, data_dir, log_format = %q, %q, %q; want the env values", c.Listen, c.DataDir, c.LogFormat)
	}
}

func TestLoadConfig_BadEnvOverrideNamesTheVariable(t *testing.T) {
	env := envMap(map[string]string{"DEPLOYD_LOG_FORMAT": "yaml"})
	_, err := parseConfig("config.yml", []byte("log_format: json\n"+minimal), "/etc/deployd", env)
	want := `env DEPLOYD_LOG_FORMAT: log_format: must be json or text, got "yaml"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
}

func TestConfigPath_FlagThenEnv(t *testing.T) {
	tests := []struct {
		flag, env, want string
		wantErr         bool
	}{
		{flag: "/a.yml", env: "/b.yml", want: "/a.yml"},
		{env: "/b.yml", want: "/b.yml"},
		{wantErr: true},
	}
	for _, tt := range tests {
		got, err := Path(tt.flag, envMap(map[string]string{"DEPLOYD_CONFIG": tt.env}))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ConfigPath(%q) with DEPLOYD_CONFIG=%q = %q, %v; want %q, error %v", tt.flag, tt.env, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestServiceSpecs_SortedAndMapped(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "full.yml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	specs := c.ServiceSpecs()
	if len(specs) != 2 || specs[0].Name != "web" || specs[1].Name != "worker" {
		t.Fatalf("spec names = %v, want [web worker]", specNames(specs))
	}
	web := specs[0]
	want := controller.ServiceSpec{
		Name:          "web",
		Image:         "demoapp",
		Replicas:      2,
		Port:          8000,
		Env:           map[string]string{"APP_ENV": "production", "WORKERS": "4"},
		EnvFile:       c.Services["web"].EnvFile,
		Network:       "deployd",
		RestartPolicy: "unless-stopped",
		Pull:          controller.PullMissing,
		Health: controller.HealthSpec{
			Path: "/health", Interval: time.Second, Timeout: 2 * time.Second,
			HealthyThreshold: 2, StartTimeout: time.Minute,
		},
		PreDeploy: controller.PreDeploySpec{
			Command: []string{"python", "manage.py", "migrate", "--noinput"},
			Timeout: 5 * time.Minute,
		},
		Backup: &controller.BackupSpec{
			Image:   "deployd-postgres:16",
			Command: controller.DefaultBackupCommand(),
			Env:     map[string]string{"PGHOST": "db", "PGUSER": "app", "PGDATABASE": "app"},
			EnvFile: c.Services["web"].Backup.EnvFile,
			Volume:  "deployd-backups",
			Keep:    3,
			Timeout: 10 * time.Minute,
		},
		Drain:               5 * time.Second,
		Standby:             controller.StandbyRunning,
		StandbyDuringDeploy: controller.DeployStandbyKeep,
		AllowedRefs:         []string{"refs/heads/main"}, RepositoryURL: "https://github.com/example/web",
		Bake: 2 * time.Minute, BakeTraffic: controller.TrafficRule{MaxErrorRate: 0.02, MinRequests: 20}, AutoRollback: true,
		AllowedTags: `v[0-9]+(\.[0-9]+)*`,
		Limits: controller.ContainerLimits{
			Memory: 512 << 20, NanoCPUs: 1_500_000_000, PidsLimit: 4096, CapDrop: []string{"NET_RAW"},
			NoNewPrivileges: true,
		},
		Schema: controller.SchemaSpec{
			Command:    []string{"python", "manage.py", "showmigrations", "--plan"},
			Timeout:    time.Minute,
			Compatible: `^[a-z_]+\.\d{4}_add_`,
		},
		Runtime: controller.RuntimeDocker,
	}
	if !reflect.DeepEqual(web, want) {
		t.Errorf("web spec =\n%+v\nwant\n%+v", web, want)
	}
	if specs[1].Pull != controller.PullAlways || specs[1].Standby != controller.StandbyStopped {
		t.Errorf("worker pull, standby = %q, %q; want always, stopped", specs[1].Pull, specs[1].Standby)
	}
	wantPlacement := controller.Placement{Constraints: []string{"node.role==worker", "node.labels.zone!=c"}, Spread: []string{"node.labels.zone"},
		Reservations: controller.Resources{Memory: 128 << 20, NanoCPUs: 250_000_000}}
	if specs[1].Runtime != controller.RuntimeSwarm || !reflect.DeepEqual(specs[1].Placement, wantPlacement) {
		t.Errorf("worker runtime, placement = %q, %+v; want swarm, %+v", specs[1].Runtime, specs[1].Placement, wantPlacement)
	}

	// The specs must not alias the config: the controller may keep them.
	web.Env["APP_ENV"] = "changed"
	web.PreDeploy.Command[0] = "changed"
	web.AllowedRefs[0] = "changed"
	if c.Services["web"].Env["APP_ENV"] != "production" || c.Services["web"].PreDeploy.Command[0] != "python" ||
		c.Services["web"].AllowedRefs[0] != "refs/heads/main" {
		t.Error("changing a spec changed the config")
	}
}

func specNames(specs []controller.ServiceSpec) []string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return names
}

func TestResolveTokens(t *testing.T) {
	const (
		long1 = "0123456789abcdef-one"
		long2 = "0123456789abcdef-two"
	)
	files := map[string]string{
		"/s/ci":      long2 + "\n",
		"/s/crlf":    long2 + "\r\n",
		"/s/empty":   "\n",
		"/s/short":   "tiny-one\n",
		"/s/same":    long1,
		"/s/spaces":  "  " + long2 + "  \n",
		"/s/nonexst": "",
	}
	readFile := func(p string) ([]byte, error) {
		s, ok := files[p]
		if !ok || p == "/s/nonexst" {
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		}
		return []byte(s), nil
	}
	env := envMap(map[string]string{"ADMIN": long1, "SHORT": "tooshort"})

	tests := []struct {
		name    string
		tokens  []Token
		want    []ResolvedToken
		wantErr []string
	}{
		{
			name: "env and file",
			tokens: []Token{
				{Name: "admin", Role: "operator", TokenEnv: "ADMIN"},
				{Name: "ci", Role: "deployer", TokenFile: "/s/ci"},
			},
			want: []ResolvedToken{
				{Name: "admin", Role: "operator", Secret: long1},
				{Name: "ci", Role: "deployer", Secret: long2},
			},
		},
		{
			name:   "file with CRLF ending",
			tokens: []Token{{Name: "w", Role: "viewer", TokenFile: "/s/crlf"}},
			want:   []ResolvedToken{{Name: "w", Role: "viewer", Secret: long2}},
		},
		{
			name:   "only the trailing newline is trimmed",
			tokens: []Token{{Name: "w", Role: "viewer", TokenFile: "/s/spaces"}},
			want:   []ResolvedToken{{Name: "w", Role: "viewer", Secret: "  " + long2 + "  "}},
		},
		{
			name:    "no tokens",
			tokens:  nil,
			want:    []ResolvedToken{},
			wantErr: nil,
		},
		{
			name:    "env unset",
			tokens:  []Token{{Name: "admin", Role: "operator", TokenEnv: "UNSET"}},
			wantErr: []string{"auth.tokens[0] (admin): token_env: environment variable UNSET is empty or unset"},
		},
		{
			name:    "file missing",
			tokens:  []Token{{Name: "ci", Role: "deployer", TokenFile: "/s/nonexst"}},
			wantErr: []string{"auth.tokens[0] (ci): read token_file:", "/s/nonexst"},
		},
		{
			name:    "file empty",
			tokens:  []Token{{Name: "ci", Role: "deployer", TokenFile: "/s/empty"}},
			wantErr: []string{"auth.tokens[0] (ci): token_file /s/empty is empty"},
		},
		{
			name: "too short",
			tokens: []Token{
				{Name: "a", Role: "viewer", TokenEnv: "SHORT"},
				{Name: "b", Role: "viewer", TokenFile: "/s/short"},
			},
			wantErr: []string{
				"auth.tokens[0] (a): secret is shorter than 16 bytes",
				"auth.tokens[1] (b): secret is shorter than 16 bytes",
			},
		},
		{
			name: "shared secret",
			tokens: []Token{
				{Name: "admin", Role: "operator", TokenEnv: "ADMIN"},
				{Name: "copy", Role: "viewer", TokenFile: "/s/same"},
			},
			wantErr: []string{"auth.tokens[1] (copy): has the same secret as auth.tokens[0] (admin)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Auth: Auth{Tokens: tt.tokens}}
			got, err := c.ResolveTokens(env, readFile)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("ResolveTokens: %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("tokens = %+v, want %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ResolveTokens = %+v, want an error", got)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error = %q\nwant it to contain %q", err, w)
				}
			}
			for _, secret := range []string{long1, long2, "tooshort", "tiny-one"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q reveals a secret", err)
				}
			}
		})
	}
}

func TestValidate_ConfigBuiltInCode(t *testing.T) {
	c := Default()
	// Load makes the paths absolute against the file; code sets them so
	// (the switch's default socket lives in this directory).
	c.Nginx.UpstreamDir = "/run/deployd/upstreams"
	svc := DefaultService()
	svc.Image, svc.Port = "demoapp", 8000
	c.Services = map[string]Service{"web": svc}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	svc.Replicas = 0
	c.Services["web"] = svc
	err := c.Validate()
	want := "services.web.replicas: must be between 1 and 20, got 0"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want exactly %q", err, want)
	}
}

func FuzzLoadConfig(f *testing.F) {
	full, err := os.ReadFile(filepath.Join("testdata", "full.yml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add([]byte(minimal))
	f.Add([]byte(""))
	f.Add([]byte("services: {web: {image: demoapp, port: 1, env: {A: *x}}}"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("services:\n  web: &w\n    image: demoapp\n  api: *w\n  x: {<<: *w}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig("fuzz.yml", data, "/etc/deployd", noEnv)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		// A configuration that loads must also validate and map cleanly.
		if err := c.Validate(); err != nil {
			t.Fatalf("loaded config fails Validate: %v", err)
		}
		if got, want := len(c.ServiceSpecs()), len(c.Services); got != want {
			t.Fatalf("ServiceSpecs returned %d specs, want %d", got, want)
		}
	})
}

func TestResolveWebhookSecret(t *testing.T) {
	const (
		hook  = "webhook-secret-0123456789"
		admin = "admin-token-0123456789"
	)
	files := map[string]string{
		"/s/hook":  hook + "\n",
		"/s/empty": "\r\n",
		"/s/short": "tiny-hook\n",
		"/s/admin": admin + "\n",
	}
	readFile := func(p string) ([]byte, error) {
		s, ok := files[p]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		}
		return []byte(s), nil
	}
	env := envMap(map[string]string{"HOOK": hook, "ADMIN": admin, "SHORT": "0123456789abcde"})
	adminToken := []Token{{Name: "admin", Role: "operator", TokenEnv: "ADMIN"}}

	tests := []struct {
		name    string
		auth    Auth
		want    string
		wantErr []string
		wantIs  error
	}{
		{name: "not configured", auth: Auth{Tokens: adminToken}},
		{name: "from env", auth: Auth{Tokens: adminToken, WebhookSecretEnv: "HOOK"}, want: hook},
		{name: "from file without its newline", auth: Auth{Tokens: adminToken, WebhookSecretFile: "/s/hook"}, want: hook},
		{
			name:    "env unset",
			auth:    Auth{WebhookSecretEnv: "UNSET"},
			wantErr: []string{"auth: webhook_secret_env: environment variable UNSET is empty or unset"},
		},
		{
			name:    "file missing",
			auth:    Auth{WebhookSecretFile: "/s/nope"},
			wantErr: []string{"auth: read webhook_secret_file:", "/s/nope"},
			wantIs:  fs.ErrNotExist,
		},
		{
			name:    "file empty",
			auth:    Auth{WebhookSecretFile: "/s/empty"},
			wantErr: []string{"auth: webhook_secret_file /s/empty is empty"},
		},
		{
			name:    "15 bytes is too short",
			auth:    Auth{WebhookSecretEnv: "SHORT"},
			wantErr: []string{"auth: secret is shorter than 16 bytes"},
		},
		{
			name:    "short file",
			auth:    Auth{WebhookSecretFile: "/s/short"},
			wantErr: []string{"auth: secret is shorter than 16 bytes"},
		},
		{
			name: "same as a token's secret",
			auth: Auth{Tokens: []Token{
				{Name: "viewer", Role: "viewer", TokenFile: "/s/hook"},
				{Name: "admin", Role: "operator", TokenEnv: "ADMIN"},
			}, WebhookSecretFile: "/s/admin"},
			wantErr: []string{"webhook secret is the same as the secret of auth.tokens[1] (admin)"},
		},
		{
			name:    "tokens that do not resolve",
			auth:    Auth{Tokens: []Token{{Name: "ci", Role: "deployer", TokenEnv: "UNSET"}}, WebhookSecretEnv: "HOOK"},
			wantErr: []string{"resolve tokens to compare with the webhook secret", "auth.tokens[0] (ci): token_env: environment variable UNSET is empty or unset"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Auth: tt.auth}
			got, err := c.ResolveWebhookSecret(env, readFile)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("ResolveWebhookSecret: %v", err)
				}
				if tt.want == "" && got != nil {
					t.Fatalf("secret = %q, want nil", got)
				}
				if string(got) != tt.want {
					t.Fatalf("secret = %q, want %q", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ResolveWebhookSecret = %q, want an error", got)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error = %q\nwant it to contain %q", err, w)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false, want true", err, tt.wantIs)
			}
			for _, secret := range []string{hook, admin, "0123456789abcde", "tiny-hook"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q reveals a secret", err)
				}
			}
		})
	}
}

func TestLoadConfig_WebhookSecretFileResolvesAgainstConfigDir(t *testing.T) {
	c, err := parse(t, "auth:\n  webhook_secret_file: secrets/hook\n"+minimal)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Auth.WebhookSecretFile, "/etc/deployd/secrets/hook"; got != want {
		t.Fatalf("webhook_secret_file = %q, want %q", got, want)
	}
}

func TestWarnings_WebhookWithoutAllowedRefs(t *testing.T) {
	c, err := parse(t, "auth:\n  webhook_secret_env: HOOK\n  tokens: [{name: a, role: viewer, token_env: A}]\n"+minimal)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"services.web.allowed_refs is empty: a signed webhook may deploy it from any git ref"}
	if got := c.Warnings(); !reflect.DeepEqual(got, want) {
		t.Fatalf("warnings = %q, want %q", got, want)
	}
	withoutHook, err := parse(t, "auth:\n  tokens: [{name: a, role: viewer, token_env: A}]\n"+minimal)
	if err != nil {
		t.Fatal(err)
	}
	if got := withoutHook.Warnings(); len(got) != 0 {
		t.Fatalf("warnings without a webhook = %q, want none", got)
	}
}

func TestLoadConfig_BadReliabilityConfigsNameTheField(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want []string
	}{
		{"watch interval zero", "watch:\n  interval: 0s\n" + minimal,
			[]string{"config.yml:2: watch.interval: must be greater than 0, got 0s"}},
		{"threshold zero", "watch:\n  unhealthy_threshold: 0\n" + minimal,
			[]string{"config.yml:2: watch.unhealthy_threshold: must be between 1 and 100, got 0"}},
		{"threshold too high", "watch:\n  unhealthy_threshold: 101\n" + minimal,
			[]string{"watch.unhealthy_threshold: must be between 1 and 100, got 101"}},
		{"reconcile interval negative", "reconcile:\n  interval: -1s\n" + minimal,
			[]string{"config.yml:2: reconcile.interval: must be greater than 0, got -1s"}},
		{"retention images negative", "retention:\n  images: -1\n" + minimal,
			[]string{"config.yml:2: retention.images: must be between 0 and 1000, got -1"}},
		{"retention images too many", "retention:\n  images: 1001\n" + minimal,
			[]string{"retention.images: must be between 0 and 1000, got 1001"}},
		{"hold limit of 0", "traffic:\n  pause:\n    max_held: 0\n" + minimal,
			[]string{"config.yml:3: traffic.pause.max_held: must be between 1 and 1000000, got 0"}},
		{"hold time of 0", "traffic:\n  pause:\n    max_hold: 0s\n" + minimal,
			[]string{"config.yml:3: traffic.pause.max_hold: must be greater than 0, got 0s"}},
		{"retention interval without unit", "retention:\n  interval: 60\n" + minimal,
			[]string{`retention.interval: invalid duration "60": give a unit, e.g. 60s`}},
		{"metrics public not a bool", "metrics:\n  public: maybe\n" + minimal,
			[]string{"config.yml:2: metrics.public:"}},
		{"bake negative", minimal + "    bake: -1m\n",
			[]string{"config.yml:6: services.web.bake: must not be negative, got -1m0s"}},
		{"auto_rollback not a bool", minimal + "    auto_rollback: sometimes\n",
			[]string{"config.yml:6: services.web.auto_rollback:"}},
		{"notify type", "notify:\n  - name: a\n    type: email\n    url_env: A\n" + minimal,
			[]string{`config.yml:3: notify[0].type: must be webhook or slack, got "email"`}},
		{"notify without url", "notify:\n  - name: a\n    type: slack\n" + minimal,
			[]string{"notify[0]: one of url_env or url_file is required"}},
		{"notify with both urls", "notify:\n  - name: a\n    type: slack\n    url_env: A\n    url_file: /f\n" + minimal,
			[]string{"notify[0]: set url_env or url_file, not both"}},
		{"notify url in the file", "notify:\n  - name: a\n    type: slack\n    url: https://hooks.example.com/T0/B0/secretpath\n" + minimal,
			[]string{"config.yml:4: notify[0].url: a webhook URL is a secret", "url_env"}},
		{"notify secret in the file", "notify:\n  - name: a\n    type: webhook\n    url_env: A\n    secret: abc\n" + minimal,
			[]string{"config.yml:5: notify[0].secret: secrets do not belong", "secret_env"}},
		{"notify both secrets", "notify:\n  - name: a\n    type: webhook\n    url_env: A\n    secret_env: S\n    secret_file: /s\n" + minimal,
			[]string{"notify[0]: set secret_env or secret_file, not both"}},
		{"notify bad env name", "notify:\n  - name: a\n    type: webhook\n    url_env: 1A\n" + minimal,
			[]string{`notify[0].url_env: invalid environment variable name "1A"`}},
		{"notify duplicate names", "notify:\n  - {name: a, type: slack, url_env: A}\n  - {name: a, type: slack, url_env: B}\n" + minimal,
			[]string{`config.yml:3: notify[1].name: duplicate target name "a" (also notify[0])`}},
		{"notify name missing", "notify:\n  - {type: slack, url_env: A}\n" + minimal,
			[]string{"notify[0].name: is required"}},
		{"notify unknown event", "notify:\n  - {name: a, type: slack, url_env: A, events: [deployed]}\n" + minimal,
			[]string{`notify[0].events[0]: must be one of deploy_started, deploy_succeeded, deploy_failed, deploy_interrupted, rolled_back, service_unhealthy, repair, got "deployed"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.yml)
			if err == nil {
				t.Fatal("parse succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error = %q\nwant it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "secretpath") {
				t.Errorf("error %q contains the URL", err)
			}
		})
	}
}

func TestConfig_WatchAndRetentionSpecs(t *testing.T) {
	c, err := parse(t, "watch:\n  interval: 5s\n  unhealthy_threshold: 4\nretention:\n  images: 0\n"+minimal)
	if err != nil {
		t.Fatal(err)
	}
	want := controller.WatchSpec{UnhealthyThreshold: 4, Interval: 5 * time.Second, Traffic: controller.TrafficRule{MinRequests: 20}}
	if got := c.WatchSpec(); got != want {
		t.Errorf("WatchSpec() = %+v, want %+v", got, want)
	}
	if got, want := c.RetentionSpec(), (controller.RetentionSpec{Images: 0, AuditMaxAge: 90 * 24 * time.Hour, AuditMaxEntries: 100000}); got != want {
		t.Errorf("RetentionSpec() = %+v, want %+v", got, want)
	}
	if c.Retention.Interval != time.Hour || c.Reconcile.Interval != 30*time.Second || c.Metrics.Public {
		t.Errorf("defaults = retention %s, reconcile %s, public %v; want 1h, 30s, false", c.Retention.Interval, c.Reconcile.Interval, c.Metrics.Public)
	}
}

func TestResolveNotifyTargets(t *testing.T) {
	const (
		slackURL = "https://hooks.slack.example/services/T0/B0/secretpath"
		hookURL  = "https://ops.example.com/deployd"
		secret   = "notify-signing-secret-0123"
	)
	files := map[string]string{
		"/s/url":    hookURL + "\n",
		"/s/secret": secret + "\n",
		"/s/short":  "tiny-s3cr\n",
		"/s/empty":  "\n",
	}
	readFile := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	env := envMap(map[string]string{"SLACK_URL": slackURL, "BAD_URL": "ftp://x/secretpath", "NO_HOST": "https:///secretpath"})

	tests := []struct {
		name    string
		notify  []NotifyTarget
		want    []notify.Target
		wantErr string
	}{
		{"none", nil, []notify.Target{}, ""},
		{"env url and file url with secret", []NotifyTarget{
			{Name: "chat", Type: "slack", URLEnv: "SLACK_URL"},
			{Name: "hook", Type: "webhook", URLFile: "/s/url", SecretFile: "/s/secret", Events: []string{"repair"}},
		}, []notify.Target{
			{Name: "chat", Type: "slack", URL: slackURL},
			{Name: "hook", Type: "webhook", URL: hookURL, Secret: []byte(secret), Events: []string{"repair"}},
		}, ""},
		{"unset env", []NotifyTarget{{Name: "chat", Type: "slack", URLEnv: "MISSING"}}, nil,
			"notify[0] (chat): url_env: environment variable MISSING is empty or unset"},
		{"missing file", []NotifyTarget{{Name: "hook", Type: "webhook", URLFile: "/s/nope"}}, nil,
			"notify[0] (hook): read url_file: open /s/nope"},
		{"empty file", []NotifyTarget{{Name: "hook", Type: "webhook", URLFile: "/s/empty"}}, nil,
			"notify[0] (hook): url_file /s/empty is empty"},
		{"not http", []NotifyTarget{{Name: "chat", Type: "slack", URLEnv: "BAD_URL"}}, nil,
			"notify[0] (chat): the url is not an http or https URL with a host"},
		{"no host", []NotifyTarget{{Name: "chat", Type: "slack", URLEnv: "NO_HOST"}}, nil,
			"notify[0] (chat): the url is not an http or https URL with a host"},
		{"short secret", []NotifyTarget{{Name: "hook", Type: "webhook", URLFile: "/s/url", SecretFile: "/s/short"}}, nil,
			"notify[0] (hook): secret is shorter than 16 bytes"},
		{"unset secret env", []NotifyTarget{{Name: "hook", Type: "webhook", URLFile: "/s/url", SecretEnv: "NOPE"}}, nil,
			"notify[0] (hook): secret_env: environment variable NOPE is empty or unset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Notify: tt.notify}
			got, err := c.ResolveNotifyTargets(env, readFile)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				for _, leak := range []string{"secretpath", secret, "tiny-s3cr"} {
					if strings.Contains(err.Error(), leak) {
						t.Fatalf("error %q contains a URL or secret", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v, want none", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("targets = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestWriteFile_ReadsBackAsTheSameConfig(t *testing.T) {
	full, err := Load(filepath.Join("testdata", "full.yml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	// Zeros where the default is not zero must survive the trip.
	zeros := Default()
	zeros.Reconcile.OnContainerExit = false
	zeros.Retention.Images = 0
	svc := DefaultService()
	svc.Image, svc.Port, svc.Drain = "demoapp", 8000, 0
	svc.PidsLimit, svc.CapDrop, svc.NoNewPrivileges = 0, []string{}, false
	zeros.Services = map[string]Service{"web": svc}

	dir := t.TempDir()
	for name, want := range map[string]*Config{"full": full, "zeros": zeros} {
		t.Run(name, func(t *testing.T) {
			want.DataDir = filepath.Join(dir, "data") // absolute, so that nothing moves
			want.Nginx.UpstreamDir = filepath.Join(dir, "upstreams")
			path := filepath.Join(dir, name+".yml")
			if err := want.WriteFile(path); err != nil {
				t.Fatal(err)
			}
			got, err := Load(path, noEnv)
			if err != nil {
				t.Fatalf("Load(written file): %v", err)
			}
			got.origins, want.origins = nil, nil
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("read back =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestConfig_AuditRetentionAndTrustedProxies(t *testing.T) {
	tests := []struct {
		name    string
		yml     string
		wantErr string
		check   func(t *testing.T, c *Config)
	}{
		{name: "defaults bound the trail and trust no proxy", yml: "", check: func(t *testing.T, c *Config) {
			if got := c.RetentionSpec(); got.AuditMaxAge != 90*24*time.Hour || got.AuditMaxEntries != 100000 {
				t.Errorf("RetentionSpec() = %+v, want 90 days and 100000 entries", got)
			}
			if len(c.TrustedProxies) != 0 || c.Auth.WebhookAllowUnstamped {
				t.Errorf("trusted_proxies = %v, webhook_allow_unstamped = %v; want none, false", c.TrustedProxies, c.Auth.WebhookAllowUnstamped)
			}
		}},
		{name: "set", yml: "trusted_proxies: [172.18.0.0/16, \"::1\"]\naudit:\n  retention:\n    max_age: 24h\n    max_entries: 0\n", check: func(t *testing.T, c *Config) {
			if got := c.RetentionSpec(); got.AuditMaxAge != 24*time.Hour || got.AuditMaxEntries != 0 {
				t.Errorf("RetentionSpec() = %+v, want 24h and no count bound", got)
			}
			if len(c.TrustedProxies) != 2 {
				t.Errorf("trusted_proxies = %v, want two entries", c.TrustedProxies)
			}
		}},
		{name: "bad proxy", yml: "trusted_proxies: [nginx]\n", wantErr: `trusted_proxies[0]: must be an IP address or a CIDR prefix, got "nginx"`},
		{name: "negative age", yml: "audit:\n  retention:\n    max_age: -1h\n", wantErr: "audit.retention.max_age: must be 0 (keep) or positive"},
		{name: "negative count", yml: "audit:\n  retention:\n    max_entries: -1\n", wantErr: "audit.retention.max_entries: must be between 0 (keep)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.yml+minimal)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestConfig_UnboundedAuditTrailWarns(t *testing.T) {
	c, err := parse(t, "audit:\n  retention:\n    max_age: 0s\n    max_entries: 0\n"+minimal)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "audit.retention keeps every entry") {
		t.Fatalf("warnings = %q, want one about the unbounded audit trail", w)
	}
}

func TestLoadConfig_LimitTypesNameTheField(t *testing.T) {
	tests := []struct{ yml, want string }{
		{"    cpus: many\n", `services.web.cpus: must be a number, got "many"`},
		{"    pids_limit: 1.5\n", `services.web.pids_limit: must be an integer, got "1.5"`},
		{"    no_new_privileges: yes\n", `services.web.no_new_privileges: must be true or false, got "yes"`},
		{"    memory: [1]\n", `services.web.memory: must be a memory size such as 512m or 1g, got a list`},
	}
	for _, tt := range tests {
		_, err := parse(t, minimal+tt.yml)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want it to contain %q", tt.yml, err, tt.want)
		}
	}
}
