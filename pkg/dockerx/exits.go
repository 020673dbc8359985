package dockerx

import (
	"context"
	"errors"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/deployd/deployd/internal/engine"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

var (
	_ controller.ExitFeed      = (*Client)(nil)
	_ controller.ContainerFeed = (*Client)(nil)
)

// FollowExits follows the engine's event stream for deployd's replicas that
// die (crash, kill, stop) or are removed, and calls fn with their service.
// The stream has no timeout: it runs until ctx ends or the engine closes
// it.
func (c *Client) FollowExits(ctx context.Context, fn func(service string)) error {
	return c.followReplicas(ctx, time.Time{}, fn, events.ActionDie, events.ActionDestroy)
}

// FollowContainers follows the engine's event stream, from since on, for
// deployd's replicas that are created, started, paused, unpaused, die,
// are removed or change health, and calls fn with their service. The
// stream has no timeout: it runs until ctx ends or the engine closes it.
func (c *Client) FollowContainers(ctx context.Context, since time.Time, fn func(service string)) error {
	return c.followReplicas(ctx, since, fn,
		events.ActionCreate, events.ActionStart, events.ActionPause, events.ActionUnPause,
		events.ActionDie, events.ActionDestroy,
		// The engine matches health_status against the actions
		// "health_status: healthy" and "health_status: unhealthy".
		events.ActionHealthStatus,
	)
}

// followReplicas calls fn with the service of each of deployd's replicas
// (one-offs excepted) that an event of one of actions names, from since on
// (zero: from now), until ctx ends or the stream breaks.
func (c *Client) followReplicas(ctx context.Context, since time.Time, fn func(service string), actions ...events.Action) error {
	// Container labels arrive as the event actor's attributes, so the
	// engine does the filtering on them.
	f := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("label", workload.LabelManaged+"=true"),
	)
	for _, a := range actions {
		f.Add("event", string(a))
	}
	opts := events.ListOptions{Filters: f}
	if !since.IsZero() {
		opts.Since = since.Format(time.RFC3339Nano)
	}
	msgs, errs := c.api.Events(ctx, opts)
	for {
		select {
		case m := <-msgs:
			attrs := m.Actor.Attributes
			if workload.IsOneOff(attrs) || attrs[workload.LabelService] == "" {
				continue
			}
			fn(attrs[workload.LabelService])
		case err := <-errs:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil {
				err = errors.New("stream closed by the engine")
			}
			return engine.WrapErr("follow container events", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
