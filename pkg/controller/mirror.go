package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
)

// mirrorTimeout bounds one write of the state to the cluster: a handful of
// label updates.
const mirrorTimeout = 30 * time.Second

// mirrorOf returns the service's runtime as a StateMirror, if it is one.
func (c *Controller) mirrorOf(service string) (StateMirror, bool) {
	m, ok := c.runtime(service).(StateMirror)
	return m, ok
}

// mirror copies st to the cluster after the store recorded it. It never
// fails the caller: traffic has moved and the store holds the truth; a
// failure is logged and the reconciler's next pass mirrors again.
func (c *Controller) mirror(ctx context.Context, st ServiceState) {
	m, ok := c.mirrorOf(st.Name)
	if !ok {
		return
	}
	// Detached: a shutdown right after a switch should still leave the
	// cluster's copy current.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mirrorTimeout)
	defer cancel()
	if err := m.MirrorState(ctx, st); err != nil {
		c.log.WithField("service", st.Name).WithError(err).
			Warn("state not mirrored to the cluster; the reconciler tries again")
	}
}

// sameState reports whether two states name the same active and standby
// sets; when each was written does not matter.
func sameState(a, b ServiceState) bool {
	return a.ActiveColor == b.ActiveColor && a.ActiveImage == b.ActiveImage && a.ActiveDeployment == b.ActiveDeployment &&
		a.StandbyColor == b.StandbyColor && a.StandbyImage == b.StandbyImage && a.StandbyDeployment == b.StandbyDeployment
}

// describeState is st for a log line.
func describeState(st ServiceState) string {
	if !st.ActiveColor.Valid() {
		return "no active color"
	}
	s := fmt.Sprintf("active %s (%s, deployment %s)", st.ActiveColor, st.ActiveImage, st.ActiveDeployment)
	if st.StandbyColor.Valid() {
		s += fmt.Sprintf(", standby %s (%s, deployment %s)", st.StandbyColor, st.StandbyImage, st.StandbyDeployment)
	} else {
		s += ", no standby"
	}
	return s
}

// adoptMirror runs at Start, before routing is restored. A store that
// holds no state of the service (a fresh one: deployd rescheduled onto
// another manager without its volume) takes the cluster's copy, so traffic
// is pointed at the active set again. A store that holds state wins: a
// cluster copy that disagrees is written again from it.
func (c *Controller) adoptMirror(ctx context.Context, name string) error {
	m, ok := c.mirrorOf(name)
	if !ok {
		return nil
	}
	log := c.log.WithField("service", name)
	stored, err := c.store.GetService(ctx, name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("load state of %s: %w", name, err)
	}
	mirrored, found, merr := m.MirroredState(ctx, name)
	if errors.Is(err, ErrNotFound) {
		if merr != nil {
			// Without either copy, which set serves is unknown.
			return fmt.Errorf("read the state of %s from the cluster (the store has none): %w", name, merr)
		}
		if !found {
			return nil
		}
		mirrored.Name = name
		if err := c.store.PutService(ctx, mirrored); err != nil {
			return fmt.Errorf("record the state of %s rebuilt from the cluster: %w", name, err)
		}
		log.Warnf("state of %s rebuilt from the cluster: %s", name, describeState(mirrored))
		return nil
	}
	if merr != nil {
		log.WithError(merr).Warn("cannot read the cluster's copy of the state; the reconciler mirrors the store's")
		return nil
	}
	if !found && !stored.ActiveColor.Valid() {
		return nil
	}
	if found && sameState(stored, mirrored) {
		return nil
	}
	theirs := "nothing"
	if found {
		theirs = describeState(mirrored)
	}
	log.Warnf("the cluster's copy of the state of %s (%s) differs from the store's (%s); the store's wins",
		name, theirs, describeState(stored))
	c.mirror(ctx, stored)
	return nil
}

// reconcileMirror writes the store's state to the cluster again when the
// cluster's copy differs: a mirror that failed after a switch, or one
// changed by hand. It says whether it repaired the copy.
func (c *Controller) reconcileMirror(ctx context.Context, st ServiceState, log logrus.FieldLogger) (bool, error) {
	m, ok := c.mirrorOf(st.Name)
	if !ok {
		return false, nil
	}
	mirrored, found, err := m.MirroredState(ctx, st.Name)
	if err != nil {
		return false, fmt.Errorf("read the cluster's copy of the state of %s: %w", st.Name, err)
	}
	if (found && sameState(st, mirrored)) || (!found && !st.ActiveColor.Valid()) {
		return false, nil
	}
	if err := m.MirrorState(ctx, st); err != nil {
		return false, fmt.Errorf("mirror the state of %s to the cluster: %w", st.Name, err)
	}
	theirs := "nothing"
	if found {
		theirs = describeState(mirrored)
	}
	log.WithField("repair", RepairStateMirror).
		Warnf("reconcile: the cluster's copy of the state of %s said %s; mirrored the store's (%s) again",
			st.Name, theirs, describeState(st))
	c.observer.Repaired(st.Name, RepairStateMirror)
	return true, nil
}
