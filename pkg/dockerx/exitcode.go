package dockerx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/deployd/deployd/internal/engine"
	"github.com/deployd/deployd/pkg/controller"
)

// LastExitCode returns the exit code of the container's most recent death.
//
// A stopped or restarting container shows it in State.ExitCode. A
// container its restart policy has started again does not: the engine
// resets State.ExitCode to 0 when the new process starts, but keeps
// State.FinishedAt, the time of the death. The code is then read from the
// "die" event the engine logged between that death and the new start
// (State.StartedAt): a query over a closed window of the engine's own
// clock, which returns at once and is never skewed by ours.
//
// The engine keeps only its latest events (256 in moby), so on a busy
// engine the die event can be gone; then, as for a container that is gone
// or never died, the error wraps controller.ErrNotFound.
func (c *Client) LastExitCode(ctx context.Context, id string) (int, error) {
	ictx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	r, err := c.api.ContainerInspect(ictx, id)
	if err != nil {
		return 0, engine.WrapErr("inspect container "+id, err)
	}
	s := r.State
	if s == nil {
		return 0, fmt.Errorf("last exit code of %s: no state: %w", id, controller.ErrNotFound)
	}
	switch s.Status {
	case container.StateExited, container.StateDead, container.StateRestarting:
		return s.ExitCode, nil
	}
	died, derr := time.Parse(time.RFC3339Nano, s.FinishedAt)
	started, serr := time.Parse(time.RFC3339Nano, s.StartedAt)
	if derr != nil || serr != nil || died.Year() <= 1 || !died.Before(started) {
		return 0, fmt.Errorf("last exit code of %s: it has not died since it started: %w", id, controller.ErrNotFound)
	}
	return c.dieExitCode(ctx, id, died, started)
}

// dieExitCode returns the exit code of the container's last die event
// between since and until, both on the engine's clock.
func (c *Client) dieExitCode(ctx context.Context, id string, since, until time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel() // also ends the client's reader goroutine on an early return
	msgs, errs := c.api.Events(ctx, events.ListOptions{
		Since:   since.Format(time.RFC3339Nano),
		Until:   until.Format(time.RFC3339Nano),
		Filters: filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)), filters.Arg("container", id), filters.Arg("event", string(events.ActionDie))),
	})
	code, found := 0, false
	for {
		select {
		case m := <-msgs:
			if n, err := strconv.Atoi(m.Actor.Attributes["exitCode"]); err == nil {
				code, found = n, true // events come oldest first: keep the last
			}
		case err := <-errs:
			// The client sends every message before the stream's end.
			switch {
			case !errors.Is(err, io.EOF):
				return 0, engine.WrapErr("events of container "+id, err)
			case !found:
				return 0, fmt.Errorf("last exit code of %s: the engine no longer has its die event of %s: %w",
					id, since.Format(time.RFC3339Nano), controller.ErrNotFound)
			}
			return code, nil
		}
	}
}
