package nginxconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/atomicfile"
	"github.com/deployd/deployd/pkg/controller"
)

// upstreamFileMode lets nginx, which may run as another user, read the
// upstream files.
const upstreamFileMode = 0o644

const (
	defaultConfirmTimeout = 5 * time.Second
	defaultPollInterval   = 10 * time.Millisecond
	// restoreGrace bounds the restore path, which runs even when the
	// caller's context is already cancelled.
	restoreGrace = 10 * time.Second
)

// Options configure a Router.
type Options struct {
	// Dir holds one <service>.conf per service; created (0755) if missing.
	Dir string
	// TemplatePath names a user text/template; "" uses the embedded one.
	TemplatePath string
	Driver       Driver
	Logger       logrus.FieldLogger
	// ReloadConfirmTimeout bounds the wait for new worker processes after
	// a reload; default 5s.
	ReloadConfirmTimeout time.Duration
	// Hook, when set, is called at the named points of a switch (see
	// PointAfterUpstreamWritten and PointAfterReload) with the router's
	// lock held; it exists for fault-injection tests and must not call
	// back into the Router.
	Hook func(point string)
	// pollInterval is how often Workers is polled; tests shorten it.
	pollInterval time.Duration
}

// Points of a switch at which Options.Hook is called.
const (
	// PointAfterUpstreamWritten: the new upstream file is in place, nginx
	// has neither tested nor loaded it.
	PointAfterUpstreamWritten = "after-upstream-written"
	// PointAfterReload: nginx is proven to serve the new upstream, the
	// switch has not returned yet.
	PointAfterReload = "after-reload"
)

// Router implements controller.Router on one nginx. Its methods are safe
// for concurrent use and serialized: an nginx reload is global, so two
// services switching at once must not interleave their test and reload.
type Router struct {
	dir            string
	tmpl           *template.Template
	driver         Driver
	log            logrus.FieldLogger
	confirmTimeout time.Duration
	pollInterval   time.Duration
	hook           func(point string)

	mu sync.Mutex
}

var _ controller.Router = (*Router)(nil)

// New checks o, creates o.Dir and parses the template, so that a bad
// template is a startup error rather than a failed deploy.
func New(o Options) (*Router, error) {
	if o.Dir == "" {
		return nil, errors.New("nginxconf: upstream dir is required")
	}
	if o.Driver == nil {
		return nil, errors.New("nginxconf: driver is required")
	}
	if o.Logger == nil {
		return nil, errors.New("nginxconf: logger is required")
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("nginxconf: create upstream dir: %w", err)
	}
	tmpl := DefaultTemplate()
	if o.TemplatePath != "" {
		text, err := os.ReadFile(o.TemplatePath)
		if err != nil {
			return nil, fmt.Errorf("nginxconf: read template: %w", err)
		}
		if tmpl, err = ParseTemplate(filepath.Base(o.TemplatePath), string(text)); err != nil {
			return nil, fmt.Errorf("nginxconf: %w", err)
		}
	}
	r := &Router{
		dir:            o.Dir,
		tmpl:           tmpl,
		driver:         o.Driver,
		log:            o.Logger,
		confirmTimeout: o.ReloadConfirmTimeout,
		pollInterval:   o.pollInterval,
		hook:           o.Hook,
	}
	if r.hook == nil {
		r.hook = func(string) {}
	}
	if r.confirmTimeout <= 0 {
		r.confirmTimeout = defaultConfirmTimeout
	}
	if r.pollInterval <= 0 {
		r.pollInterval = defaultPollInterval
	}
	return r, nil
}

func (r *Router) path(service string) string {
	return filepath.Join(r.dir, service+".conf")
}

// EnsurePlaceholder writes the placeholder upstream for service unless a
// file for it already exists. It neither tests nor reloads nginx: it runs
// before nginx may be able to start (the site config references upstreams
// that do not exist yet), and a running nginx cannot reference an upstream
// it has never loaded.
func (r *Router) EnsurePlaceholder(ctx context.Context, service string) error {
	out, err := Render(r.tmpl, service, nil)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	path := r.path(service)
	if _, err := os.Lstat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("placeholder %s: %w", service, err)
	}
	if err := atomicfile.Write(path, out, upstreamFileMode); err != nil {
		return fmt.Errorf("placeholder %s: %w", service, err)
	}
	r.log.WithField("service", service).Info("wrote placeholder upstream")
	return nil
}

