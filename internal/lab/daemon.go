package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults of DaemonOptions.
const (
	defaultDaemonStopTimeout = 20 * time.Second
	// healthzTimeout bounds one /healthz probe while a daemon starts, so a
	// daemon that accepts but never answers cannot stall the start.
	healthzTimeout = 5 * time.Second
	healthzPolling = 50 * time.Millisecond
)

var (
	// ErrDaemonExited means the daemon ended while it was expected to
	// become healthy; Daemon.ExitErr says how it ended.
	ErrDaemonExited = errors.New("deployd exited")
	// ErrDaemonStillRunning means the daemon outlived a wait for its end.
	ErrDaemonStillRunning = errors.New("deployd still running")
	// ErrDaemonKilled means the daemon outlived its stop timeout after
	// SIGTERM and was killed with SIGKILL.
	ErrDaemonKilled = errors.New("deployd still running after SIGTERM; killed")
)

// ModuleRoot is the directory of go.mod, found through the go command so
// callers work from any directory inside the checkout.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w%s", err, stderrOf(err))
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the deployd module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
}

// FaultInject is the build tag that compiles deployd's fault points in:
// DEPLOYD_FAULT_POINT then makes it SIGKILL itself at a deploy step. Tests
// of crash recovery need it; the benchmark and production binaries do not.
const FaultInject = "faultinject"

// BuildDeployd builds ./cmd/deployd of the module at root into
// outDir/deployd with the given build tags and returns the binary's path.
// race adds the race detector: tests want it so that daemon races fail
// them, the benchmark does not because -race multiplies the cost it
// measures.
func BuildDeployd(ctx context.Context, root, outDir string, race bool, tags ...string) (string, error) {
	out := filepath.Join(outDir, "deployd")
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/deployd")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build deployd: %w\n%s", err, b)
	}
	return out, nil
}

// DaemonOptions says how to run `deployd serve`.
type DaemonOptions struct {
	Bin    string // the deployd binary
	Config string // passed as --config
	// Env is added to this process's environment. DEPLOYD_LISTEN is set
	// after it, to a free loopback port, so that Daemon.URL is right.
	Env []string
	// Output receives the daemon's stdout and stderr; nil discards them.
	// An *os.File is handed to the child as is.
	Output io.Writer
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL;
	// 20s when zero.
	StopTimeout time.Duration
	// Transport carries Do's requests and the /healthz probes, e.g. one
	// that checks each answer; nil means a plain http.Transport that
	// ignores proxy settings.
	Transport http.RoundTripper
	// Listen is the API's address ("127.0.0.1:<port>"); empty picks a free
	// loopback port. A daemon started again at the same address is found
	// by clients (a browser's page) that knew the first.
	Listen string
}

// Daemon is a running `deployd serve` subprocess, started by LaunchDaemon
// or StartDaemon and owned by its caller, who must call Stop (or Kill9).
// Its methods are safe for concurrent use.
type Daemon struct {
	URL string // "http://127.0.0.1:<port>", the daemon's listen address

	cmd         *exec.Cmd
	stopTimeout time.Duration
	client      *http.Client
	done        chan struct{} // closed once the process is reaped
	err         error         // Wait's result, valid after done
}

// LaunchDaemon starts deployd on a free loopback port and returns without
// waiting for it to be ready (see WaitHealthy). The process is not bound
// to a context: it lives until Stop or Kill9, or until it exits itself.
func LaunchDaemon(o DaemonOptions) (*Daemon, error) {
	listen := o.Listen
	if listen == "" {
		port, err := portNotIn(o.Config)
		if err != nil {
			return nil, err
		}
		listen = "127.0.0.1:" + strconv.Itoa(port)
	}
	transport := o.Transport
	if transport == nil {
		transport = &http.Transport{Proxy: nil}
	}
	d := &Daemon{
		URL:         "http://" + listen,
		stopTimeout: o.StopTimeout,
		client:      &http.Client{Transport: transport},
		done:        make(chan struct{}),
	}
	if d.stopTimeout <= 0 {
		d.stopTimeout = defaultDaemonStopTimeout
	}
	d.cmd = exec.Command(o.Bin, "serve", "--config", o.Config)
	env := append(os.Environ(), o.Env...)
	d.cmd.Env = append(env, "DEPLOYD_LISTEN="+listen)
	d.cmd.Stdout = o.Output
	d.cmd.Stderr = o.Output
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start deployd: %w", err)
	}
	// The reaper ends when the process does; Stop and Kill9 make sure it
	// does.
	go func() {
		d.err = d.cmd.Wait()
		d.client.CloseIdleConnections()
		close(d.done)
	}()
	return d, nil
}

