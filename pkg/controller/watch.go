package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Watchdog defaults for a zero WatchSpec.
const (
	defaultUnhealthyThreshold = 3
	defaultWatchInterval      = 10 * time.Second
)

// watchEntry is what the controller remembers of one service's active
// color between watchdog rounds and reconciler passes.
type watchEntry struct {
	// color and deployment identify what was watched: when either changes
	// (a deploy or rollback happened) the count starts over.
	color      Color
	deployment string
	failures   int // consecutive failed rounds
	// declared is set once the episode was announced (logged, notified,
	// observed), by whichever of the watchdog and the reconciler noticed
	// first; a passing round ends the episode.
	declared bool
	// rollingBack is set while an automatic rollback of this episode is
	// being started and stays set once it was: one episode, one rollback.
	rollingBack bool
}

// watchBook holds the entries. Watch rounds, reconciler passes and deploys
// all touch it, possibly at the same moment.
type watchBook struct {
	mu        sync.Mutex
	byService map[string]*watchEntry
}

// entry returns the service's entry for the active color of st, starting
// a fresh one when traffic moved since the last. The caller holds b.mu.
func (b *watchBook) entry(service string, st ServiceState) *watchEntry {
	e := b.byService[service]
	if e == nil || e.color != st.ActiveColor || e.deployment != st.ActiveDeployment {
		e = &watchEntry{color: st.ActiveColor, deployment: st.ActiveDeployment}
		b.byService[service] = e
	}
	return e
}

func (b *watchBook) unhealthy(service string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.byService[service]
	return e != nil && e.declared
}

// reset forgets a service's count, after traffic moved to other containers.
func (b *watchBook) reset(service string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.byService, service)
}

// declare marks the active color of st unhealthy. It reports whether this
// starts the episode, so that people are told once whoever notices first.
func (b *watchBook) declare(service string, st ServiceState) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entry(service, st)
	if e.declared {
		return false
	}
	e.declared = true
	return true
}

// claimRollback reserves the automatic rollback of the episode of st for
// the caller. It returns false when another caller holds it or already
// started it, or when the episode ended (traffic moved) since it was
// declared.
func (b *watchBook) claimRollback(service string, st ServiceState) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.byService[service]
	if e == nil || e.color != st.ActiveColor || e.deployment != st.ActiveDeployment || e.rollingBack {
		return false
	}
	e.rollingBack = true
	return true
}

// unclaimRollback gives the claim back when no rollback was started, so a
// later round may try again.
func (b *watchBook) unclaimRollback(service string, st ServiceState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.byService[service]; e != nil && e.color == st.ActiveColor && e.deployment == st.ActiveDeployment {
		e.rollingBack = false
	}
}

// record adds a round's result. It returns the consecutive failures so far
// and whether a passing round just ended an unhealthy episode.
func (b *watchBook) record(service string, st ServiceState, failed bool) (failures int, recovered bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entry(service, st)
	if !failed {
		recovered = e.declared
		e.failures, e.declared, e.rollingBack = 0, false, false
		return 0, recovered
	}
	e.failures++
	return e.failures, false
}

// Watch runs one watchdog round over every service: the containers of
// each active color are inspected and probed once, and, when a
// TrafficReader counts its requests, its recent share of 5xx answers is
// judged by WatchSpec.Traffic; too many fail the round as a failed probe
// does. A service is skipped while a deployment of it runs. After WatchSpec.UnhealthyThreshold
// consecutive failed rounds the service is reported unhealthy (logged,
// notified, observed) once per episode, and, when its spec allows
// AutoRollback and its standby is warm and answers a probe per replica, a
// rollback is started with the watchdog as its actor. It does not wait for
// that rollback.
//
// The error joins what kept services from being judged (the Docker engine
// unreachable, the store unreadable); such a service's count is left as
// it was.
func (c *Controller) Watch(ctx context.Context) error {
	return errors.Join(c.eachService(ctx, func(ctx context.Context, name string) error {
		if err := c.watchService(ctx, c.services[name]); err != nil {
			return fmt.Errorf("watch %s: %w", name, err)
		}
		return nil
	})...)
}

// roundConcurrency bounds how many services one watchdog round or one
// reconciler pass works on at once. Their time goes to waiting on the
// engine and on probes: with dozens of services taken one after another,
// rounds outlasted their intervals (docs/scaling.md).
const roundConcurrency = 8

// eachService runs fn for every service, roundConcurrency at a time, and
// returns fn's errors in the services' order. Once ctx ends no further
// service is begun.
func (c *Controller) eachService(ctx context.Context, fn func(ctx context.Context, name string) error) []error {
	errs := make([]error, len(c.names))
	var g errgroup.Group
	g.SetLimit(roundConcurrency)
	for i, name := range c.names {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			errs[i] = fn(ctx, name)
			return nil
		})
	}
	_ = g.Wait() // the errors are in errs
	return errs
}

func (c *Controller) busy(service string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.leases[service]
	return ok
}

