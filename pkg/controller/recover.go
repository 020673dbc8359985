package controller

import (
	"context"
	"fmt"
	"slices"

	"github.com/sirupsen/logrus"
)

// Start brings the world in line with the store after a start or a crash,
// before any request is served:
//   - on a runtime that mirrors the state (StateMirror), a service the
//     store knows nothing of takes the cluster's copy of its state, and
//     a cluster copy that differs from the store's is written again;
//   - a service's recorded pause and maintenance page are applied again
//     (switch mode), before it gets a route;
//   - every service gets a placeholder upstream if it has none, so nginx's
//     site config can reference it from day one;
//   - each service's upstream is pointed at the running containers of its
//     recorded active color (stopped ones are started first), or at the
//     placeholder before the first recorded deploy;
//   - deployments left queued or running by a previous process are marked
//     interrupted and the containers they created are removed, unless they
//     became the active color (then the standby they replaced is removed);
//     the active color's and the standby's own containers are never
//     touched.
//
// It returns the first error that leaves a service in an unknown state.
func (c *Controller) Start(ctx context.Context) error {
	for _, name := range c.names {
		if c.runtime(name) == nil {
			return fmt.Errorf("service %s: runtime %s is not available", name, c.services[name].Runtime)
		}
	}
	// A store without the service's state (deployd moved to another
	// manager without its volume) takes the cluster's copy before
	// anything is routed.
	for _, name := range c.names {
		if err := c.adoptMirror(ctx, name); err != nil {
			return err
		}
	}
	// A pause or maintenance page outlives a restart, and holds from the
	// first request on: it is applied before the service gets a route.
	for _, name := range c.names {
		if err := c.restoreTraffic(ctx, name); err != nil {
			return err
		}
	}
	for _, name := range c.names {
		if err := c.router.EnsurePlaceholder(ctx, name); err != nil {
			return fmt.Errorf("placeholder upstream for %s: %w", name, err)
		}
	}
	// Routing first: an interrupted deploy may have moved traffic to the
	// containers that are removed next.
	for _, name := range c.names {
		if err := c.restoreActive(ctx, name); err != nil {
			return err
		}
	}
	unfinished, err := c.store.UnfinishedDeployments(ctx)
	if err != nil {
		return fmt.Errorf("find interrupted deployments: %w", err)
	}
	for _, d := range unfinished {
		if err := c.interrupt(ctx, d); err != nil {
			return err
		}
	}
	for _, name := range c.names {
		c.publishState(ctx, name)
	}
	return nil
}

// interrupt closes a deployment that a previous process left unfinished.
func (c *Controller) interrupt(ctx context.Context, d Deployment) error {
	log := c.log.WithFields(logrus.Fields{"service": d.Service, "deployment": d.ID})
	st, err := c.state(ctx, d.Service)
	if err != nil {
		return err
	}
	// A rollback only starts containers of the standby color, which stay
	// the standby; a deploy's own containers are debris unless the switch
	// was recorded before the crash.
	// Its containers ran beside the standby's in the standby's color
	// (DeployStandbyKeep): only they go. Once the switch was recorded they
	// are the active color, and what goes is the standby they replaced,
	// which the crash kept retire from removing.
	if d.Kind == KindDeploy {
		all, err := c.runtime(d.Service).Containers(ctx, d.Service)
		if err != nil {
			return fmt.Errorf("list containers of %s: %w", d.Service, err)
		}
		var debris []Container
		if d.ToColor != st.ActiveColor {
			debris = slices.DeleteFunc(all, func(ct Container) bool { return ct.Deployment != d.ID })
		} else if st.ActiveDeployment == d.ID {
			debris = strays(all, d.Service, d.ToColor, d.ID)
		}
		for _, ct := range debris {
			if err := c.runtime(d.Service).RemoveContainer(ctx, ct.ID); err != nil {
				return fmt.Errorf("remove %s left by interrupted deployment %s: %w", ct.Name, d.ID, err)
			}
			log.WithFields(logrus.Fields{"container": ct.Name, "container_deployment": ct.Deployment}).
				Info("removed container left by interrupted deployment")
		}
	}
	now := c.now().UTC()
	step := "before its first step"
	for i := range d.Steps {
		if d.Steps[i].Status == StepRunning {
			d.Steps[i].Status = StepFailed
			d.Steps[i].FinishedAt = &now
			d.Steps[i].Message = "interrupted: deployd stopped"
		}
		step = "during step " + d.Steps[i].Name
	}
	d.Status = StatusInterrupted
	d.Error = "deployd stopped " + step
	if d.Kind == KindDeploy && d.ToColor == st.ActiveColor {
		d.Error += " after traffic had moved to " + string(st.ActiveColor)
	}
	d.FinishedAt = &now
	if err := c.store.PutDeployment(ctx, d); err != nil {
		return fmt.Errorf("mark deployment %s interrupted: %w", d.ID, err)
	}
	log.Warn(d.Error)
	// The process that ran it could not report its end; this one does.
	c.observer.DeploymentFinished(d)
	c.notifyf(NotifyDeployInterrupted, d, d.Trigger.Actor, "%s of %s interrupted: %s", d.Kind, d.Image, d.Error)
	return nil
}

// restoreActive makes the service's upstream point at its active color's
// running containers. Switch does nothing when that is already the case.
func (c *Controller) restoreActive(ctx context.Context, name string) error {
	log := c.log.WithField("service", name)
	st, err := c.state(ctx, name)
	if err != nil {
		return err
	}
	if !st.ActiveColor.Valid() {
		// A first deploy killed between its switch and its record leaves
		// nginx on containers that are about to be removed.
		if err := c.router.Switch(ctx, name, NoColor, nil); err != nil {
			return fmt.Errorf("reset %s to its placeholder upstream: %w", name, err)
		}
		return nil
	}
	cs, err := c.stateContainers(ctx, name, st, st.ActiveColor)
	if err != nil {
		return fmt.Errorf("list containers of %s: %w", name, err)
	}
	for i, ct := range cs {
		if ct.Running() {
			continue
		}
		started, err := c.runtime(name).StartExisting(ctx, ct.ID)
		if err != nil {
			log.WithError(err).WithField("container", ct.Name).Error("start stopped active container")
			continue
		}
		cs[i] = started
		log.WithField("container", ct.Name).Warn("started stopped container of the active color")
	}
	up := running(cs)
	if len(up) == 0 {
		// Pointing nginx anywhere else would serve a version nobody chose;
		// leave it and say so loudly. The operator can roll back.
		log.WithField("color", string(st.ActiveColor)).Error("active color has no running containers")
		return nil
	}
	if err := c.router.Switch(ctx, name, st.ActiveColor, addresses(up)); err != nil {
		return fmt.Errorf("point %s at its active color %s: %w", name, st.ActiveColor, err)
	}
	return nil
}
