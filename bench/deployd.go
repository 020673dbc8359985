package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/pkg/controller"
)

const (
	tokenEnv          = "DEPLOYD_BENCH_TOKEN"
	repository        = "deployd-bench-demo"
	daemonStartLimit  = 30 * time.Second
	daemonStopLimit   = 20 * time.Second
	deploymentLimit   = 90 * time.Second
	apiTimeout        = 10 * time.Second
	deploymentPolling = 20 * time.Millisecond
)

// moduleRoot is the directory of go.mod, found through the go command so
// the program works from any directory inside the checkout.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the deployd module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
}

// buildDeployd builds ./cmd/deployd into dir and returns the binary. It is
// built without the race detector unless asked: the benchmark measures the
// daemon's cost, which -race multiplies.
func buildDeployd(ctx context.Context, root, dir string, race bool) (string, error) {
	out := filepath.Join(dir, "deployd")
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/deployd")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build deployd: %w\n%s", err, b)
	}
	return out, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// daemon is a running deployd subprocess.
type daemon struct {
	cmd     *exec.Cmd
	url     string
	svc     string
	token   string
	logPath string
	done    chan struct{}
	err     error // Wait's result, valid after done
	client  *http.Client
}

// writeDaemonConfig writes deployd's config for one service deployed from
// repository behind ng and returns its path.
func writeDaemonConfig(dir, svc string, ng *lab.Nginx) (string, error) {
	q := func(v any) string {
		b, _ := json.Marshal(v) // strings and string slices always marshal
		return string(b)
	}
	conf := fmt.Sprintf(`listen: 127.0.0.1:0
data_dir: %s
log_format: text
shutdown_timeout: 10s
auth:
  tokens:
    - name: bench
      role: operator
      token_env: %s
nginx:
  mode: exec
  upstream_dir: %s
  test_command: %s
  reload_command: %s
  pid_file: %s
  reload_confirm_timeout: 5s
services:
  %s:
    image: %s
    replicas: 1
    port: 8000
    restart: unless-stopped
    pull: missing
    health:
      path: /health
      interval: 100ms
      timeout: 1s
      healthy_threshold: 2
      start_timeout: 20s
    drain: 200ms
    standby: running
`, q(filepath.Join(dir, "data")), tokenEnv, q(ng.UpstreamDir), q(ng.TestCommand), q(ng.ReloadCommand), q(ng.PIDFile), svc, repository)
	path := filepath.Join(dir, "deployd.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", fmt.Errorf("write deployd config: %w", err)
	}
	return path, nil
}

// startDaemon starts deployd and waits until /healthz answers. The caller
// must call stop.
func startDaemon(ctx context.Context, bin, config, svc, logPath string) (*daemon, error) {
	token, err := randomHex(24)
	if err != nil {
		return nil, err
	}
	port, err := lab.FreePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("deployd log: %w", err)
	}
	defer logf.Close() // the child has its own copy
	d := &daemon{url: "http://127.0.0.1:" + strconv.Itoa(port), svc: svc, token: token, logPath: logPath,
		done: make(chan struct{}), client: &http.Client{Timeout: apiTimeout}}
	d.cmd = exec.Command(bin, "serve", "--config", config)
	d.cmd.Env = append(os.Environ(), tokenEnv+"="+token, "DEPLOYD_LISTEN=127.0.0.1:"+strconv.Itoa(port))
	d.cmd.Stdout = logf
	d.cmd.Stderr = logf
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start deployd: %w", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	deadline := time.Now().Add(daemonStartLimit)
	for {
		select {
		case <-d.done:
			return nil, fmt.Errorf("deployd exited at start (%v):\n%s", d.err, d.logTail())
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"/healthz", nil)
		if err != nil {
			return nil, fmt.Errorf("healthz request: %w", err)
		}
		if resp, err := d.client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.stop()
			return nil, fmt.Errorf("deployd not answering /healthz after %s:\n%s", daemonStartLimit, d.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends deployd with SIGTERM, killing it if it lingers. Safe to call
// more than once.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(daemonStopLimit):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// logTail is the end of deployd's log, with the token scrubbed.
func (d *daemon) logTail() string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	b = b[max(0, len(b)-4096):]
	return strings.ReplaceAll(string(b), d.token, "<token>")
}

// call does an API request and decodes a JSON answer into out, failing on
// any status but want.
func (d *daemon) call(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode body: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, d.url+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// deploy asks for tag and returns the accepted deployment's id.
func (d *daemon) deploy(ctx context.Context, tag string) (string, error) {
	var dep controller.Deployment
	err := d.call(ctx, http.MethodPost, "/api/v1/services/"+d.svc+"/deployments",
		map[string]string{"image": tag, "actor": "bench"}, http.StatusAccepted, &dep)
	return dep.ID, err
}

// rollback asks for a rollback and returns the accepted deployment's id.
func (d *daemon) rollback(ctx context.Context) (string, error) {
	var dep controller.Deployment
	err := d.call(ctx, http.MethodPost, "/api/v1/services/"+d.svc+"/rollback", nil, http.StatusAccepted, &dep)
	return dep.ID, err
}

// waitSucceeded polls a deployment until it is done and fails unless it
// succeeded.
func (d *daemon) waitSucceeded(ctx context.Context, id string) (controller.Deployment, error) {
	deadline := time.Now().Add(deploymentLimit)
	for {
		var dep controller.Deployment
		if err := d.call(ctx, http.MethodGet, "/api/v1/deployments/"+id, nil, http.StatusOK, &dep); err != nil {
			return dep, err
		}
		if dep.Status.Done() {
			if dep.Status != controller.StatusSucceeded {
				return dep, fmt.Errorf("deployment %s (%s %s) ended %s: %s", id, dep.Kind, dep.Image, dep.Status, dep.Error)
			}
			return dep, nil
		}
		if time.Now().After(deadline) {
			return dep, fmt.Errorf("deployment %s not done after %s (status %s)", id, deploymentLimit, dep.Status)
		}
		select {
		case <-ctx.Done():
			return dep, fmt.Errorf("wait for deployment %s: %w", id, ctx.Err())
		case <-time.After(deploymentPolling):
		}
	}
}

// rssBytes reads a process's resident set from /proc/<pid>/status.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("parse VmRSS %q: %w", rest, err)
				}
				return kb * 1024, nil
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// clockTicks is USER_HZ, 100 on every Linux this runs on; reading it
// properly would need cgo (sysconf).
const clockTicks = 100

// cpuSeconds reads utime+stime of a process from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	// The command name may hold spaces and parens; fields after the last
	// ')' start with state (field 3); utime and stime are fields 14, 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse utime/stime in /proc/%d/stat", pid)
	}
	return float64(ut+st) / clockTicks, nil
}
