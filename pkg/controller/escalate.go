package controller

import (
	"context"
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"
)

// escalate acts on an active color known to be unhealthy, whoever noticed:
// the watchdog after its threshold of failed rounds, or the reconciler
// finding no running containers at all. st is the state the noticer judged.
//
// Per episode, whatever the order and even when both noticers arrive at
// once, people are told once and, when the spec allows AutoRollback and the
// standby is warm and answers a probe per replica, one rollback is started
// and audited. A rollback that could not start (no warm standby yet, a
// deploy in the way) is tried again by the next escalation of the same
// episode. It does not wait for the rollback.
func (c *Controller) escalate(ctx context.Context, spec ServiceSpec, st ServiceState, actor string, problem error) {
	log := c.log.WithField("service", spec.Name).WithField("color", string(st.ActiveColor)).WithField("noticed_by", actor)
	first, current := c.declareIfCurrent(ctx, spec.Name, st, log)
	if !current {
		return
	}
	msg := fmt.Sprintf("%s (%s, %s): %v", spec.Name, st.ActiveColor, st.ActiveImage, problem)
	if first {
		log.WithError(problem).Error("active color unhealthy")
		c.publishState(ctx, spec.Name)
	}
	tell := func(suffix string) {
		if first {
			c.notifyState(NotifyServiceUnhealthy, st, actor, msg+suffix)
		}
	}
	if !spec.AutoRollback {
		tell("")
		return
	}
	if !c.watch.claimRollback(spec.Name, st) {
		// This episode's rollback was started, or is being started by the
		// other noticer right now, or it already moved traffic.
		tell("")
		return
	}
	if why := c.standbyUnfit(ctx, spec, st); why != "" {
		c.watch.unclaimRollback(spec.Name, st)
		log.WithField("reason", why).Warn("not rolling back automatically")
		tell("; no automatic rollback: " + why)
		return
	}
	d, err := c.rollbackFrom(ctx, spec, st, Trigger{Source: actor, Actor: actor})
	if errors.Is(err, errTrafficMoved) {
		tell("")
		return
	}
	if err != nil {
		c.watch.unclaimRollback(spec.Name, st)
		log.WithError(err).Error("automatic rollback refused; the next round tries again")
		tell(fmt.Sprintf("; automatic rollback refused: %v", err))
		return
	}
	log.WithField("deployment", d.ID).Warn("automatic rollback started")
	tell(fmt.Sprintf("; rolling back to %s (%s)", st.StandbyColor, st.StandbyImage))
	entry := AuditEntry{Actor: actor, Action: "rollback", Target: spec.Name, Result: "ok", DeploymentID: d.ID}
	if err := c.RecordAudit(ctx, entry); err != nil {
		log.WithError(err).Error("record automatic rollback in the audit trail")
	}
}

// declareIfCurrent marks the episode of st, if st still describes the
// service, and reports whether this starts the episode. It holds the
// service's lease meanwhile, so no deployment can move traffic (and end the
// episode) between the check and the mark: a noticer late by one rollback
// never announces the episode that rollback just ended. While a deployment
// runs it does nothing: the deployment decides where traffic goes.
func (c *Controller) declareIfCurrent(ctx context.Context, service string, st ServiceState,
	log logrus.FieldLogger) (first, current bool) {
	release, ok := c.hold(service)
	if !ok {
		return false, false
	}
	defer release()
	now, err := c.state(ctx, service)
	if err != nil {
		log.WithError(err).Warn("read state before acting on an unhealthy color")
		return false, false
	}
	if now.ActiveColor != st.ActiveColor || now.ActiveDeployment != st.ActiveDeployment {
		return false, false
	}
	return c.watch.declare(service, st), true
}
