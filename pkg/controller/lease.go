package controller

import "context"

// lease is the hold on one service, the entry in Controller.leases: taken
// by a deployment for its whole run (launch) or by a maintenance pass for
// a moment (hold). While it is held no other deployment or pass of the
// service starts.
type lease struct {
	// id is the deployment holding the service; "" for a maintenance pass,
	// which nothing can Wait for or Cancel.
	id string
	// done is closed on release.
	done chan struct{}
	// ctx is the holder's own context: Cancel and Close end it with a
	// cause that tells the deploy why.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// switching is set, under Controller.mu, when the deploy reaches the
	// traffic switch: from then on it can no longer be cancelled.
	switching bool
	// finishing is set, under Controller.mu, just before the final record
	// is written; the service is released right after.
	finishing bool
}

// hold takes the service's lease for a background pass. It returns false,
// taking nothing, while a deployment runs or after Close. While held,
// Deploy and Rollback of the service wait for it to be released.
func (c *Controller) hold(service string) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false
	}
	if _, busy := c.leases[service]; busy {
		return nil, false
	}
	// A lease without a deployment id: the service view shows no running
	// deployment.
	l := &lease{done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancelCause(c.runCtx)
	c.leases[service] = l
	return func() { c.release(service, l) }, true
}

// release ends l and frees the service, if l still holds it.
func (c *Controller) release(service string, l *lease) {
	l.cancel(nil)
	c.mu.Lock()
	if c.leases[service] == l {
		delete(c.leases, service)
	}
	c.mu.Unlock()
	close(l.done)
}

// enterSwitch marks the deployment holding l as past its last cancellable
// point. It fails when the deployment was cancelled first.
func (c *Controller) enterSwitch(l *lease) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := l.ctx.Err(); err != nil {
		return context.Cause(l.ctx)
	}
	l.switching = true
	return nil
}

// enterFinish marks the deployment holding l as writing its final record:
// from then on a new Deploy or Rollback of the service waits for the
// release instead of being refused as busy.
func (c *Controller) enterFinish(l *lease) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l.finishing = true
}
