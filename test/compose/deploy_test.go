package compose

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/deployd/deployd/internal/testenv"
)

func TestHostConfigExamples_PassDeploydCheck(t *testing.T) {
	root := repoRoot(t)
	// Secrets only exist at run time; check resolves them, so give it
	// throwaway ones.
	env := []string{
		"DEPLOYD_ADMIN_TOKEN=" + randomHex(t),
		"DEPLOYD_CI_TOKEN=" + randomHex(t),
		"DEPLOYD_WEBHOOK_SECRET=" + randomHex(t),
	}
	for _, cfg := range []string{"deploy/deployd.yml", "deploy/compose/deployd.yml"} {
		t.Run(cfg, func(t *testing.T) {
			out := run(t, root, env, 3*time.Minute, "go", "run", "./cmd/deployd", "check", "--config", cfg)
			if !strings.Contains(out, "configuration ok") {
				t.Fatalf("deployd check %s: %s, want \"configuration ok\"", cfg, out)
			}
		})
	}
}

// The shipped unit is verified as it is, except that ExecStart points at an
// executable that exists here (systemd-analyze checks that it does).
func TestSystemdUnit_PassesSystemdAnalyzeVerify(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	root := repoRoot(t)
	unit, err := os.ReadFile(filepath.Join(root, "deploy/systemd/deployd.service"))
	if err != nil {
		t.Fatalf("read unit: %v", err)
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "deployd")
	mustWrite(t, stub, "#!/bin/sh\nexit 0\n", 0o755)
	const shipped = "/usr/local/bin/deployd"
	if !strings.Contains(string(unit), "ExecStart="+shipped+" ") {
		t.Fatalf("unit's ExecStart does not start %s", shipped)
	}
	path := filepath.Join(dir, "deployd.service")
	mustWrite(t, path, strings.ReplaceAll(string(unit), shipped, stub), 0o644)
	run(t, dir, nil, time.Minute, analyze, "verify", path)
}

// The helper's units as shipped, except that ExecStart points at the
// helper script in the repository.
func TestNginxHelperUnits_PassSystemdAnalyzeVerify(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	root := repoRoot(t)
	dir := t.TempDir()
	for _, name := range []string{"deployd-nginx.socket", "deployd-nginx@.service"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy/systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		unit := strings.ReplaceAll(string(b), shippedHelper, filepath.Join(root, "deploy/systemd/deployd-nginx-helper"))
		mustWrite(t, filepath.Join(dir, name), unit, 0o644)
	}
	for _, name := range []string{"deployd-nginx.socket", "deployd-nginx@.service"} {
		run(t, dir, nil, time.Minute, analyze, "verify", name)
	}
}

func TestSystemdUnit_IsHardened(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/systemd/deployd.service"))
	if err != nil {
		t.Fatalf("read unit: %v", err)
	}
	for _, want := range []string{
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/deployd /etc/nginx/deployd",
		"PrivateTmp=yes", "ProtectHome=yes", "Restart=on-failure", "EnvironmentFile=-/etc/deployd/deployd.env",
		"SupplementaryGroups=docker", "User=deployd",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(b) {
			t.Errorf("unit lacks the line %q", want)
		}
	}
}

