package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/pkg/controller"
)

const (
	tokenEnv         = "DEPLOYD_BENCH_TOKEN"
	repository       = "deployd-bench-demo"
	daemonStartLimit = 30 * time.Second
	daemonStopLimit  = 20 * time.Second
	// switchdStopLimit is how long switchd has after SIGTERM; it closes
	// within the daemon's shutdown_timeout (10 s).
	switchdStopLimit  = 15 * time.Second
	deploymentLimit   = 90 * time.Second
	apiTimeout        = 10 * time.Second
	deploymentPolling = 20 * time.Millisecond
)

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// apiClient calls one deployd's API about the benchmark's service, with
// the operator token.
type apiClient struct {
	svc   string
	token string
	// do sends one request (see lab.Daemon.Do).
	do func(ctx context.Context, method, path string, body any, token string) (int, []byte, error)
}

// deploydUnderTest is a deployd whose deploys runDeployd times and whose
// processes it measures: a subprocess (daemon) or a container on the
// swarm (swarmDeployd).
type deploydUnderTest interface {
	client() *apiClient
	// daemonPID is the host pid of `deployd serve`.
	daemonPID(ctx context.Context) (int, error)
	// hasSwitchd says that it runs a switchd (traffic.mode switch).
	hasSwitchd() bool
	// switchdPID waits until a live switchd other than not (0: any) runs
	// and returns its host pid.
	switchdPID(ctx context.Context, not int) (int, error)
	// failureLog is the end of its log, tokens scrubbed, for an error.
	failureLog(ctx context.Context) string
}

// daemon is a running deployd subprocess serving the benchmark's service.
type daemon struct {
	*lab.Daemon
	apiClient
	logPath string
	// bin, config and dataDir are what again starts the next process with.
	bin, config, dataDir string
	// switchMode says that the daemon runs a switchd (traffic.mode switch).
	switchMode bool
}

// writeDaemonConfig writes deployd's config for one service deployed from
// repository behind ng, in traffic mode (config.TrafficMode*), with its
// data in dataDir, and returns its path.
func writeDaemonConfig(dir, dataDir, svc string, ng *lab.Nginx, mode string) (string, error) {
	c := lab.DaemonConfig(dataDir, ng, svc, repository,
		config.Token{Name: "bench", Role: config.RoleOperator, TokenEnv: tokenEnv})
	// Switch mode as a user gets it by default: the service on a unix
	// socket next to its upstream file.
	c.Traffic.Mode = mode
	path := filepath.Join(dir, "deployd.yaml")
	if err := c.WriteFile(path); err != nil {
		return "", fmt.Errorf("deployd config: %w", err)
	}
	return path, nil
}

// startDaemon starts deployd with d's binary and configuration (d's
// Daemon is ignored) and waits until /healthz answers. It appends to d's
// log, so that a restarted daemon's log follows its predecessor's. The
// caller must call Stop.
func startDaemon(ctx context.Context, d daemon) (*daemon, error) {
	token, err := randomHex(24)
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(d.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("deployd log: %w", err)
	}
	defer logf.Close() // the child has its own copy
	d.token = token
	d.Daemon, err = lab.StartDaemon(ctx, lab.DaemonOptions{
		Bin: d.bin, Config: d.config, Env: []string{tokenEnv + "=" + token},
		Output: logf, StopTimeout: daemonStopLimit,
	}, daemonStartLimit)
	if err != nil {
		return nil, fmt.Errorf("%w:\n%s", err, d.logTail())
	}
	d.do = d.Daemon.Do
	return &d, nil
}

func (d *daemon) client() *apiClient                     { return &d.apiClient }
func (d *daemon) daemonPID(context.Context) (int, error) { return d.PID(), nil }
func (d *daemon) hasSwitchd() bool                       { return d.switchMode }
func (d *daemon) failureLog(context.Context) string      { return d.logTail() }

// again starts the next deployd from d's binary, configuration and data
// dir, once d has ended, and waits until it is healthy.
func (d *daemon) again(ctx context.Context) (*daemon, error) {
	return startDaemon(ctx, *d)
}

// switchdPIDLimit bounds the wait for switchd's pid file.
const switchdPIDLimit = 15 * time.Second

// switchdPID waits until the pid file of d's switchd names a live switchd
// other than not (0: any) and returns its pid. The daemon answers /healthz
// once switchd answers on its control socket, which is a moment before
// tableflip writes the pid file.
func (d *daemon) switchdPID(ctx context.Context, not int) (int, error) {
	deadline := time.Now().Add(switchdPIDLimit)
	for {
		pid, err := lab.SwitchdPID(d.dataDir)
		if err != nil {
			return 0, err
		}
		if pid != 0 && pid != not {
			return pid, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no switchd other than pid %d in %s after %s", not, filepath.Join(d.dataDir, "switchd.pid"), switchdPIDLimit)
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return 0, fmt.Errorf("wait for switchd's pid: %w", err)
		}
	}
}

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
func (d *apiClient) call(ctx context.Context, method, path string, body any, want int, out any) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	status, b, err := d.do(ctx, method, path, body, d.token)
	if err != nil {
		return err
	}
	if status != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, status, want, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// deployment is what the benchmark reads of the API's Deployment schema.
// The benchmark is an outside client of the API, so it decodes its own
// type rather than importing the server's.
type deployment struct {
	ID        string            `json:"id"`
	Kind      controller.Kind   `json:"kind"`
	Image     string            `json:"image"`
	FromColor controller.Color  `json:"from_color"`
	ToColor   controller.Color  `json:"to_color"`
	Status    controller.Status `json:"status"`
	Error     string            `json:"error"`
	Steps     []struct {
		Name       string     `json:"name"`
		StartedAt  time.Time  `json:"started_at"`
		FinishedAt *time.Time `json:"finished_at"`
	} `json:"steps"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// deploy asks for tag and returns the accepted deployment's id.
func (d *apiClient) deploy(ctx context.Context, tag string) (string, error) {
	var dep deployment
	err := d.call(ctx, http.MethodPost, "/api/v1/services/"+d.svc+"/deployments",
		map[string]string{"image": tag, "actor": "bench"}, http.StatusAccepted, &dep)
	return dep.ID, err
}

// rollback asks for a rollback and returns the accepted deployment's id.
func (d *apiClient) rollback(ctx context.Context) (string, error) {
	var dep deployment
	err := d.call(ctx, http.MethodPost, "/api/v1/services/"+d.svc+"/rollback", nil, http.StatusAccepted, &dep)
	return dep.ID, err
}

// waitSucceeded polls a deployment until it is done and fails unless it
// succeeded.
func (d *apiClient) waitSucceeded(ctx context.Context, id string) (deployment, error) {
	deadline := time.Now().Add(deploymentLimit)
	for {
		var dep deployment
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

// parentPID reads a process's parent from /proc/<pid>/stat.
func parentPID(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	// After the command name's last ')': state (field 3), ppid (field 4).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, fmt.Errorf("parse ppid in /proc/%d/stat: %w", pid, err)
	}
	return ppid, nil
}

// loadAverage is the machine's 1-minute load average, or -1 when
// /proc/loadavg cannot be read.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
