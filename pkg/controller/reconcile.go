package controller

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/sirupsen/logrus"
)

// Repair kinds the reconciler reports to the Observer and in notifications.
const (
	RepairUpstream        = "upstream"
	RepairOrphanContainer = "orphan_container"
	RepairOrphanOneOff    = "orphan_oneoff"
	// RepairStateMirror: the cluster's copy of the state (StateMirror)
	// differed from the store's and was written again.
	RepairStateMirror = "state_mirror"
)

// Reconcile runs one reconciler pass over every configured service and
// returns how many repairs it made. A service is skipped while a deployment
// of it runs, and no deployment of it can start while its pass runs, so
// the reconciler never fights a deploy. Per service it
//   - rewrites and reloads an upstream that no longer points at the active
//     color's running containers (edited or deleted by hand), or that is not
//     the placeholder before the first deploy;
//   - removes deployd-labelled containers that are neither the active
//     color's nor the standby's (another deployment's containers of the
//     same color included: a deploy's that failed, or a standby a deploy
//     replaced), and one-off containers no running deployment owns;
//   - reports (log, notification, Observer) an active color without running
//     containers, without moving traffic: which version should serve is the
//     operator's call;
//   - on a runtime that mirrors the state (StateMirror), writes the
//     store's state to the cluster again when the cluster's copy differs;
//     a failure is logged and tried again next pass, never fails the pass.
//
// The error joins what kept services from being reconciled (the Docker
// engine or nginx unavailable); the other services are still handled.
func (c *Controller) Reconcile(ctx context.Context) (int, error) {
	var total atomic.Int64
	errs := c.eachService(ctx, func(ctx context.Context, name string) error {
		n, err := c.reconcileService(ctx, name)
		total.Add(int64(n))
		if err != nil {
			return fmt.Errorf("reconcile %s: %w", name, err)
		}
		return nil
	})
	return int(total.Load()), errors.Join(errs...)
}

func (c *Controller) reconcileService(ctx context.Context, name string) (int, error) {
	release, ok := c.hold(name)
	if !ok {
		c.log.WithField("service", name).Debug("reconcile: deployment running, skipped")
		return 0, nil
	}
	p, err := c.reconcileHeld(ctx, c.services[name])
	release()
	// Acting on a dead active color may start a rollback, which takes the
	// service's lock: only after the pass has released it.
	if p.activeDown != nil {
		c.escalate(ctx, c.services[name], p.state, SourceReconciler, p.activeDown)
	}
	return p.repairs, err
}

// pass is what one service's reconciler pass did and found.
type pass struct {
	repairs int
	state   ServiceState
	// activeDown is set when the active color is left without running
	// containers: to be escalated once the service is released.
	activeDown error
}