// metricNames are the metrics deployd exports; alert rules may use only
// these.
var metricNames = []string{
	"deployd_deployments_total", "deployd_auto_rollbacks_total", "deployd_service_healthy",
	"deployd_standby_available", "deployd_reconciler_repairs_total",
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// Runs everywhere, promtool or not: every rule is complete and names only
// metrics deployd exports, and the five alerts the docs promise exist.
func TestAlertRules_AreCompleteAndUseDeploydMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/prometheus/alerts.yml"))
	if err != nil {
		t.Fatalf("read alerts: %v", err)
	}
	var f ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("parse alerts.yml: %v", err)
	}
	metricRef := regexp.MustCompile(`\bdeployd_[a-z_]+`)
	var alerts []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.Alert == "" || r.Expr == "" || r.For == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %q: wants alert, expr, for, labels.severity and annotations.summary", r.Alert)
			}
			refs := metricRef.FindAllString(r.Expr, -1)
			if len(refs) == 0 {
				t.Errorf("rule %s: expr %q names no deployd metric", r.Alert, r.Expr)
			}
			for _, m := range refs {
				if !slices.Contains(metricNames, m) {
					t.Errorf("rule %s: expr uses %s, which deployd does not export", r.Alert, m)
				}
			}
		}
	}
	for _, want := range []string{"DeploydDeployFailed", "DeploydAutoRollback", "DeploydServiceUnhealthy", "DeploydNoStandby", "DeploydReconcilerRepairing"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alerts.yml has no %s (has %v)", want, alerts)
		}
	}
}

// promtool ships with Debian's prometheus package, which
// scripts/ensure-deps.sh installs; in CI a missing promtool is a failure.
func TestPrometheusFiles_PassPromtool(t *testing.T) {
	root := repoRoot(t)
	promtool, err := lookPath("promtool")
	if err != nil {
		if testenv.InCI() {
			t.Fatal("promtool is not installed; scripts/ensure-deps.sh installs it (Debian package prometheus)")
		}
		t.Skip("promtool is not installed (apt-get install prometheus); TestAlertRules_AreCompleteAndUseDeploydMetrics checks the rules without it")
	}
	run(t, root, nil, time.Minute, promtool, "check", "rules", "deploy/prometheus/alerts.yml")
	// check config also reads the rule files and the token file it names.
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(root, "deploy/prometheus/prometheus.yml"))
	if err != nil {
		t.Fatalf("read prometheus.yml: %v", err)
	}
	mustWrite(t, filepath.Join(dir, "token"), "placeholder\n", 0o600)
	mustWrite(t, filepath.Join(dir, "prometheus.yml"), strings.ReplaceAll(string(cfg), "/etc/prometheus/deployd_token", filepath.Join(dir, "token")), 0o644)
	alerts, err := os.ReadFile(filepath.Join(root, "deploy/prometheus/alerts.yml"))
	if err != nil {
		t.Fatalf("read alerts.yml: %v", err)
	}
	mustWrite(t, filepath.Join(dir, "alerts.yml"), string(alerts), 0o644)
	run(t, dir, nil, time.Minute, promtool, "check", "config", "prometheus.yml")
}

// The swarm stack as shipped: the stack file passes docker's own check,
// and the configuration deployd and the edge switches read passes deployd
// check, with throwaway secrets where Swarm mounts the real ones.
func TestSwarmStackFiles_AreValid(t *testing.T) {
	docker := requireTool(t, "docker")
	root := repoRoot(t)
	out := run(t, root, []string{"DEPLOYD_IMAGE=registry.example.com/deployd:1", "DOCKER_GID=999"}, time.Minute,
		docker, "stack", "config", "-c", "deploy/swarm/stack.yml")
	for _, want := range []string{"deployd_config", "mode: global", "node.role == manager"} {
		if !strings.Contains(out, want) {
			t.Errorf("docker stack config output lacks %q", want)
		}
	}

	shipped, err := os.ReadFile(filepath.Join(root, "deploy/swarm/deployd.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, s := range []string{"deployd_admin_token", "deployd_ci_token", "deployd_webhook_secret", "deployd_switch_token"} {
		mustWrite(t, filepath.Join(dir, s), randomHex(t), 0o600)
	}
	cfg := filepath.Join(dir, "deployd.yml")
	mustWrite(t, cfg, strings.ReplaceAll(string(shipped), "/run/secrets/", dir+"/"), 0o600)
	out = run(t, root, nil, 3*time.Minute, "go", "run", "./cmd/deployd", "check", "--config", cfg)
	if !strings.Contains(out, "configuration ok") {
		t.Fatalf("deployd check of deploy/swarm/deployd.yml: %s, want \"configuration ok\"", out)
	}
}
