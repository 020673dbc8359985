package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/trafficswitch"
)

// How the daemon watches switchd.
const (
	// switchdStartTimeout bounds a spawn or an upgrade until switchd
	// answers with the daemon's fingerprint.
	switchdStartTimeout = 15 * time.Second
	// switchdCheckInterval is how often the daemon asks switchd whether it
	// is alive, and respawns it (when it may) if not.
	switchdCheckInterval = time.Second
	// switchdLogMax is the size at which the spawned switchd's log file
	// is rotated (once, to switchd.log.1) before the next spawn.
	switchdLogMax = 10 << 20
)

// switchdKeeper makes sure switchd runs the daemon's version and
// configuration: it starts switchd when spawning is on and nothing
// answers, upgrades one whose fingerprint differs, and, while the daemon
// runs, starts it again should it die.
type switchdKeeper struct {
	cfg        *config.Config
	configPath string
	client     *trafficswitch.Client
	log        logrus.FieldLogger
	// up and respawned report to the daemon's metrics.
	up        func(bool)
	respawned func()
	// exited gets a value when switchd ends, so that watch starts the
	// next one at once rather than at its next check: from spawn's wait
	// on a switchd this daemon started, and from the wait call
	// (waitForEnds) on any switchd, one an earlier daemon started too.
	exited chan struct{}
	// startTimeout bounds ensure; zero means switchdStartTimeout.
	startTimeout time.Duration
}

// ensure returns once switchd answers with the daemon's fingerprint.
func (k *switchdKeeper) ensure(ctx context.Context) error {
	timeout := k.startTimeout
	if timeout == 0 {
		timeout = switchdStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	want := switchdFingerprint(k.cfg)
	info, err := k.client.Info(ctx)
	if errors.Is(err, trafficswitch.ErrUnreachable) {
		if !k.cfg.Traffic.Switchd.Spawn {
			// A switchd started beside the daemon (a compose service,
			// a unit) may still be starting.
			if werr := k.waitFor(ctx, func(trafficswitch.Info) bool { return true }, nil); werr != nil {
				return fmt.Errorf("traffic switch process: nothing answers on %s: start `deployd switchd --config FILE` (or set traffic.switchd.spawn: true): %w",
					k.cfg.SwitchdSocket(), err)
			}
		} else if err := k.spawn(ctx); err != nil {
			return err
		}
		info, err = k.client.Info(ctx)
	}
	if err != nil {
		return fmt.Errorf("traffic switch process on %s: %w", k.cfg.SwitchdSocket(), err)
	}
	if info.Fingerprint == want {
		return nil
	}
	k.log.WithFields(logrus.Fields{"pid": info.PID, "version": info.Version}).
		Info("switchd runs another version or configuration: upgrading it in place")
	if err := k.client.Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade the traffic switch process: %w", err)
	}
	return k.waitFor(ctx, func(i trafficswitch.Info) bool { return i.Fingerprint == want }, nil)
}

// spawn starts switchd detached (its own session: a kill of the daemon, or
// of its process group, does not reach it) and waits until it answers.
// Its output goes to data_dir/switchd.log; when it exits before answering,
// the error says what it wrote.
func (k *switchdKeeper) spawn(ctx context.Context) error {
	if k.configPath == "" {
		return errors.New("traffic switch process: cannot start switchd without the configuration file's path")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start switchd: %w", err)
	}
	logPath := filepath.Join(k.cfg.DataDir, "switchd.log")
	if fi, err := os.Stat(logPath); err == nil && fi.Size() > switchdLogMax {
		_ = os.Rename(logPath, logPath+".1")
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("start switchd: %w", err)
	}
	defer logFile.Close()
	offset, _ := logFile.Seek(0, io.SeekEnd)

	cmd := exec.Command(exe, "switchd", "--config", k.configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = switchdEnv(os.Environ())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start switchd: %w", err)
	}
	// Wait reaps switchd should it exit while the daemon runs; if the
	// daemon goes first, init does.
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
		select {
		case k.exited <- struct{}{}:
		default:
		}
	}()
	k.log.WithFields(logrus.Fields{"pid": cmd.Process.Pid, "log": logPath}).Info("started switchd")
	err = k.waitFor(ctx, func(trafficswitch.Info) bool { return true }, exited)
	if errors.Is(err, errSwitchdExited) {
		return fmt.Errorf("switchd exited at start: %s", lastLines(logPath, offset))
	}
	return err
}