// Switch points service's upstream at addrs (none: the placeholder) and
// returns once nginx runs workers started after the reload. On any failure
// the previous file is restored, nginx is reloaded again if a reload had
// been asked for, and the error is returned; errors from a driver that
// cannot reach nginx wrap controller.ErrUnavailable. The restore runs to
// completion even if ctx is cancelled midway. The color is not part of
// the file: nginx only knows addresses.
func (r *Router) Switch(ctx context.Context, service string, _ controller.Color, addrs []string) error {
	_, err := r.SwitchEach(ctx, map[string][]string{service: addrs})
	return err
}

// SwitchEach is Switch for several services at once, with one config test
// and one reload for all of them: all or nothing, every file is restored
// when any step fails. Services whose file already holds what they would
// get are left alone; with none left nginx is not reloaded. It returns the
// services whose file it changed, in order. It serves a
// caller that points many upstreams at once (every service at the traffic
// switch, when nginx first answers), where one reload per service would
// take seconds each on a busy engine.
func (r *Router) SwitchEach(ctx context.Context, want map[string][]string) ([]string, error) {
	services := slices.Sorted(maps.Keys(want))
	rendered := make([][]byte, len(services))
	for i, service := range services {
		out, err := Render(r.tmpl, service, want[service])
		if err != nil {
			return nil, err
		}
		rendered[i] = out
	}
	what := "switch " + strings.Join(services, ", ")
	log := r.log.WithField("service", strings.Join(services, ","))

	r.mu.Lock()
	defer r.mu.Unlock()

	var prevs []previous
	for i, service := range services {
		path := r.path(service)
		old, err := os.ReadFile(path)
		existed := err == nil
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, r.fail(ctx, log, prevs, false, fmt.Errorf("%s: read current upstream of %s: %w", what, service, err))
		}
		if existed && bytes.Equal(old, rendered[i]) {
			r.log.WithField("service", service).Debug("upstream unchanged, not reloading")
			continue
		}
		prevs = append(prevs, previous{service: service, path: path, data: old, existed: existed})
		if err := atomicfile.Write(path, rendered[i], upstreamFileMode); err != nil {
			// Usually the rename never happened, but a failed directory
			// fsync comes after it: restore either way.
			return nil, r.fail(ctx, log, prevs, false, fmt.Errorf("%s: %w", what, err))
		}
	}
	if len(prevs) == 0 {
		return nil, nil
	}
	r.hook(PointAfterUpstreamWritten)
	if err := r.driver.Test(ctx); err != nil {
		return nil, r.fail(ctx, log, prevs, false, fmt.Errorf("%s: new upstream rejected: %w", what, err))
	}
	before, err := r.driver.Workers(ctx)
	if err != nil {
		return nil, r.fail(ctx, log, prevs, false, fmt.Errorf("%s: %w", what, err))
	}
	if err := r.driver.Reload(ctx); err != nil {
		return nil, r.fail(ctx, log, prevs, true, fmt.Errorf("%s: %w", what, err))
	}
	if err := r.confirm(ctx, before); err != nil {
		return nil, r.fail(ctx, log, prevs, true, fmt.Errorf("%s: %w", what, err))
	}
	r.hook(PointAfterReload)
	changed := make([]string, len(prevs))
	for i, prev := range prevs {
		changed[i] = prev.service
		r.log.WithFields(logrus.Fields{"service": prev.service, "addrs": want[prev.service]}).Info("switched upstream")
	}
	return changed, nil
}

// InSync reports whether service's upstream file holds exactly the bytes
// Switch(addrs) would write. A missing file is not in sync; a file that
// cannot be read is an error.
func (r *Router) InSync(ctx context.Context, service string, _ controller.Color, addrs []string) (bool, error) {
	want, err := Render(r.tmpl, service, addrs)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	got, err := os.ReadFile(r.path(service))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read upstream of %s: %w", service, err)
	}
	return bytes.Equal(got, want), nil
}

