package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// DeployDelivery is Deploy for a signed webhook delivery. The delivery key
// (GitHub's X-GitHub-Delivery, or an Idempotency-Key) makes retries safe:
// a key seen before returns the deployment it started, with replayed set,
// and starts nothing. The service's allowed refs are enforced here
// (EFORBIDDEN). Every check that can refuse the request runs before
// anything is written; Deploy's ping of the Docker engine (EUNAVAILABLE)
// comes before the delivery is remembered, while a replay of a known
// delivery is answered even when the engine is away.
func (c *Controller) DeployDelivery(ctx context.Context, key, service string, req DeployRequest) (d Deployment, replayed bool, err error) {
	spec, err := c.spec(service)
	if err != nil {
		return Deployment{}, false, err
	}
	if len(spec.AllowedRefs) > 0 && !slices.Contains(spec.AllowedRefs, req.Trigger.Ref) {
		return Deployment{}, false, Errorf(EFORBIDDEN, "ref %q may not deploy %s", req.Trigger.Ref, service)
	}
	if _, err := spec.resolveImage(req.Image); err != nil {
		return Deployment{}, false, err
	}
	if key == "" {
		d, err := c.Deploy(ctx, service, req)
		return d, false, err
	}

	// Two copies of one delivery arriving together must not both deploy.
	// The lock is the key's alone: the Docker ping and store I/O below may
	// be slow, and must not hold up other deliveries.
	unlock, err := c.deliveries.lock(ctx, key)
	if err != nil {
		return Deployment{}, false, fmt.Errorf("wait for another copy of delivery %s: %w", key, err)
	}
	defer unlock()
	id, err := c.store.GetDelivery(ctx, key)
	switch {
	case err == nil:
		d, err := c.Deployment(ctx, id)
		return d, true, err
	case !errors.Is(err, ErrNotFound):
		return Deployment{}, false, fmt.Errorf("look up delivery: %w", err)
	}
	req.Trigger.Delivery = key
	d, err = c.Deploy(ctx, service, req)
	if err != nil {
		return Deployment{}, false, err
	}
	if err := c.store.PutDelivery(ctx, key, d.ID); err != nil {
		// The deploy runs; only a retry of this delivery could start a
		// second one, and the busy service refuses that while it runs.
		c.log.WithError(err).WithField("deployment", d.ID).Error("remember webhook delivery")
	}
	return d, false, nil
}
