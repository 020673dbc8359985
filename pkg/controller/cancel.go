package controller

import (
	"context"
	"errors"
)

// errCancelled is the cause a deployment's context ends with when a user
// cancels it, as opposed to a shutdown.
var errCancelled = errors.New("cancelled by request")

// Cancel asks a running deployment to stop at its next safe point: its
// containers are removed, traffic is untouched and it ends as cancelled.
// It returns the deployment as it stands; use Wait for the outcome.
// ENOTFOUND for an unknown id; ECONFLICT when the deployment has ended or
// has begun switching traffic (a rollback is the way back then).
func (c *Controller) Cancel(ctx context.Context, id string) (Deployment, error) {
	d, err := c.Deployment(ctx, id)
	if err != nil {
		return Deployment{}, err
	}
	if d.Status.Done() {
		return Deployment{}, Errorf(ECONFLICT, "deployment %s has already ended (%s)", id, d.Status)
	}
	c.mu.Lock()
	var l *lease
	for _, x := range c.leases {
		if x.id == id {
			l = x
		}
	}
	switch {
	case l == nil:
		c.mu.Unlock()
		return Deployment{}, Errorf(ECONFLICT, "deployment %s is not running in this deployd", id)
	case l.switching:
		c.mu.Unlock()
		return Deployment{}, Errorf(ECONFLICT, "deployment %s is already switching traffic; roll back instead", id)
	}
	l.cancel(errCancelled)
	c.mu.Unlock()
	// A deployment still holding the service may have written its final record
	// just before the cancel: then the cancel changed nothing.
	if after, err := c.Deployment(ctx, id); err == nil && after.Status.Done() && after.Status != StatusCancelled {
		return Deployment{}, Errorf(ECONFLICT, "deployment %s has already ended (%s)", id, after.Status)
	}
	return d, nil
}
