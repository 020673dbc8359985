package controller

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// waitHealthy polls every replica until each has answered threshold
// consecutive probes successfully, within spec.StartTimeout. It gives up at
// once when a replica stops running or restarts: waiting for the timeout
// would only delay a verdict that is already known.
//
// note receives each probe's verdict for the progress stream. The Hook
// is called at PointDuringHealth after the first round of probes.
func (c *Controller) waitHealthy(ctx context.Context, service string, spec HealthSpec, cs []Container, threshold int,
	note func(format string, args ...any)) (string, error) {
	if threshold < 1 {
		threshold = 1
	}
	start := c.now()
	ctx, cancel := context.WithTimeout(ctx, spec.StartTimeout)
	defer cancel()

	reps := make([]*replicaHealth, len(cs))
	for i, ct := range cs {
		reps[i] = &replicaHealth{Container: ct}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for round := 1; ; round++ {
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return "", fmt.Errorf("not healthy within %s: %s", spec.StartTimeout, unhealthyReport(reps, threshold))
			}
			return "", ctx.Err()
		case <-timer.C:
		}
		healthy := 0
		for _, rep := range reps {
			// Replicas that already passed are inspected too: one that dies
			// while its siblings are still starting must not get traffic.
			now, err := c.runtime(service).InspectContainer(ctx, rep.ID)
			if err != nil {
				if ctx.Err() != nil {
					continue // reported by the select above
				}
				return "", fmt.Errorf("inspect %s: %w", rep.Name, err)
			}
			if !now.Running() || now.Restarts > rep.Restarts {
				return "", fmt.Errorf("container %s %s during the health check", rep.Name, c.deathReport(ctx, now))
			}
			if rep.streak >= threshold {
				healthy++
				continue
			}
			if err := c.prober.Probe(ctx, rep.Address, spec); err != nil {
				if ctx.Err() != nil && rep.lastErr != nil {
					// The start timeout cut this probe short; the report
					// keeps what the replica last answered.
					continue
				}
				c.probeResults.set(rep.ID, HealthUnhealthy)
				c.observer.HealthCheckFailed(service)
				rep.streak, rep.lastErr = 0, err
				note("%s: not healthy: %v", rep.Name, err)
				continue
			}
			c.probeResults.set(rep.ID, HealthHealthy)
			rep.streak++
			note("%s: healthy (%d/%d)", rep.Name, rep.streak, threshold)
			if rep.streak >= threshold {
				healthy++
			}
		}
		if round == 1 {
			c.hook(PointDuringHealth)
		}
		if healthy == len(reps) {
			return fmt.Sprintf("%d replica(s) healthy after %s", len(reps),
				c.now().Sub(start).Round(time.Millisecond)), nil
		}
		timer.Reset(spec.Interval)
	}
}

// deathReport says how a container that stopped or restarted ended, e.g.
// "restarted (exit code 2, 1 restart(s))", for a failure reason.
func (c *Controller) deathReport(ctx context.Context, ct Container) string {
	verb, code := "exited", strconv.Itoa(ct.ExitCode)
	if ct.State == "restarting" || ct.Running() {
		verb = "restarted"
	}
	if ct.Running() {
		// Up again after its restart, ct.ExitCode is the new process's (0),
		// which says nothing about the death; the runtime remembers that.
		code = "unknown"
		if n, err := c.runtime(ct.Service).LastExitCode(ctx, ct.ID); err == nil {
			code = strconv.Itoa(n)
		}
	}
	return fmt.Sprintf("%s (exit code %s, %d restart(s))", verb, code, ct.Restarts)
}

// replicaHealth is what waitHealthy knows of one replica.
type replicaHealth struct {
	Container
	streak  int // consecutive successful probes
	lastErr error
}

// unhealthyReport says, per replica not yet healthy, its last probe error.
func unhealthyReport(reps []*replicaHealth, threshold int) string {
	var parts []string
	for _, r := range reps {
		if r.streak >= threshold {
			continue
		}
		msg := "no successful probe"
		if r.lastErr != nil {
			msg = r.lastErr.Error()
		}
		parts = append(parts, fmt.Sprintf("%s: %s", r.Name, msg))
	}
	return strings.Join(parts, "; ")
}

// Health verdicts as deployd's own probes last saw them.
const (
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// maxProbeResults bounds probeResults: containers come and go, and the
// oldest results are of containers long removed.
const maxProbeResults = 1024

// probeResults remembers the last probe result (HealthHealthy or
// HealthUnhealthy) per container id, the oldest forgotten first.
type probeResults struct {
	mu    sync.Mutex
	byID  map[string]string
	order []string
}

func (p *probeResults) set(id, health string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.byID[id]; !ok {
		p.order = append(p.order, id)
		if len(p.order) > maxProbeResults {
			delete(p.byID, p.order[0])
			p.order = p.order[1:]
		}
	}
	p.byID[id] = health
}

// get returns the container's last probe result, "" when none is known.
func (p *probeResults) get(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byID[id]
}
