package trafficswitch

import (
	"context"
	"fmt"
	"time"
)

// DrainResult says what a Drain waited for, for the deploy step's message.
type DrainResult struct {
	// Waited is the requests in flight on the color when Drain began,
	// Upgraded its upgraded (WebSocket) connections open then. Event
	// streams are requests: Waited counts them.
	Waited   int
	Upgraded int
	// Took is how long Drain waited.
	Took time.Duration
	// TimedOut is set when the timeout came first. Then ForcedClosed
	// upgraded connections and ClosedStreams event streams were closed,
	// and Remaining other requests were still in flight: they are left to
	// finish (or to fail when the color's replicas stop).
	TimedOut      bool
	ForcedClosed  int
	ClosedStreams int
	Remaining     int
}

// Drain waits until nothing of color is in flight on the service: no
// request and no upgraded connection. Requests are waited for as long as
// they run, up to timeout; upgraded connections (WebSocket) and event
// streams (text/event-stream responses), long-lived by nature, are left
// open until the timeout and then closed, a stream with a clean end for
// its client, which reconnects to the active color. A timeout of zero or
// less waits for nothing and closes them at once. When Drain returns without a timeout, the color's idle pooled
// connections are closed too, as its replicas are about to stop or idle.
//
// It blocks. Errors: ErrNotFound for an unknown service, ErrConflict when
// color is the active one (nothing would ever drain; when a switch back
// to color happened by the timeout, nothing is closed and the error is
// ErrConflict too),
// ctx's error when ctx ends first, with the result so far. A color that
// never had targets has nothing to drain: a zero result and no error.
func (sw *Switch) Drain(ctx context.Context, service, color string, timeout time.Duration) (DrainResult, error) {
	s, err := sw.serviceFor(service, false)
	if err != nil {
		return DrainResult{}, err
	}
	s.mu.Lock()
	c := s.colors[color]
	s.mu.Unlock()
	if c == nil {
		return DrainResult{}, nil
	}
	if s.isActive(c) {
		return DrainResult{}, fmt.Errorf("drain %s of %s: it is the active color: %w", color, service, ErrConflict)
	}
	start := time.Now()
	var res DrainResult
	res.Waited, res.Upgraded = c.counts()

	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	} else {
		closed := make(chan time.Time)
		close(closed)
		deadline = closed
	}
	drained := c.waitIdle(ctx, deadline)
	res.Took = time.Since(start)
	if drained {
		c.transport.CloseIdleConnections()
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("drain %s of %s: %w", color, service, err)
	}
	if s.isActive(c) {
		return res, fmt.Errorf("drain %s of %s: it became the active color again: %w", color, service, ErrConflict)
	}
	res.TimedOut = true
	res.Remaining, _ = c.counts()
	res.ForcedClosed = c.closeUpgraded()
	res.ClosedStreams = c.closeStreams()
	res.Remaining = max(res.Remaining-res.ClosedStreams, 0)
	return res, nil
}

func (s *service) isActive(c *colorState) bool {
	set := s.active.Load()
	return set != nil && set.color == c
}
