// Package compose tests what ships for production: the docker-compose stack
// on locally built images, the nginx site configs, the systemd unit, the
// host config example, the Prometheus rules and the README's configuration
// reference.
package compose

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/testenv"
)

// repoRoot is the module's root directory, where the shipped files live.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// requireTool returns the path of a command, skipping the test without it
// (failing it with CI=true, where every tool must be installed).
func requireTool(t *testing.T, name string, alternatives ...string) string {
	t.Helper()
	for _, n := range append([]string{name}, alternatives...) {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := name + " is not installed (scripts/ensure-deps.sh installs it)"
	if testenv.InCI() {
		t.Fatalf("%s; CI=true, so this is a failure, not a skip", msg)
	}
	t.Skipf("%s; skipping (with CI=true this fails)", msg)
	return ""
}

// run runs a command with a timeout and returns its combined output,
// failing the test when it does not exit 0.
func run(t *testing.T, dir string, env []string, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, env, timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// runErr is run for callers that want to look at a failure themselves.
func runErr(dir string, env []string, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// selfSignedCert writes fullchain.pem and privkey.pem for localhost and
// 127.0.0.1 into dir.
func selfSignedCert(t *testing.T, dir string) {
	t.Helper()
	requireTool(t, "openssl")
	run(t, dir, nil, time.Minute, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
		"-keyout", "privkey.pem", "-out", "fullchain.pem", "-days", "2", "-subj", "/CN=localhost",
		"-addext", "subjectAltName=DNS:localhost,DNS:deployd.localhost,DNS:app.localhost,IP:127.0.0.1")
}

var lookPath = exec.LookPath

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
