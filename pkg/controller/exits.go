package controller

import (
	"context"
	"time"
)

// defaultExitSettle is how long a service is left alone after one of its
// containers exited before the reconciler looks at it: long enough for
// Docker's restart policy to bring back a crashed replica, and for
// replicas killed together to be judged together; short next to any
// watchdog round.
const defaultExitSettle = time.Second

// Backoff between attempts to follow the exit feed again after it broke.
const (
	exitFeedRetryMin = time.Second
	exitFeedRetryMax = 30 * time.Second
)

// FollowExits makes a container's death noticed at once rather than at the
// next scheduled round: each exit the feed reports starts a reconciler pass
// of its service once the service settled (see Options.ExitSettle), which
// escalates a dead active color exactly as a scheduled pass does. Exits
// within the settle time make one pass. When the feed breaks (the engine
// went away) it is followed again with backoff, and every service gets a
// pass, since exits in the gap went unseen. It blocks until ctx ends, and
// returns at once without a feed.
func (c *Controller) FollowExits(ctx context.Context) {
	if c.exits == nil {
		return
	}
	exited := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.passesAfterExits(ctx, exited)
	}()
	report := func(service string) {
		if _, ok := c.services[service]; !ok {
			return
		}
		select {
		case exited <- service:
		default:
			// The queue only fills while passes are already due for
			// many services; one more exit changes nothing.
		}
	}
	c.followRetrying(ctx, "container exit feed broke; following it again",
		func() error { return c.exits.FollowExits(ctx, report) },
		func() {
			for _, name := range c.names {
				report(name)
			}
		})
	<-done
}

// followRetrying runs follow until ctx ends. Each time it breaks, the
// error is logged with msg and follow runs again after a wait that starts
// at exitFeedRetryMin and doubles up to exitFeedRetryMax, back to the
// minimum once a follow lasted longer than the maximum; again, when not
// nil, runs after the wait, before the next follow.
func (c *Controller) followRetrying(ctx context.Context, msg string, follow func() error, again func()) {
	wait := exitFeedRetryMin
	for {
		started := c.now()
		err := follow()
		if ctx.Err() != nil {
			return
		}
		if c.now().Sub(started) > exitFeedRetryMax {
			wait = exitFeedRetryMin
		}
		c.log.WithError(err).WithField("retry_in", wait.String()).Warn(msg)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		if ctx.Err() != nil {
			return
		}
		wait = min(2*wait, exitFeedRetryMax)
		if again != nil {
			again()
		}
	}
}

// passesAfterExits runs one reconciler pass per service that reported an
// exit, c.settle after the first exit of the batch.
func (c *Controller) passesAfterExits(ctx context.Context, exited <-chan string) {
	due := map[string]time.Time{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case service := <-exited:
			if _, ok := due[service]; !ok {
				due[service] = time.Now().Add(c.settle)
			}
		case <-timer.C:
		}
		now := time.Now()
		next := time.Time{}
		for service, at := range due {
			if at.After(now) {
				if next.IsZero() || at.Before(next) {
					next = at
				}
				continue
			}
			delete(due, service)
			log := c.log.WithField("service", service)
			log.Debug("container exited: reconciling the service now")
			n, err := c.reconcileService(ctx, service)
			if err != nil && ctx.Err() == nil {
				log.WithError(err).Warn("reconcile after a container exit failed")
			}
			if n > 0 {
				log.WithField("repairs", n).Info("reconciler made repairs after a container exit")
			}
		}
		// Since Go 1.23 Stop and Reset leave no stale tick to drain.
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
}
