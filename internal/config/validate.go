package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/distribution/reference"

	"github.com/deployd/deployd/pkg/controller"
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// fieldError is one problem found in the configuration, located by its
// origin ("config.yml:12" or "env DEPLOYD_LISTEN"; may be empty) and the
// dotted path of the field.
type fieldError struct {
	Origin string
	Path   string
	Msg    string
	// cause is the error Msg describes, when there is one (a failed bind).
	cause error
}

func (e *fieldError) Unwrap() error { return e.cause }

func (e *fieldError) Error() string {
	var b strings.Builder
	for _, part := range []string{e.Origin, e.Path} {
		if part != "" {
			b.WriteString(part + ": ")
		}
	}
	b.WriteString(e.Msg)
	return b.String()
}

var plainKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// joinKey appends key to a field path, quoting a key that would make the
// path ambiguous: services.web.env["A.B"].
func joinKey(path, key string) string {
	if !plainKeyRE.MatchString(key) {
		return fmt.Sprintf("%s[%q]", path, key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

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
	for i, p := range c.TrustedProxies {
		if !validProxy(p) {
			v.addf(fmt.Sprintf("trusted_proxies[%d]", i), "must be an IP address or a CIDR prefix, got %q", p)
		}
	}

	c.validateAuth(v)
	if c.Web.SessionTTL < time.Minute || c.Web.SessionTTL > 30*24*time.Hour {
		v.addf("web.session_ttl", "must be between 1m and 720h, got %s", c.Web.SessionTTL)
	}
	for _, f := range []struct {
		path   string
		n, max int
	}{
		{"web.sessions_per_token", c.Web.SessionsPerToken, 1000},
		{"web.logins_per_minute", c.Web.LoginsPerMinute, 1000},
		{"events.max_streams", c.Events.MaxStreams, 100000},
		{"events.max_streams_per_token", c.Events.MaxStreamsPerToken, 100000},
	} {
		if f.n < 1 || f.n > f.max {
			v.addf(f.path, "must be between 1 and %d, got %d", f.max, f.n)
		}
	}
	if c.Events.MaxStreamsPerToken > c.Events.MaxStreams {
		v.addf("events.max_streams_per_token", "must not exceed events.max_streams (%d), got %d", c.Events.MaxStreams, c.Events.MaxStreamsPerToken)
	}
	c.validateDocker(v)
	c.validateNginx(v)
	c.validateTraffic(v)
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
	v.oneOf("nginx.mode", n.Mode, NginxModeExec, NginxModeDocker, NginxModeStatic)
	if n.Mode == NginxModeStatic {
		// The upstream directory, commands, container, template and pid
		// file are left unchecked and unused, as another mode's keys are.
		if !c.SwitchMode() {
			v.addf("nginx.mode", "%s needs traffic.mode %q: in %s mode every switch rewrites nginx's upstream and reloads nginx, which static leaves to you",
				NginxModeStatic, TrafficModeSwitch, c.Traffic.Mode)
		}
		return
	}
	if n.UpstreamDir == "" {
		v.addf("nginx.upstream_dir", "is required")
	}
	switch n.Mode {
	case NginxModeExec:
		validCommand(v, "nginx.test_command", n.TestCommand)
		validCommand(v, "nginx.reload_command", n.ReloadCommand)
		// nginxconf.WithFlag's rule; this package sits above nginxconf's
		// tests and cannot import it.
		if n.PIDFile == "" && len(n.TestCommand) > 0 && !slices.Contains(n.TestCommand, "-t") {
			v.addf("nginx.pid_file", `is required when nginx.test_command has no "-t": deployd reads the pid path from the test command with -T in its place`)
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
	validTrafficRule(v, "watch.max_error_rate", c.Watch.MaxErrorRate, "watch.min_requests", c.Watch.MinRequests)
	v.positive("reconcile.interval", c.Reconcile.Interval)
	if n := c.Retention.Images; n < 0 || n > maxRetainedImages {
		v.addf("retention.images", "must be between 0 and %d, got %d", maxRetainedImages, n)
	}
	v.positive("retention.interval", c.Retention.Interval)
	if d := c.Audit.Retention.MaxAge; d < 0 {
		v.addf("audit.retention.max_age", "must be 0 (keep) or positive, got %s", d)
	}
	if n := c.Audit.Retention.MaxEntries; n < 0 || n > maxAuditEntries {
		v.addf("audit.retention.max_entries", "must be between 0 (keep) and %d, got %d", maxAuditEntries, n)
	}
}

func (c *Config) validatePause(v *validator) {
	v.positive("traffic.pause.max_hold", c.Traffic.Pause.MaxHold)
	if n := c.Traffic.Pause.MaxHeld; n < 1 || n > maxPauseHeld {
		v.addf("traffic.pause.max_held", "must be between 1 and %d, got %d", maxPauseHeld, n)
	}
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

// validTrafficRule checks a rate (0 is off) and its minimum of requests.
func validTrafficRule(v *validator, ratePath string, rate ErrorRate, minPath string, minRequests int) {
	if rate < 0 || rate > 1 {
		v.addf(ratePath, "must be above 0%% and at most 100%% (or 0 for off), got %s", rate)
	}
	if minRequests < 1 {
		v.addf(minPath, "must be at least 1, got %d", minRequests)
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

func (s Service) validate(v *validator, p, name string) {
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
		v.addf(p+".restart", "must be no, always, unless-stopped or on-failure[:N] with N from 1, got %q", s.Restart)
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
	if s.Backup != nil {
		s.Backup.validate(v, p+".backup")
	}
	s.validateSchema(v, p)
	if s.Drain < 0 {
		v.addf(p+".drain", "must not be negative, got %s", s.Drain)
	}
	if s.Bake < 0 {
		v.addf(p+".bake", "must not be negative, got %s", s.Bake)
	}
	validTrafficRule(v, p+".bake_max_error_rate", s.BakeMaxErrorRate, p+".bake_min_requests", s.BakeMinRequests)
	if s.BakeMaxErrorRate > 0 && s.Bake <= 0 {
		v.addf(p+".bake_max_error_rate", "needs bake: the rule judges the new color during the bake, and bake is %s", s.Bake)
	}
	v.oneOf(p+".standby", s.Standby, string(controller.StandbyRunning), string(controller.StandbyStopped))
	v.oneOf(p+".standby_during_deploy", s.StandbyDuringDeploy,
		string(controller.DeployStandbyKeep), string(controller.DeployStandbyRemove))
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
	s.validateLimits(v, p)
	s.validateRuntime(v, p)
}

// Limits of a backup block.
const maxBackupKeep = 1000

// volumeNameRE is Docker's rule for a named volume.
var volumeNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func (b Backup) validate(v *validator, p string) {
	switch named, err := reference.ParseNormalizedNamed(b.Image); {
	case b.Image == "":
		v.addf(p+".image", "is required: an image with the dump tool and sh, e.g. postgres:16")
	case err != nil:
		v.addf(p+".image", "invalid image reference %q: %v", b.Image, err)
	default:
		_, tagged := named.(reference.Tagged)
		_, digested := named.(reference.Digested)
		if !tagged && !digested {
			v.addf(p+".image", "must name a tag or a digest, got %q", b.Image)
		}
	}
	if len(b.Command) == 0 {
		v.addf(p+".command", "must not be empty (leave it out for the pg_dump default)")
	} else if b.Command[0] == "" {
		v.addf(p+".command[0]", "the program name must not be empty")
	}
	for _, k := range sortedKeys(b.Env) {
		if !envNameRE.MatchString(k) {
			v.addf(joinKey(p+".env", k), "invalid environment variable name %q", k)
		}
	}
	switch {
	case strings.HasPrefix(b.Volume, "/") || strings.HasPrefix(b.Volume, "."):
		v.addf(p+".volume", "must be the name of a Docker volume, not a path, got %q", b.Volume)
	case !volumeNameRE.MatchString(b.Volume):
		v.addf(p+".volume", "must be a Docker volume name (letters, digits, _ . -, at least 2 characters), got %q", b.Volume)
	}
	if b.Keep < 1 || b.Keep > maxBackupKeep {
		v.addf(p+".keep", "must be between 1 and %d, got %d", maxBackupKeep, b.Keep)
	}
	v.positive(p+".timeout", b.Timeout)
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

// validateSchema checks a service's schema block.
func (s Service) validateSchema(v *validator, p string) {
	for i, arg := range s.Schema.Command {
		if i == 0 && arg == "" {
			v.addf(p+".schema.command[0]", "the program name must not be empty")
		}
	}
	v.positive(p+".schema.timeout", s.Schema.Timeout)
	if s.Schema.Compatible != "" {
		if _, err := regexp.Compile(s.Schema.Compatible); err != nil {
			v.addf(p+".schema.compatible", "invalid regular expression: %v", err)
		}
		if len(s.Schema.Command) == 0 {
			v.addf(p+".schema.compatible", "needs schema.command: without it no schema is read")
		}
	}
}
