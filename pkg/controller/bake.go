package controller

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// bake watches the new color for ServiceSpec.Bake after the switch, with
// the watchdog's rules: a probe round every WatchSpec.Interval, failure
// after UnhealthyThreshold consecutive failed rounds, and at once when a
// container stops, restarts or disappears, or when its traffic breaks
// ServiceSpec.BakeTraffic (too many 5xx answers). On failure traffic goes back to
// prev's active color, whose containers still run (drain and standby come
// after the bake), the store records prev's state as it was, standby
// included (retire, which removes the replaced standby, comes after the
// bake too), and the deployment ends rolled back; finish then removes the
// new containers.
//
// A shutdown during the bake ends it early as a success: traffic has
// moved, and undoing a switch nobody found fault with would be a change of
// its own. The deploy then goes on to drain and standby as usual. A
// user's Cancel is refused during the bake as it is after any switch.
func (r *deployRun) bake(ctx context.Context, prev ServiceState, cs []Container) error {
	// The step runs even when shutdown has begun: it is where that is
	// decided, and recorded.
	return r.step(context.WithoutCancel(ctx), StepBake, func(_ context.Context, _ *Step) (string, error) {
		if !prev.ActiveColor.Valid() {
			return "first deploy: no previous color to switch back to", errSkipped
		}
		start := r.c.now()
		reason := r.watchNew(ctx, cs, start)
		if reason == nil {
			if ctx.Err() != nil {
				return fmt.Sprintf("bake cut short by shutdown after %s", r.c.now().Sub(start).Round(time.Millisecond)), nil
			}
			msg := fmt.Sprintf("%s stayed healthy for %s", r.d.ToColor, r.spec.Bake)
			if t, ok := r.c.readTraffic(ctx, r.spec.Name, r.d.ToColor, r.spec.BakeTraffic, r.c.now().Sub(start)); ok {
				msg += "; " + t.verdict()
			}
			return msg, nil
		}
		r.log.WithError(reason).Error("new color failed during bake; switching back")
		if err := r.switchBack(ctx, prev, cs); err != nil {
			return "", fmt.Errorf("%w; %w", reason, err)
		}
		return fmt.Sprintf("%v; traffic moved back to %s", reason, prev.ActiveColor), reason
	})
}

// watchNew runs bake rounds until the bake time is over (nil), ctx ends
// (nil) or the new color fails (the reason). start is when the bake began,
// right after the switch restarted the new color's traffic window.
func (r *deployRun) watchNew(ctx context.Context, cs []Container, start time.Time) error {
	deadline := time.NewTimer(r.spec.Bake)
	defer deadline.Stop()
	tick := time.NewTicker(r.c.watchCfg.Interval)
	defer tick.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			return nil
		case <-tick.C:
		}
		dead, failed := r.bakeRound(ctx, cs)
		if ctx.Err() != nil {
			return nil
		}
		if dead != nil {
			return dead
		}
		// The window already spans many requests: one bad reading decides.
		if t, ok := r.c.readTraffic(ctx, r.spec.Name, r.d.ToColor, r.spec.BakeTraffic, r.c.now().Sub(start)); ok {
			if err := t.problem(); err != nil {
				return err
			}
		}
		if failed == nil {
			failures = 0
			continue
		}
		failures++
		r.logLine("bake round failed (%d/%d): %v", failures, r.c.watchCfg.UnhealthyThreshold, failed)
		if failures >= r.c.watchCfg.UnhealthyThreshold {
			return fmt.Errorf("%d consecutive failed health rounds: %w", failures, failed)
		}
	}
}

// bakeRound inspects and probes the new containers once. dead reports a
// container that stopped, restarted or vanished; failed a round that did
// not pass otherwise.
func (r *deployRun) bakeRound(ctx context.Context, cs []Container) (dead, failed error) {
	now := make([]Container, 0, len(cs))
	for _, ct := range cs {
		cur, err := r.rt.InspectContainer(ctx, ct.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			return fmt.Errorf("container %s disappeared during bake", ct.Name), nil
		case err != nil:
			return nil, fmt.Errorf("inspect %s: %w", ct.Name, err)
		case !cur.Running() || cur.Restarts > ct.Restarts:
			return fmt.Errorf("container %s %s during bake", ct.Name, r.c.deathReport(ctx, cur)), nil
		}
		now = append(now, cur)
	}
	return nil, r.c.probeAll(ctx, r.spec, now)
}

// switchBack moves traffic from the deployment's containers back to
// prev's active color and records that. On an error traffic stays on (or
// is put back on) the new color and the deployment keeps its containers.
func (r *deployRun) switchBack(ctx context.Context, prev ServiceState, cs []Container) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), switchTimeout)
	defer cancel()
	start := r.c.now()
	old, err := r.c.stateContainers(sctx, r.spec.Name, prev, prev.ActiveColor)
	if err != nil {
		return fmt.Errorf("traffic stays on %s: list %s containers: %w", r.d.ToColor, prev.ActiveColor, err)
	}
	up := running(old)
	if len(up) == 0 {
		return fmt.Errorf("traffic stays on %s: %s has no running containers", r.d.ToColor, prev.ActiveColor)
	}
	if err := r.c.router.Switch(sctx, r.spec.Name, prev.ActiveColor, addresses(up)); err != nil {
		return fmt.Errorf("traffic stays on %s: switch back: %w", r.d.ToColor, err)
	}
	back := prev
	back.Name = r.spec.Name
	back.UpdatedAt = r.c.now().UTC()
	if err := r.c.store.SaveSwitch(sctx, back, r.d); err != nil {
		// nginx and the store must agree; the store still names the new
		// color, so traffic returns there.
		if ferr := r.c.router.Switch(sctx, r.spec.Name, r.d.ToColor, addresses(cs)); ferr != nil {
			return fmt.Errorf("record switch back: %w (and returning traffic to %s failed: %v)", err, r.d.ToColor, ferr)
		}
		return fmt.Errorf("traffic stays on %s: record switch back: %w", r.d.ToColor, err)
	}
	r.switched, r.bakedOut = false, true
	r.c.observer.Switched(r.spec.Name, KindRollback, r.c.now().Sub(start))
	r.c.mirror(sctx, back)
	return nil
}