// Drain waits the whole timeout: nginx cannot tell deployd how many
// requests the old workers and upstream connections still carry to a
// color, so only time can be given. It returns ctx's error when ctx ends
// first.
func (r *Router) Drain(ctx context.Context, _ string, color controller.Color, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-t.C:
		return fmt.Sprintf("waited %s for in-flight requests on %s", timeout, color), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Check runs nginx's config test and checks the master runs (an error
// wrapping controller.ErrUnavailable when it does not). It does not take the
// router's lock: a switch replaces files atomically, so the test sees a
// whole config either way, and readiness should not wait for a reload to be
// confirmed.
func (r *Router) Check(ctx context.Context) error {
	if err := r.driver.Test(ctx); err != nil {
		return fmt.Errorf("nginx config test: %w", err)
	}
	// The config test passes with nginx stopped, yet every switch would
	// fail: a stopped nginx is not ready.
	if _, err := r.driver.Workers(ctx); err != nil {
		return fmt.Errorf("nginx not running: %w", err)
	}
	return nil
}

// previous is what a service's upstream file held before a switch.
type previous struct {
	service, path string
	data          []byte
	existed       bool
}

// fail restores the previous upstream files (or removes new ones where
// there were none), reloads nginx again if a reload had been requested,
// and returns cause joined with any restore error.
func (r *Router) fail(ctx context.Context, log logrus.FieldLogger, prevs []previous, reloaded bool, cause error) error {
	// The caller's cancellation must not leave the new file in place.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.confirmTimeout+restoreGrace)
	defer cancel()
	log = log.WithError(cause)

	var restoreErrs []error
	for _, prev := range prevs {
		var err error
		if prev.existed {
			err = atomicfile.Write(prev.path, prev.data, upstreamFileMode)
		} else {
			err = atomicfile.Remove(prev.path)
		}
		if err != nil {
			restoreErrs = append(restoreErrs, fmt.Errorf("restore %s: %w", prev.service, err))
		}
	}
	if restoreErr := errors.Join(restoreErrs...); restoreErr != nil {
		log.WithField("restore_error", restoreErr).Error("could not restore previous upstream")
		return errors.Join(cause, restoreErr)
	}
	if !reloaded {
		log.Warn("upstream switch failed before reload; previous file restored")
		return cause
	}
	// nginx may have loaded the new file; reload the restored one. Best
	// effort: the error returned is the switch's.
	before, err := r.driver.Workers(ctx)
	if err == nil {
		err = r.driver.Reload(ctx)
	}
	if err == nil {
		err = r.confirm(ctx, before)
	}
	if err != nil {
		log.WithField("reload_error", err).Error("upstream switch failed; previous file restored but reloading it failed")
		return cause
	}
	log.Warn("upstream switch failed; previous file restored and reloaded")
	return cause
}

// confirm polls Workers until one appears that is not in before. nginx -s
// reload exits 0 even when the master rejects the config, and a master
// that rejected it keeps its old workers, so new PIDs are the proof.
func (r *Router) confirm(parent context.Context, before []int) error {
	ctx, cancel := context.WithTimeout(parent, r.confirmTimeout)
	defer cancel()
	tick := time.NewTicker(r.pollInterval)
	defer tick.Stop()
	var lastErr error
	for {
		now, err := r.driver.Workers(ctx)
		if err != nil {
			lastErr = err
		} else if slices.ContainsFunc(now, func(pid int) bool { return !slices.Contains(before, pid) }) {
			r.awaitRetired(ctx, before)
			return nil
		}
		select {
		case <-ctx.Done():
			if err := parent.Err(); err != nil {
				return fmt.Errorf("reload not confirmed: %w", err)
			}
			if lastErr != nil {
				return fmt.Errorf("reload not confirmed within %s: %w", r.confirmTimeout, lastErr)
			}
			return fmt.Errorf("reload not confirmed within %s: no new nginx workers", r.confirmTimeout)
		case <-tick.C:
		}
	}
}

// awaitRetired waits, within ctx, until the old workers stop accepting
// connections, when the driver can tell. The reload is already proven by
// the new workers, so running out of time here is only logged.
func (r *Router) awaitRetired(ctx context.Context, old []int) {
	ret, ok := r.driver.(Retirer)
	if !ok || len(old) == 0 {
		return
	}
	tick := time.NewTicker(r.pollInterval / 5)
	defer tick.Stop()
	for {
		done, err := ret.Retired(ctx, old)
		if err == nil && done {
			return
		}
		select {
		case <-ctx.Done():
			r.log.WithField("workers", old).Warn("old nginx workers still accepting connections after reload")
			return
		case <-tick.C:
		}
	}
}
