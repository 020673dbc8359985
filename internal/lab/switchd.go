package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SwitchdPID returns the pid of the traffic switch process (deployd
// switchd) of the daemon whose data dir is dataDir, from the pid file it
// writes once ready. It returns 0 and no error when there is none, or when
// the pid file names a process that is gone or is not a switchd.
func SwitchdPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "switchd.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read switchd pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("switchd pid file: %w", err)
	}
	if !isSwitchd(pid) {
		return 0, nil
	}
	return pid, nil
}

// isSwitchd reports whether pid is a live `deployd switchd` process. Its
// command line says so; a pid reused by anything else is not touched.
func isSwitchd(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := bytes.Split(cmdline, []byte{0})
	if len(args) < 2 || string(args[1]) != "switchd" {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	// A zombie (state Z) has ended; only its parent's wait is missing.
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	return true
}

// StopSwitchd ends the switchd of dataDir's daemon, and every older
// switchd of that data dir still serving out a handoff: SIGTERM, then
// SIGKILL past timeout. Daemons in switch mode start switchd detached, so
// it outlives them; tests and benchmarks stop it here when they are done.
func StopSwitchd(ctx context.Context, dataDir string, timeout time.Duration) error {
	pids := switchdsOf(dataDir)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for isSwitchd(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// switchdsOf lists the switchd processes whose command line names a
// configuration file in dataDir's parent directory (where the harnesses
// write it), plus the one in the pid file.
func switchdsOf(dataDir string) []int {
	var pids []int
	if pid, err := SwitchdPID(dataDir); err == nil && pid > 0 {
		pids = append(pids, pid)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return pids
	}
	dir := filepath.Dir(dataDir) + string(filepath.Separator)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !isSwitchd(pid) {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		if len(pids) == 0 || pids[0] != pid {
			pids = append(pids, pid)
		}
	}
	return pids
}