// reconcileHeld is the pass itself; the caller holds the service.
func (c *Controller) reconcileHeld(ctx context.Context, spec ServiceSpec) (pass, error) {
	log := c.log.WithField("service", spec.Name)
	st, err := c.state(ctx, spec.Name)
	if err != nil {
		return pass{}, err
	}
	p := pass{state: st}
	all, err := c.runtime(spec.Name).Containers(ctx, spec.Name)
	if err != nil {
		return p, unavailable("list containers of "+spec.Name, err)
	}
	var errs []error
	restarted := false
	active := func() []Container { return members(all, spec.Name, st.ActiveColor, st.ActiveDeployment) }
	if st.ActiveColor.Valid() && len(running(active())) == 0 {
		p.activeDown = fmt.Errorf("active color %s has no running containers", st.ActiveColor)
		log.WithField("color", string(st.ActiveColor)).Error("reconcile: active color has no running containers")
		// A warm standby takes traffic at once through escalate's rollback;
		// otherwise the active color comes back as it was recorded.
		noRollback := "auto_rollback is off"
		if spec.AutoRollback {
			noRollback = c.standbyUnfit(ctx, spec, st)
		}
		if noRollback != "" {
			n, err := c.restartActive(ctx, spec, st, active(), noRollback, log)
			p.repairs += n
			restarted = n > 0
			if err != nil {
				errs = append(errs, err)
			}
			if n > 0 {
				if all, err = c.runtime(spec.Name).Containers(ctx, spec.Name); err != nil {
					return p, errors.Join(append(errs, unavailable("list containers of "+spec.Name, err))...)
				}
				if len(running(active())) > 0 {
					p.activeDown = nil
				}
			}
		}
	}

	if p.activeDown == nil {
		n, err := c.reconcileUpstream(ctx, st, all, restarted, log)
		p.repairs += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	n, err := c.removeOrphans(ctx, st, all, log)
	p.repairs += n
	if err != nil {
		errs = append(errs, err)
	}
	if fixed, err := c.reconcileMirror(ctx, st, log); err != nil {
		log.WithError(err).Warn("reconcile: state not mirrored to the cluster; trying again next pass")
	} else if fixed {
		p.repairs++
	}
	return p, errors.Join(errs...)
}

// reconcileUpstream puts back the upstream the store says should be there.
// After restarted, the active color's replicas came back on new addresses:
// the rewrite is part of that repair, not one of its own.
func (c *Controller) reconcileUpstream(ctx context.Context, st ServiceState, all []Container, restarted bool,
	log logrus.FieldLogger) (int, error) {
	var want []string
	if st.ActiveColor.Valid() {
		want = addresses(running(members(all, st.Name, st.ActiveColor, st.ActiveDeployment)))
	}
	inSync, err := c.router.InSync(ctx, st.Name, st.ActiveColor, want)
	if err != nil {
		return 0, fmt.Errorf("compare upstream of %s: %w", st.Name, err)
	}
	if inSync {
		return 0, nil
	}
	if err := c.router.Switch(ctx, st.Name, st.ActiveColor, want); err != nil {
		return 0, fmt.Errorf("restore upstream of %s: %w", st.Name, err)
	}
	// A router may accept a switch it could carry out only in part (the
	// traffic switch moves its targets while nginx is away); a repair is
	// one only once everything is back in place, else the next pass tries
	// again, counting nothing meanwhile.
	if ok, err := c.router.InSync(ctx, st.Name, st.ActiveColor, want); err != nil || !ok {
		return 0, fmt.Errorf("restore upstream of %s: still not in place after the switch (%v)", st.Name, err)
	}
	if restarted {
		log.WithField("addrs", want).Info("reconcile: upstream points at the restarted active color")
		return 0, nil
	}
	msg := fmt.Sprintf("upstream of %s was not what deployd wrote; pointed it at the active color %s again",
		st.Name, st.ActiveColor)
	if !st.ActiveColor.Valid() {
		msg = fmt.Sprintf("upstream of %s pointed somewhere before any deploy; reset it to the placeholder", st.Name)
	}
	c.repaired(st, RepairUpstream, msg, log.WithField("addrs", want))
	return 1, nil
}

// removeOrphans removes containers no color or deployment accounts for.
// The caller holds the service's lock, so no deployment of it runs and
// every one-off left is debris.
func (c *Controller) removeOrphans(ctx context.Context, st ServiceState, all []Container, log logrus.FieldLogger) (int, error) {
	repairs := 0
	var errs []error
	if st.ActiveColor.Valid() {
		keep := map[string]bool{}
		for _, color := range []Color{st.ActiveColor, st.StandbyColor} {
			for _, ct := range members(all, st.Name, color, st.deploymentOf(color)) {
				keep[ct.ID] = color.Valid()
			}
		}
		for _, ct := range all {
			if keep[ct.ID] {
				continue
			}
			if err := c.runtime(st.Name).RemoveContainer(ctx, ct.ID); err != nil {
				errs = append(errs, fmt.Errorf("remove orphan container %s: %w", ct.Name, err))
				continue
			}
			repairs++
			c.repaired(st, RepairOrphanContainer,
				fmt.Sprintf("removed container %s of %s (color %q, deployment %s): it belongs to neither the active nor the standby",
					ct.Name, st.Name, ct.Color, ct.Deployment),
				log.WithFields(logrus.Fields{"container": ct.Name, "color": string(ct.Color), "deployment": ct.Deployment}))
		}
	} else if len(all) > 0 {
		// With no recorded active color the store cannot say which
		// containers are debris; removing them could take down what
		// nginx serves. Start removes an interrupted first deploy's.
		log.WithField("containers", len(all)).Warn("reconcile: containers exist but no active color is recorded; leaving them")
	}
	oneOffs, err := c.runtime(st.Name).OneOffs(ctx, st.Name)
	if err != nil {
		return repairs, errors.Join(append(errs, unavailable("list one-offs of "+st.Name, err))...)
	}
	for _, ct := range oneOffs {
		if err := c.runtime(st.Name).RemoveContainer(ctx, ct.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove orphan one-off %s: %w", ct.Name, err))
			continue
		}
		repairs++
		c.repaired(st, RepairOrphanOneOff,
			fmt.Sprintf("removed one-off container %s of %s left by deployment %s", ct.Name, st.Name, ct.Deployment),
			log.WithFields(logrus.Fields{"container": ct.Name, "deployment": ct.Deployment}))
	}
	return repairs, errors.Join(errs...)
}

// repaired logs, notifies and counts one repair.
func (c *Controller) repaired(st ServiceState, kind, msg string, log logrus.FieldLogger) {
	log.WithField("repair", kind).Warn("reconcile: " + msg)
	c.notifyState(NotifyRepair, st, SourceReconciler, msg)
	c.observer.Repaired(st.Name, kind)
}
