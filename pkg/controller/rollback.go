package controller

import (
	"context"
	"fmt"
)

// rollback switches traffic back to the standby color. A warm standby (its
// containers running) needs only one good probe per replica and the nginx
// switch; a cold one is started (or, if its containers are gone, created
// again from its image) and must pass the full health check first.
func (r *deployRun) rollback(ctx context.Context) error {
	target := r.d.ToColor
	var cs []Container
	warm := false
	if err := r.step(ctx, StepStart, func(ctx context.Context, _ *Step) (string, error) {
		var msg string
		var err error
		cs, warm, msg, err = r.readyStandby(ctx, target)
		return msg, err
	}); err != nil {
		return err
	}
	r.c.hook(PointAfterStart)

	threshold := r.spec.Health.HealthyThreshold
	if warm {
		// A warm standby already proved itself healthy and has been serving
		// or idling since; one good answer shows it still is.
		threshold = 1
	}
	return r.promote(ctx, cs, threshold)
}

// readyStandby makes sure the standby color has running containers and
// reports whether they were all running already. Only the standby's own
// containers count, never what a failed deploy left in its color.
func (r *deployRun) readyStandby(ctx context.Context, color Color) ([]Container, bool, string, error) {
	st, err := r.c.state(ctx, r.spec.Name)
	if err != nil {
		return nil, false, "", err
	}
	cs, err := r.c.stateContainers(ctx, r.spec.Name, st, color)
	if err != nil {
		return nil, false, "", err
	}
	if len(cs) == 0 {
		if err := r.rt.EnsureImage(ctx, r.d.Image, r.spec.Pull, r.progress); err != nil {
			return nil, false, "", err
		}
		env, err := r.env()
		if err != nil {
			return nil, false, "", err
		}
		// Created in the name of the deployment the standby records, so
		// that they are its set, as if they had never gone.
		dep := st.StandbyDeployment
		if dep == "" {
			dep = r.d.ID
		}
		if cs, err = r.c.startReplicas(ctx, r.spec, color, r.d.Image, dep, env, allReplicas(r.spec.Replicas)); err != nil {
			return nil, false, "", err
		}
		return cs, false, fmt.Sprintf("standby %s had no containers: created %d from %s", color, len(cs), r.d.Image), nil
	}
	started := 0
	for i, ct := range cs {
		if ct.Running() {
			continue
		}
		if cs[i], err = r.rt.StartExisting(ctx, ct.ID); err != nil {
			return nil, false, "", err
		}
		started++
	}
	if started == 0 {
		return cs, true, fmt.Sprintf("standby %s is warm (%d running)", color, len(cs)), nil
	}
	return cs, false, fmt.Sprintf("started %d stopped %s container(s)", started, color), nil
}
