package dockerx

import (
	"context"
	"errors"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/deployd/deployd/pkg/controller"
)

var _ controller.ExitFeed = (*Client)(nil)

// FollowExits follows the engine's event stream for deployd's replicas that
// die (crash, kill, stop) or are removed, and calls fn with their service.
// The stream has no timeout: it runs until ctx ends or the engine closes
// it.
func (c *Client) FollowExits(ctx context.Context, fn func(service string)) error {
	// Container labels arrive as the event actor's attributes, so the
	// engine does the filtering on them.
	f := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("event", string(events.ActionDie)),
		filters.Arg("event", string(events.ActionDestroy)),
	)
	msgs, errs := c.api.Events(ctx, events.ListOptions{Filters: f})
	for {
		select {
		case m := <-msgs:
			attrs := m.Actor.Attributes
			if isOneOff(attrs) || attrs[LabelService] == "" {
				continue
			}
			fn(attrs[LabelService])
		case err := <-errs:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil {
				err = errors.New("stream closed by the engine")
			}
			return wrapErr("follow container events", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