func (c *Controller) watchService(ctx context.Context, spec ServiceSpec) error {
	if c.busy(spec.Name) {
		return nil
	}
	log := c.log.WithField("service", spec.Name)
	st, err := c.state(ctx, spec.Name)
	if err != nil {
		return err
	}
	if !st.ActiveColor.Valid() {
		return nil
	}
	cs, err := c.stateContainers(ctx, spec.Name, st, st.ActiveColor)
	if err != nil {
		return err
	}
	problem := c.checkColor(ctx, spec, cs)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if t, ok := c.readTraffic(ctx, spec.Name, st.ActiveColor, c.watchCfg.Traffic, 0); ok {
		if bad := t.problem(); bad != nil && problem != nil {
			problem = fmt.Errorf("%w; %w", problem, bad)
		} else if bad != nil {
			problem = bad
		}
	}
	// A deploy that began while this round probed has made its verdict
	// stale: the containers it judged may no longer be the active ones.
	if c.busy(spec.Name) {
		return nil
	}
	failures, recovered := c.watch.record(spec.Name, st, problem != nil)
	log = log.WithField("color", string(st.ActiveColor))
	switch {
	case recovered:
		log.Info("active color healthy again")
		c.publishState(ctx, spec.Name)
	case problem != nil && failures >= c.watchCfg.UnhealthyThreshold:
		// Every round past the threshold escalates again: the episode is
		// announced and rolled back once, but a rollback that could not
		// start yet (the standby not warm, a deploy in the way) is retried.
		c.escalate(ctx, spec, st, SourceWatchdog,
			fmt.Errorf("failed %d consecutive watchdog rounds: %w", failures, problem))
	case problem != nil:
		log.WithError(problem).WithField("failures", failures).Warn("watchdog round failed")
	}
	return nil
}

// standbyUnfit says why the standby cannot take traffic at once, or ""
// when it is warm (all its containers run), each answers one probe, and
// going back to it crosses no breaking schema change. A
// cold standby is not started by the watchdog: that takes a full health
// check, which is a decision for a person.
func (c *Controller) standbyUnfit(ctx context.Context, spec ServiceSpec, st ServiceState) string {
	if !st.StandbyColor.Valid() || st.StandbyImage == "" {
		return "no standby"
	}
	if why := c.standbySchemaUnfit(ctx, spec, st); why != "" {
		return why
	}
	cs, err := c.stateContainers(ctx, spec.Name, st, st.StandbyColor)
	if err != nil {
		return "list standby containers: " + err.Error()
	}
	if len(cs) == 0 {
		return fmt.Sprintf("standby %s has no containers", st.StandbyColor)
	}
	if up := running(cs); len(up) != len(cs) {
		return fmt.Sprintf("standby %s is cold (%d of %d running)", st.StandbyColor, len(up), len(cs))
	}
	if err := c.probeAll(ctx, spec, cs); err != nil {
		return fmt.Sprintf("standby %s is not healthy: %v", st.StandbyColor, err)
	}
	return ""
}

// checkColor judges one round of a color's containers: none at all, any
// not running, or any failed probe is a failure.
func (c *Controller) checkColor(ctx context.Context, spec ServiceSpec, cs []Container) error {
	if len(cs) == 0 {
		return errors.New("no containers")
	}
	var down []string
	for _, ct := range cs {
		if !ct.Running() {
			down = append(down, fmt.Sprintf("%s %s", ct.Name, ct.State))
		}
	}
	probeErr := c.probeAll(ctx, spec, running(cs))
	if len(down) > 0 {
		msg := "not running: " + strings.Join(down, ", ")
		if probeErr != nil {
			msg += "; " + probeErr.Error()
		}
		return errors.New(msg)
	}
	return probeErr
}

// probeAll probes each container once and returns the failures in one
// line. Verdicts and failed probes are recorded as during a deploy's
// health check.
func (c *Controller) probeAll(ctx context.Context, spec ServiceSpec, cs []Container) error {
	// In parallel: one replica that hangs until the probe's timeout must
	// not hold up the others' probes, nor the round.
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, ct := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.prober.Probe(ctx, ct.Address, spec.Health)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var failed []string
	for i, ct := range cs {
		if errs[i] != nil {
			c.probeResults.set(ct.ID, HealthUnhealthy)
			c.observer.HealthCheckFailed(spec.Name)
			failed = append(failed, fmt.Sprintf("%s: %v", ct.Name, errs[i]))
			continue
		}
		c.probeResults.set(ct.ID, HealthHealthy)
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// notifyState sends a notification about a service rather than a
// deployment.
func (c *Controller) notifyState(kind string, st ServiceState, actor, msg string) {
	c.notify(Notification{
		Kind:       kind,
		Service:    st.Name,
		Deployment: st.ActiveDeployment,
		Image:      st.ActiveImage,
		Color:      st.ActiveColor,
		Actor:      actor,
		Message:    msg,
		Time:       c.now().UTC(),
	})
}