// StartDaemon launches deployd and waits up to startTimeout for /healthz
// to answer 200. On failure the daemon is stopped and the error wraps
// ErrDaemonExited (it ended by itself) or says it did not answer in time;
// ctx ending also ends the wait.
func StartDaemon(ctx context.Context, o DaemonOptions, startTimeout time.Duration) (*Daemon, error) {
	d, err := LaunchDaemon(o)
	if err != nil {
		return nil, err
	}
	if err := d.WaitHealthy(ctx, startTimeout); err != nil {
		// Stop's own error adds nothing to why the start failed.
		_ = d.Stop()
		return nil, err
	}
	return d, nil
}

// WaitHealthy polls /healthz until it answers 200, the process exits
// (ErrDaemonExited), timeout passes or ctx ends.
func (d *Daemon) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-d.done:
			return fmt.Errorf("%w at start (%v)", ErrDaemonExited, d.err)
		default:
		}
		if d.healthy(ctx) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("deployd not answering /healthz after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for deployd /healthz: %w", ctx.Err())
		case <-time.After(healthzPolling):
		}
	}
}

func (d *Daemon) healthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, healthzTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Client is the client of Do and the /healthz probes, for requests Do
// cannot make (streams, cookies, custom headers).
func (d *Daemon) Client() *http.Client { return d.client }

// Do sends one API request and returns the status and the whole body (see
// DoJSON).
func (d *Daemon) Do(ctx context.Context, method, path string, body any, token string) (int, []byte, error) {
	return DoJSON(ctx, d.client, d.URL, method, path, body, token)
}

// DoJSON sends one request to deployd's API at baseURL and returns the
// status and the whole body. A non-nil body is sent as JSON; token, when
// set, as a bearer token. Any status is a success here: judging it is the
// caller's business.
func DoJSON(ctx context.Context, hc *http.Client, baseURL, method, path string, body any, token string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, baseURL+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return resp.StatusCode, b, nil
}

// Stop ends the daemon with SIGTERM and waits for it; if it lingers past
// the stop timeout it is killed and Stop returns ErrDaemonKilled. Safe to
// call more than once and after the process is gone (then it returns nil).
func (d *Daemon) Stop() error {
	select {
	case <-d.done:
		return nil
	default:
	}
	// A failed signal means the process is already gone; done says so.
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(d.stopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("%w (after %s)", ErrDaemonKilled, d.stopTimeout)
	}
}

// Kill9 kills the daemon with SIGKILL and waits until it is reaped.
func (d *Daemon) Kill9() error {
	if err := d.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill -9 deployd: %w", err)
	}
	<-d.done
	return nil
}

// Wait waits up to timeout for the daemon to end and returns its exit code
// (-1 when a signal ended it). It returns ErrDaemonStillRunning when the
// daemon outlives timeout; a zero timeout only looks.
func (d *Daemon) Wait(timeout time.Duration) (int, error) {
	select {
	case <-d.done:
	default:
		select {
		case <-d.done:
		case <-time.After(timeout):
			return 0, fmt.Errorf("%w after %s", ErrDaemonStillRunning, timeout)
		}
	}
	var ee *exec.ExitError
	if errors.As(d.err, &ee) {
		return ee.ExitCode(), nil
	}
	if d.err != nil {
		return 0, fmt.Errorf("wait for deployd: %w", d.err)
	}
	return 0, nil
}

// Done is closed once the daemon has ended and been reaped.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// ExitErr is how the daemon ended (exec.Cmd.Wait's result); valid after
// Done is closed.
func (d *Daemon) ExitErr() error {
	select {
	case <-d.done:
		return d.err
	default:
		return nil
	}
}

// ProcessState is the ended daemon's state, nil until Done is closed.
func (d *Daemon) ProcessState() *os.ProcessState {
	select {
	case <-d.done:
		return d.cmd.ProcessState
	default:
		return nil
	}
}

// PID is the daemon's process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// portNotIn is a free loopback port that the config file (if any) does not name:
// a port handed out earlier for the config (a switch's listen address) is
// free again once released, and the kernel may hand it out a second time.
func portNotIn(configPath string) (int, error) {
	cfg, err := os.ReadFile(configPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("read %s: %w", configPath, err)
	}
	for {
		port, err := FreePort()
		if err != nil {
			return 0, err
		}
		if !strings.Contains(string(cfg), ":"+strconv.Itoa(port)) {
			return port, nil
		}
	}
}
