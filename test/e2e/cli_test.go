package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

// cliResult is what one client command did.
type cliResult struct {
	code           int
	stdout, stderr string
}

// cli runs the built binary as a client command against the daemon, with
// the server and the operator's token in the environment as CI would set
// them.
func (d *daemon) cli(args ...string) cliResult {
	t := d.e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deploymentTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, deploydBin, args...)
	cmd.Env = append(os.Environ(), "DEPLOYD_SERVER="+d.url, "DEPLOYD_TOKEN="+d.e.token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("deployd %s: %v", strings.Join(args, " "), err)
	}
	if strings.Contains(res.stdout+res.stderr, d.e.token) {
		t.Fatalf("deployd %s printed the API token", strings.Join(args, " "))
	}
	return res
}

// assertStepLines checks that out has a progress line for each step, in
// this order.
func assertStepLines(t *testing.T, out string, steps ...string) {
	t.Helper()
	rest := out
	for _, s := range steps {
		i := strings.Index(rest, "  "+s+" ")
		if i < 0 {
			t.Fatalf("output lacks a line for step %s after the previous ones; output:\n%s", s, out)
		}
		rest = rest[i:]
	}
}

func TestCLI_DeployWaitFailingImageExitsNonZeroWithReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2", "v2-fail")
	cfg := defaultSvc()
	cfg.StartTimeout = failFastStartTimeout
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))

	res := d.cli("deploy", "--service", e.svc, "--image", "v1", "--wait")
	if res.code != 0 {
		t.Fatalf("deploy v1 --wait: exit code = %d, want 0; stdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	assertStepLines(t, res.stdout, controller.StepPull, controller.StepStart, controller.StepHealth, controller.StepSwitch)
	if !strings.Contains(res.stdout, " succeeded") {
		t.Fatalf("deploy v1 --wait: stdout lacks the final status; stdout:\n%s", res.stdout)
	}
	e.assertServes("v1", "blue")
	upstream := e.upstream()

	res = d.cli("deploy", "--service", e.svc, "--image", "v2-fail", "--wait")
	notHealthy := fmt.Sprintf("not healthy within %s", failFastStartTimeout)
	if res.code != 1 {
		t.Fatalf("deploy v2-fail --wait: exit code = %d, want 1; stdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "failed") || !strings.Contains(res.stderr, "health") ||
		!strings.Contains(res.stderr, notHealthy) {
		t.Fatalf("deploy v2-fail --wait: stderr = %q, want the failure and its reason (health, %s)", res.stderr, notHealthy)
	}
	assertStepLines(t, res.stdout, controller.StepPull, controller.StepStart, controller.StepHealth)
	if !regexp.MustCompile(`(?m)^\s+health\s+failed: `+notHealthy).MatchString(res.stdout) ||
		!strings.Contains(res.stdout, "not healthy: GET /health") {
		t.Fatalf("deploy v2-fail --wait: stdout lacks the health probes' lines or the step's failure; stdout:\n%s", res.stdout)
	}
	e.assertServes("v1", "blue")
	if got := e.upstream(); !bytes.Equal(got, upstream) {
		t.Fatalf("upstream changed by the failed deploy:\n%s\nwant:\n%s", got, upstream)
	}

	res = d.cli("deploy", "--service", e.svc, "--image", "v2", "--wait")
	if res.code != 0 {
		t.Fatalf("deploy v2 --wait: exit code = %d, want 0; stdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	e.assertServes("v2", "green")

	res = d.cli("status", "--service", e.svc, "--json")
	if res.code != 0 {
		t.Fatalf("status --json: exit code = %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	var sv api.Service
	if err := json.Unmarshal([]byte(res.stdout), &sv); err != nil {
		t.Fatalf("status --json printed %q: %v", res.stdout, err)
	}
	if sv.ActiveColor != controller.Green || !strings.HasSuffix(sv.ActiveImage, ":v2") || sv.StandbyColor != controller.Blue {
		t.Fatalf("status: active %s %s standby %s, want green ...:v2 standby blue", sv.ActiveColor, sv.ActiveImage, sv.StandbyColor)
	}

	res = d.cli("rollback", "--service", e.svc, "--wait")
	if res.code != 0 {
		t.Fatalf("rollback --wait: exit code = %d, want 0; stdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	assertStepLines(t, res.stdout, controller.StepSwitch)
	e.assertServes("v1", "blue")
}
