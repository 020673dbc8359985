package controller

import (
	"context"
	"fmt"
	"time"
)

// noopNotifier and noopObserver stand in for a nil Notifier or Observer,
// so the deploy code calls them without checking.
type noopNotifier struct{}

func (noopNotifier) Notify(Notification) {}

type noopObserver struct{}

func (noopObserver) DeploymentFinished(Deployment)          {}
func (noopObserver) Switched(string, Kind, time.Duration)   {}
func (noopObserver) HealthCheckFailed(string)               {}
func (noopObserver) ServiceState(string, Color, bool, bool) {}
func (noopObserver) Repaired(string, string)                {}
func (noopObserver) Unaudited(string, int)                  {}

// notifyf sends a notification about deployment d.
func (c *Controller) notifyf(kind string, d Deployment, actor, format string, args ...any) {
	n := Notification{
		Kind:       kind,
		Service:    d.Service,
		Deployment: d.ID,
		Image:      d.Image,
		Color:      d.ToColor,
		Actor:      actor,
		Message:    fmt.Sprintf(format, args...),
		Time:       c.now().UTC(),
	}
	// A claim belongs to whoever asked for the deployment; bake switching
	// back acts on its own account.
	if actor == d.Trigger.Actor {
		n.OnBehalfOf = d.Trigger.OnBehalfOf
	}
	c.notify(n)
}

// publishState tells the Observer where a service stands. The standby
// counts as available when the store records one; whether it is warm is
// the rollback's business. healthy is the watchdog's view.
func (c *Controller) publishState(ctx context.Context, service string) {
	st, err := c.state(ctx, service)
	if err != nil {
		c.log.WithError(err).WithField("service", service).Warn("read state for metrics")
		return
	}
	standby, healthy := st.StandbyColor.Valid() && st.StandbyImage != "", !c.watch.unhealthy(service)
	c.observer.ServiceState(service, st.ActiveColor, standby, healthy)
	c.publishService(service, stateMessage(st, standby, healthy))
}

// stateMessage says where a service stands in one line of the system feed.
func stateMessage(st ServiceState, standby, healthy bool) string {
	if !st.ActiveColor.Valid() {
		return "not deployed"
	}
	msg := fmt.Sprintf("active %s (%s)", st.ActiveColor, st.ActiveImage)
	if standby {
		msg += fmt.Sprintf(", standby %s (%s)", st.StandbyColor, st.StandbyImage)
	} else {
		msg += ", no standby"
	}
	if healthy {
		return msg + ", healthy"
	}
	return msg + ", unhealthy"
}
