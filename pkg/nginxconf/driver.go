package nginxconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/deployd/deployd/pkg/controller"
)

// Driver tests and reloads one nginx. ExecDriver drives an nginx on this
// host; an nginx in a container needs its own implementation.
type Driver interface {
	// Test runs nginx's config test; the error carries nginx's output.
	Test(ctx context.Context) error
	// Reload asks nginx to reload. Success proves only that the request
	// was delivered, not that the master accepted the new config.
	Reload(ctx context.Context) error
	// Workers returns the PIDs of the master's current worker processes.
	// A master that is not running is an error wrapping
	// controller.ErrUnavailable.
	Workers(ctx context.Context) ([]int, error)
}

// Retirer is optionally implemented by a Driver that can tell when old
// workers have stopped accepting connections. nginx starts new workers
// before it tells the old ones to quit, so for a moment after new workers
// appear the old ones still accept connections with the old upstream.
type Retirer interface {
	// Retired reports whether every one of pids has exited or is shutting
	// down (no longer accepting connections).
	Retired(ctx context.Context, pids []int) (bool, error)
}

// ExecDriver drives an nginx running on this host by running commands and
// reading /proc.
type ExecDriver struct {
	// TestCommand is run for Test, e.g. nginx -t -c /etc/nginx/nginx.conf.
	TestCommand []string
	// ReloadCommand is run for Reload, e.g. nginx -s reload. When empty,
	// Reload sends SIGHUP to the master named in PIDFile.
	ReloadCommand []string
	// PIDFile holds the master's PID.
	PIDFile string
}

var (
	_ Driver  = (*ExecDriver)(nil)
	_ Retirer = (*ExecDriver)(nil)
)

// Test runs TestCommand.
func (d *ExecDriver) Test(ctx context.Context) error {
	return run(ctx, "nginx config test", d.TestCommand)
}

// Reload checks the master is running, then runs ReloadCommand or sends
// SIGHUP. A master that is not running wraps controller.ErrUnavailable.
func (d *ExecDriver) Reload(ctx context.Context) error {
	pid, err := d.master()
	if err != nil {
		return fmt.Errorf("nginx reload: %w", err)
	}
	if len(d.ReloadCommand) == 0 {
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("nginx reload: signal master %d: %w", pid, err)
		}
		return nil
	}
	return run(ctx, "nginx reload", d.ReloadCommand)
}

// Workers reads the master's PID from PIDFile and returns the processes
// whose parent it is.
func (d *ExecDriver) Workers(ctx context.Context) ([]int, error) {
	master, err := d.master()
	if err != nil {
		return nil, fmt.Errorf("nginx workers: %w", err)
	}
	return children("/proc", master)
}

// Retired reports whether each of pids has exited or retitled itself
// "... is shutting down", which an nginx worker does once it has closed its
// listening sockets.
func (d *ExecDriver) Retired(ctx context.Context, pids []int) (bool, error) {
	return retired("/proc", pids), nil
}

func retired(procDir string, pids []int) bool {
	for _, pid := range pids {
		cmdline, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "cmdline"))
		if err != nil {
			continue // exited
		}
		if !bytes.Contains(cmdline, []byte("shutting down")) {
			return false
		}
	}
	return true
}

// master returns the running master's PID; a missing PID file or a dead
// PID means nginx is down, which wraps controller.ErrUnavailable.
func (d *ExecDriver) master() (int, error) {
	if d.PIDFile == "" {
		return 0, errors.New("no nginx pid file configured")
	}
	b, err := os.ReadFile(d.PIDFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("pid file %s missing, nginx not running: %w", d.PIDFile, controller.ErrUnavailable)
	}
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q, not a pid: %w", d.PIDFile, bytes.TrimSpace(b), controller.ErrUnavailable)
	}
	// A zombie still has a /proc entry until its parent reaps it, so the
	// state matters, not only the entry.
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err == nil {
		var state string
		if state, _, err = parseStat(stat); err == nil && (state == "Z" || state == "X") {
			err = errors.New("exited")
		}
	}
	if err != nil {
		return 0, fmt.Errorf("nginx master %d from %s not running: %w", pid, d.PIDFile, controller.ErrUnavailable)
	}
	return pid, nil
}

// children scans procDir/*/stat for processes whose parent is ppid.
// Processes that exit during the scan are skipped.
func children(procDir string, ppid int) ([]int, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", procDir, err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "stat"))
		if err != nil {
			continue
		}
		_, parent, err := parseStat(b)
		if err != nil {
			return nil, fmt.Errorf("%s/%d/stat: %w", procDir, pid, err)
		}
		if parent == ppid {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// parseStat returns the state and parent PID from a /proc/<pid>/stat
// line: "pid (comm) state ppid ...". comm may itself contain spaces and
// parentheses, so the fields after it start at the last ')'.
func parseStat(stat []byte) (state string, ppid int, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return "", 0, errors.New("stat line has no ')'")
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 {
		return "", 0, errors.New("stat line too short")
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return "", 0, fmt.Errorf("stat ppid %q: %w", fields[1], err)
	}
	return fields[0], ppid, nil
}

// run runs argv and returns an error carrying its trimmed combined output.
// A command that cannot be found wraps controller.ErrUnavailable.
func run(ctx context.Context, what string, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("%s: no command configured", what)
	}
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(string(out))
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w: %w", what, err, controller.ErrUnavailable)
	}
	if msg == "" {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %s", what, err, msg)
}
