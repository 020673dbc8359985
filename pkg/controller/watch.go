package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Watchdog defaults for a zero WatchSpec.
const (
	defaultUnhealthyThreshold = 3
	defaultWatchInterval      = 10 * time.Second
)

// watchEntry is what the watchdog remembers of one service between rounds.
type watchEntry struct {
	// color and deployment identify what was watched: when either changes
	// (a deploy or rollback happened) the count starts over.
	color      Color
	deployment string
	failures   int // consecutive failed rounds
	unhealthy  bool
}

// watchBook holds the watchdog's entries; Watch rounds and deploys both
// touch it.
type watchBook struct {
	mu        sync.Mutex
	byService map[string]*watchEntry
}

func (b *watchBook) unhealthy(service string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.byService[service]
	return e != nil && e.unhealthy
}

// reset forgets a service's count, after traffic moved to other containers.
func (b *watchBook) reset(service string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.byService, service)
}

// markUnhealthy records that the service's active color st is known to be
// unhealthy, from outside a watchdog round (the reconciler finding its
// containers gone). It reports whether this starts the episode, so that
// people are told once whoever notices first.
func (b *watchBook) markUnhealthy(service string, st ServiceState) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.byService[service]
	if e == nil || e.color != st.ActiveColor || e.deployment != st.ActiveDeployment {
		e = &watchEntry{color: st.ActiveColor, deployment: st.ActiveDeployment}
		b.byService[service] = e
	}
	if e.unhealthy {
		return false
	}
	e.unhealthy = true
	return true
}

// verdict is what a round changed for a service.
type verdict int

const (
	verdictNone      verdict = iota
	verdictUnhealthy         // the threshold was just reached
	verdictRecovered         // a passing round after an unhealthy episode
)

// record adds a round's result and says whether it starts or ends an
// unhealthy episode; within an episode it reports nothing new, so people
// are told once.
func (b *watchBook) record(service string, st ServiceState, failed bool, threshold int) (verdict, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.byService[service]
	if e == nil || e.color != st.ActiveColor || e.deployment != st.ActiveDeployment {
		e = &watchEntry{color: st.ActiveColor, deployment: st.ActiveDeployment}
		b.byService[service] = e
	}
	if !failed {
		was := e.unhealthy
		e.failures, e.unhealthy = 0, false
		if was {
			return verdictRecovered, 0
		}
		return verdictNone, 0
	}
	e.failures++
	if e.failures >= threshold && !e.unhealthy {
		e.unhealthy = true
		return verdictUnhealthy, e.failures
	}
	return verdictNone, e.failures
}

// Watch runs one watchdog round over every service: the containers of
// each active color are inspected and probed once. A service is skipped
// while a deployment of it runs. After WatchSpec.UnhealthyThreshold
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
	var errs []error
	for _, name := range c.names {
		if err := c.watchService(ctx, c.services[name]); err != nil {
			errs = append(errs, fmt.Errorf("watch %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) busy(service string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.running[service]
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
	cs, err := c.colorContainers(ctx, spec.Name, st.ActiveColor)
	if err != nil {
		return err
	}
	problem := c.checkColor(ctx, spec, cs)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// A deploy that began while this round probed has made its verdict
	// stale: the containers it judged may no longer be the active ones.
	if c.busy(spec.Name) {
		return nil
	}
	v, failures := c.watch.record(spec.Name, st, problem != nil, c.watchCfg.UnhealthyThreshold)
	log = log.WithField("color", string(st.ActiveColor))
	switch v {
	case verdictRecovered:
		log.Info("active color healthy again")
		c.publishState(ctx, spec.Name)
	case verdictUnhealthy:
		c.unhealthy(ctx, spec, st, problem, failures, log)
	default:
		if problem != nil {
			log.WithError(problem).WithField("failures", failures).Warn("watchdog round failed")
		}
	}
	return nil
}

// unhealthy reports a service whose active color failed too many rounds
// and rolls it back when it may and can.
func (c *Controller) unhealthy(ctx context.Context, spec ServiceSpec, st ServiceState, problem error,
	failures int, log logrus.FieldLogger) {
	msg := fmt.Sprintf("%s (%s, %s) failed %d consecutive health rounds: %v",
		spec.Name, st.ActiveColor, st.ActiveImage, failures, problem)
	log.WithError(problem).WithField("failures", failures).Error("active color unhealthy")
	c.publishState(ctx, spec.Name)
	if !spec.AutoRollback {
		c.notifyState(NotifyServiceUnhealthy, st, "watchdog", msg)
		return
	}
	if why := c.standbyUnfit(ctx, spec, st); why != "" {
		log.WithField("reason", why).Warn("not rolling back automatically")
		c.notifyState(NotifyServiceUnhealthy, st, "watchdog", msg+"; no automatic rollback: "+why)
		return
	}
	c.notifyState(NotifyServiceUnhealthy, st, "watchdog",
		msg+fmt.Sprintf("; rolling back to %s (%s)", st.StandbyColor, st.StandbyImage))
	d, err := c.Rollback(ctx, spec.Name, Trigger{Source: "watchdog", Actor: "watchdog"})
	entry := AuditEntry{Actor: "watchdog", Action: "rollback", Target: spec.Name, Result: "ok", DeploymentID: d.ID}
	if err != nil {
		entry.Result = ErrorCode(err)
		log.WithError(err).Error("automatic rollback refused")
	} else {
		log.WithField("deployment", d.ID).Warn("automatic rollback started")
	}
	if aerr := c.RecordAudit(ctx, entry); aerr != nil {
		log.WithError(aerr).Error("record automatic rollback in the audit trail")
	}
}

// standbyUnfit says why the standby cannot take traffic at once, or ""
// when it is warm (all its containers run) and each answers one probe. A
// cold standby is not started by the watchdog: that takes a full health
// check, which is a decision for a person.
func (c *Controller) standbyUnfit(ctx context.Context, spec ServiceSpec, st ServiceState) string {
	if !st.StandbyColor.Valid() || st.StandbyImage == "" {
		return "no standby"
	}
	cs, err := c.colorContainers(ctx, spec.Name, st.StandbyColor)
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
	var errs []string
	for _, ct := range cs {
		if err := c.prober.Probe(ctx, ct.Address, spec.Health); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.verdicts.set(ct.ID, HealthUnhealthy)
			c.observer.HealthCheckFailed(spec.Name)
			errs = append(errs, fmt.Sprintf("%s: %v", ct.Name, err))
			continue
		}
		c.verdicts.set(ct.ID, HealthHealthy)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// notifyState sends a notification about a service rather than a
// deployment.
func (c *Controller) notifyState(kind string, st ServiceState, actor, msg string) {
	c.notifier.Notify(Notification{
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