var errSwitchdExited = errors.New("switchd exited")

// waitFor polls switchd until its Info satisfies ok, the process behind
// exited (when not nil) ends, or ctx ends.
func (k *switchdKeeper) waitFor(ctx context.Context, ok func(trafficswitch.Info) bool, exited <-chan struct{}) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		info, err := k.client.Info(ctx)
		if err == nil && ok(info) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("switchd (pid %d) answers with fingerprint %s", info.PID, info.Fingerprint)
		}
		last = err
		select {
		case <-exited:
			return errSwitchdExited
		case <-ctx.Done():
			return fmt.Errorf("traffic switch process not ready: %w", errors.Join(ctx.Err(), last))
		case <-t.C:
		}
	}
}

// watch checks switchd every switchdCheckInterval until ctx ends. When it
// does not answer it is reported down and, with spawning on, started
// again: it restores its routing from its state file.
func (k *switchdKeeper) watch(ctx context.Context) {
	t := time.NewTicker(switchdCheckInterval)
	defer t.Stop()
	waiting := make(chan struct{})
	go func() {
		defer close(waiting)
		k.waitForEnds(ctx)
	}()
	defer func() { <-waiting }()
	up := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-k.exited:
		}
		cctx, cancel := context.WithTimeout(ctx, switchdCheckInterval)
		_, err := k.client.Info(cctx)
		cancel()
		if err == nil {
			if !up {
				k.log.Info("switchd answers again")
			}
			up = true
			k.up(true)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if up {
			k.log.WithError(err).Error("switchd does not answer: the services' traffic stops until it is back")
		}
		up = false
		k.up(false)
		if !k.cfg.Traffic.Switchd.Spawn || !errors.Is(err, trafficswitch.ErrUnreachable) {
			continue
		}
		if err := k.spawn(ctx); err != nil {
			k.log.WithError(err).Error("restart switchd")
			continue
		}
		k.respawned()
	}
}

// waitForEnds holds a wait call open on switchd (Client.Wait) and wakes
// watch the moment it ends, so that a switchd this daemon did not start
// (one from before the daemon's restart, or from an upgrade) is also
// started again at once when killed, rather than at the next check.
func (k *switchdKeeper) waitForEnds(ctx context.Context) {
	for ctx.Err() == nil {
		_ = k.client.Wait(ctx)
		if ctx.Err() != nil {
			return
		}
		select {
		case k.exited <- struct{}{}:
		default:
		}
		// Until switchd is back (watch starts it) there is nothing to
		// wait on; a switchd too old to offer the call refuses it at
		// once. Either way, do not spin.
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// switchdEnv is what switchd inherits of the daemon's environment: what
// configuration loading reads, never the tokens and secrets it does not
// need.
func switchdEnv(env []string) []string {
	keep := []string{"PATH=", "HOME=", "TZ=", "DEPLOYD_CONFIG=", "DEPLOYD_DATA_DIR=", "DEPLOYD_LOG_FORMAT=", "DEPLOYD_LISTEN="}
	var out []string
	for _, kv := range env {
		for _, prefix := range keep {
			if strings.HasPrefix(kv, prefix) {
				out = append(out, kv)
				break
			}
		}
	}
	return out
}

// lastLines returns, for an error message, what switchd wrote to the log
// at path after offset: the error of its last error line when it logged
// JSON, else the text's last 2 KiB.
func lastLines(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) <= offset {
		return "(no output; see " + path + ")"
	}
	b = bytes.TrimSpace(b[offset:])
	lines := bytes.Split(b, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		var entry struct{ Level, Error string }
		if json.Unmarshal(lines[i], &entry) == nil && entry.Level == "error" && entry.Error != "" {
			return entry.Error
		}
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return string(b)
}
