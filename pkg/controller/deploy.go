package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// switchTimeout bounds a traffic switch. The switch runs detached from the
// deploy's context: once nginx is being rewritten it must either finish or
// restore, never stop halfway because the daemon is shutting down.
const switchTimeout = 30 * time.Second

// deploy brings up the target color with the new image, switches traffic
// to it and keeps the old color as the standby. Until the switch, the
// active color, its containers and the nginx upstream are never touched.
func (r *deployRun) deploy(ctx context.Context) error {
	rt := r.rt
	target := r.d.ToColor
	// A broken env file must fail the deploy before cleanup removes
	// anything.
	env, err := r.env()
	if err != nil {
		return err
	}
	backupEnv, err := r.backupEnv()
	if err != nil {
		return err
	}

	if err := r.step(ctx, StepPull, func(ctx context.Context, _ *Step) (string, error) {
		if err := rt.EnsureImage(ctx, r.d.Image, r.spec.Pull, r.progress); err != nil {
			return "", err
		}
		if pinner, ok := rt.(ImagePinner); ok {
			pinned, err := pinner.PinImage(ctx, r.d.Image)
			if err != nil {
				return "", err
			}
			requested := r.d.Image
			r.d.Image = withDigestOf(requested, pinned)
			return fmt.Sprintf("image %s pinned to %s", requested, r.d.Image), nil
		}
		return fmt.Sprintf("image %s present (pull policy %s)", r.d.Image, r.spec.Pull), nil
	}); err != nil {
		return err
	}

	if err := r.step(ctx, StepCleanup, func(ctx context.Context, _ *Step) (string, error) {
		return r.cleanup(ctx, target)
	}); err != nil {
		return err
	}

	if err := r.step(ctx, StepBackup, func(ctx context.Context, s *Step) (string, error) {
		return r.backup(ctx, backupEnv, s)
	}); err != nil {
		return err
	}

	before, err := r.schemaBefore(ctx, env)
	if err != nil {
		return err
	}
	if err := r.step(ctx, StepPreDeploy, func(ctx context.Context, s *Step) (string, error) {
		return r.preDeploy(ctx, env, s)
	}); err != nil {
		return err
	}
	if err := r.schemaAfter(ctx, env, before); err != nil {
		return err
	}

	var started []Container
	if err := r.step(ctx, StepStart, func(ctx context.Context, _ *Step) (string, error) {
		// start_timeout bounds the start as well as the health step: a
		// cluster's runtime returns a replica once its task runs
		// (placed, its image pulled on the node, past the image's
		// HEALTHCHECK), which may never happen.
		sctx, cancel := context.WithTimeout(ctx, r.spec.Health.StartTimeout)
		defer cancel()
		var err error
		if started, err = r.startReplicas(sctx, target, env); err != nil {
			if ctx.Err() == nil && errors.Is(sctx.Err(), context.DeadlineExceeded) {
				return "", fmt.Errorf("not started within start_timeout %s: %w", r.spec.Health.StartTimeout, err)
			}
			return "", err
		}
		return fmt.Sprintf("started %d %s container(s)", len(started), target), nil
	}); err != nil {
		return err
	}
	r.c.hook(PointAfterStart)

	return r.promote(ctx, started, r.spec.Health.HealthyThreshold)
}

// promote makes the deployment's containers of the target color live once
// they are healthy: nginx moves to them, the store records them as active
// with the previously active color as the standby, the standby a deploy
// replaced is removed, and the old color is drained and kept according to
// the standby mode.
func (r *deployRun) promote(ctx context.Context, cs []Container, threshold int) error {
	if err := r.step(ctx, StepHealth, func(ctx context.Context, _ *Step) (string, error) {
		return r.c.waitHealthy(ctx, r.spec.Name, r.spec.Health, cs, threshold, r.logLine)
	}); err != nil {
		return err
	}
	st, err := r.c.state(ctx, r.spec.Name)
	if err != nil {
		return err
	}
	next := ServiceState{
		Name:              r.spec.Name,
		ActiveColor:       r.d.ToColor,
		ActiveImage:       r.d.Image,
		ActiveDeployment:  r.d.ID,
		StandbyColor:      st.ActiveColor,
		StandbyImage:      st.ActiveImage,
		StandbyDeployment: st.ActiveDeployment,
	}
	if r.d.Kind == KindRollback {
		next.ActiveDeployment = st.StandbyDeployment
	}
	if err := r.switchTo(ctx, st, next, cs); err != nil {
		return err
	}
	if r.d.Kind == KindDeploy && r.spec.Bake > 0 {
		if err := r.bake(ctx, st, cs); err != nil {
			return err
		}
	}
	if r.d.Kind == KindDeploy && st.ActiveColor.Valid() {
		r.retire(ctx)
	}
	return r.afterSwitch(ctx, st)
}

// cleanup clears the target color for the deployment's containers. Only
// leftovers go (an earlier failed or interrupted deployment's containers):
// the standby's own keep running beside the new ones, and remain the
// rollback target, until the new color has taken traffic (retire). With
// DeployStandbyRemove the standby goes now, and a deploy that fails leaves
// none.
func (r *deployRun) cleanup(ctx context.Context, color Color) (string, error) {
	st, err := r.c.state(ctx, r.spec.Name)
	if err != nil {
		return "", err
	}
	all, err := r.rt.Containers(ctx, r.spec.Name)
	if err != nil {
		return "", err
	}
	old, kept := ofColor(all, color), []Container(nil)
	if r.spec.StandbyDuringDeploy != DeployStandbyRemove && color == st.StandbyColor {
		kept = members(all, r.spec.Name, color, st.StandbyDeployment)
		old = strays(all, r.spec.Name, color, st.StandbyDeployment)
	}
	if err := r.c.removeContainers(ctx, old); err != nil {
		return "", err
	}
	msg := fmt.Sprintf("removed %d old %s container(s)", len(old), color)
	if len(kept) > 0 {
		msg += fmt.Sprintf("; standby %s (%s, %d container(s)) kept until the new ones take traffic",
			color, st.StandbyImage, len(kept))
	}
	return msg, nil
}

// retire removes the standby the deploy replaced, and whatever else of the
// new active color is not the deployment's: traffic has moved (and the bake
// passed), so the previously active color is the rollback target now. It
// runs detached, like drain, and a failure does not fail a deploy whose
// traffic has moved: the step says so and the reconciler removes the rest,
// as it removes any container of no recorded set.
func (r *deployRun) retire(ctx context.Context) {
	err := r.step(context.WithoutCancel(ctx), StepRetire, func(ctx context.Context, _ *Step) (string, error) {
		all, err := r.rt.Containers(ctx, r.spec.Name)
		if err != nil {
			return "", err
		}
		old := strays(all, r.spec.Name, r.d.ToColor, r.d.ID)
		if len(old) == 0 {
			return "no old standby left to remove", errSkipped
		}
		if err := r.c.removeContainers(ctx, old); err != nil {
			return "", err
		}
		return fmt.Sprintf("removed the replaced %s standby (%d container(s))", r.d.ToColor, len(old)), nil
	})
	if err != nil {
		r.log.WithError(err).Warn("replaced standby not removed; the reconciler will")
	}
}

// switchTo points nginx at the new containers and records the new state.
// If the record cannot be written, traffic is moved back so that nginx and
// the store never disagree.
func (r *deployRun) switchTo(ctx context.Context, prev, next ServiceState, cs []Container) error {
	return r.step(ctx, StepSwitch, func(ctx context.Context, s *Step) (string, error) {
		if err := r.c.enterSwitch(r.lease); err != nil {
			return "", err
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), switchTimeout)
		defer cancel()
		if err := r.c.router.Switch(sctx, r.spec.Name, r.d.ToColor, addresses(cs)); err != nil {
			return "", err
		}
		r.c.hook(PointBeforeSave)
		next.UpdatedAt = r.c.now().UTC()
		r.switched = true
		// The switch step is recorded as succeeded in the same transaction
		// as the new state.
		d := r.d
		d.Steps = append([]Step(nil), r.d.Steps...)
		now := next.UpdatedAt
		last := &d.Steps[len(d.Steps)-1]
		last.Status, last.FinishedAt = StepSucceeded, &now
		last.Message = fmt.Sprintf("traffic moved to %s", next.ActiveColor)
		if err := r.c.store.SaveSwitch(sctx, next, d); err != nil {
			r.switched = false
			if rerr := r.restoreRouting(sctx, prev); rerr != nil {
				return "", fmt.Errorf("record new state: %w (and moving traffic back failed: %v)", err, rerr)
			}
			return "", fmt.Errorf("record new state (traffic moved back): %w", err)
		}
		r.c.observer.Switched(r.spec.Name, r.d.Kind, r.c.now().Sub(s.StartedAt))
		r.c.mirror(sctx, next)
		return last.Message, nil
	})
}

// restoreRouting points nginx back at the running containers of prev's
// active color, or at the placeholder when there is none.
func (r *deployRun) restoreRouting(ctx context.Context, prev ServiceState) error {
	if !prev.ActiveColor.Valid() {
		return r.c.router.Switch(ctx, r.spec.Name, NoColor, nil)
	}
	cs, err := r.c.stateContainers(ctx, r.spec.Name, prev, prev.ActiveColor)
	if err != nil {
		return err
	}
	return r.c.router.Switch(ctx, r.spec.Name, prev.ActiveColor, addresses(running(cs)))
}

// afterSwitch drains prev's active color and leaves it as the standby.
func (r *deployRun) afterSwitch(ctx context.Context, prev ServiceState) error {
	old := prev.ActiveColor
	if !old.Valid() {
		return nil
	}
	// Detached like the standby step: a shutdown that began after the
	// switch only shortens the drain, it must not fail a deploy whose
	// traffic has already moved.
	if err := r.step(context.WithoutCancel(ctx), StepDrain, func(_ context.Context, _ *Step) (string, error) {
		msg, err := r.c.router.Drain(ctx, r.spec.Name, old, r.spec.Drain)
		if err != nil && ctx.Err() != nil {
			// Traffic has already moved; a shorter drain is the only cost.
			return "drain cut short by shutdown", nil
		}
		return msg, err
	}); err != nil {
		return err
	}
	return r.step(context.WithoutCancel(ctx), StepStandby, func(ctx context.Context, _ *Step) (string, error) {
		if r.spec.Standby != StandbyStopped {
			return fmt.Sprintf("%s kept running as a warm standby", old), nil
		}
		cs, err := r.c.stateContainers(ctx, r.spec.Name, prev, old)
		if err != nil {
			return "", err
		}
		for _, ct := range running(cs) {
			if err := r.rt.StopContainer(ctx, ct.ID, 10*time.Second); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("%s stopped, kept as a cold standby", old), nil
	})
}

// startReplicas creates and starts the configured number of containers of
// color with the deployment's image. The replicas start in parallel: each
// start is a few Docker round trips, and a deploy should not pay them one
// after another.
func (r *deployRun) startReplicas(ctx context.Context, color Color, env []string) ([]Container, error) {
	return r.c.startReplicas(ctx, r.spec, color, r.d.Image, r.d.ID, env, allReplicas(r.spec.Replicas))
}

// allReplicas lists replica numbers 1..n.
func allReplicas(n int) []int {
	nums := make([]int, n)
	for i := range nums {
		nums[i] = i + 1
	}
	return nums
}

// startReplicas creates and starts the given replica numbers of a color of
// the service, in parallel, labelled with deployment.
func (c *Controller) startReplicas(ctx context.Context, spec ServiceSpec, color Color, image, deployment string,
	env []string, nums []int) ([]Container, error) {
	cs := make([]Container, len(nums))
	// A plain Group, not WithContext: a failed start does not cut its
	// siblings short; the failed deploy removes every container it made.
	var g errgroup.Group
	for i, n := range nums {
		g.Go(func() error {
			ct, err := c.runtime(spec.Name).StartContainer(ctx, ContainerSpec{
				Name:          replicaName(spec.Name, color, deployment, n),
				Image:         image,
				Service:       spec.Name,
				Color:         color,
				Deployment:    deployment,
				Port:          spec.Port,
				Env:           env,
				Network:       spec.Network,
				RestartPolicy: spec.RestartPolicy,
				Limits:        spec.Limits,
				Replicas:      spec.Replicas,
				Placement:     spec.Placement,
			})
			cs[i] = ct
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return cs, nil
}

// removeContainers removes cs in parallel.
func (c *Controller) removeContainers(ctx context.Context, cs []Container) error {
	var g errgroup.Group
	for _, ct := range cs {
		g.Go(func() error { return c.runtime(ct.Service).RemoveContainer(ctx, ct.ID) })
	}
	return g.Wait()
}

// preDeployOutputLimit is how much of the pre-deploy command's output the
// deployment record keeps (the end, where errors are).
const preDeployOutputLimit = 16 << 10

func (r *deployRun) preDeploy(ctx context.Context, env []string, s *Step) (string, error) {
	pd := r.spec.PreDeploy
	if len(pd.Command) == 0 {
		return "no pre-deploy command", errSkipped
	}
	tctx, cancel := context.WithTimeout(ctx, pd.Timeout)
	defer cancel()
	res, err := r.rt.RunOneOff(tctx, OneOffSpec{
		Name:       fmt.Sprintf("%s-predeploy-%s", r.spec.Name, shortID(r.d.ID)),
		Image:      r.d.Image,
		Service:    r.spec.Name,
		Deployment: r.d.ID,
		Command:    pd.Command,
		Env:        env,
		Network:    r.spec.Network,
		Limits:     r.spec.Limits,
	})
	s.Output = tail(res.Output, preDeployOutputLimit)
	for _, line := range OutputLines(s.Output) {
		r.logLine("%s", line)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return "", fmt.Errorf("pre-deploy command timed out after %s", pd.Timeout)
		}
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("pre-deploy command %q exited with code %d", strings.Join(pd.Command, " "), res.ExitCode)
	}
	return fmt.Sprintf("pre-deploy command %q succeeded", strings.Join(pd.Command, " ")), nil
}

// env is the containers' environment: the env file, then the configured
// env on top (as docker compose does).
func (r *deployRun) env() ([]string, error) { return specEnv(r.spec) }

// specEnv is the environment of a service's replicas: its env file, read
// now, overridden by the spec's own variables, sorted.
func specEnv(spec ServiceSpec) ([]string, error) { return mergeEnv(spec.EnvFile, spec.Env) }

// mergeEnv reads envFile (when set) now and overrides its variables with
// env's, sorted as KEY=VALUE. Errors never quote the file's content.
func mergeEnv(envFile string, env map[string]string) ([]string, error) {
	vars := map[string]string{}
	if envFile != "" {
		fileVars, err := readEnvFile(envFile)
		if err != nil {
			return nil, err
		}
		for k, v := range fileVars {
			vars[k] = v
		}
	}
	for k, v := range env {
		vars[k] = v
	}
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out, nil
}

// ofColor returns the containers of color among all, sorted by name: the
// runtime promises no order, and nginx's upstream should not change with it.
func ofColor(all []Container, color Color) []Container {
	var cs []Container
	for _, ct := range all {
		if ct.Color == color {
			cs = append(cs, ct)
		}
	}
	slices.SortFunc(cs, func(a, b Container) int { return strings.Compare(a.Name, b.Name) })
	return cs
}

func running(cs []Container) []Container {
	var out []Container
	for _, ct := range cs {
		if ct.Running() {
			out = append(out, ct)
		}
	}
	return out
}

func addresses(cs []Container) []string {
	addrs := make([]string, 0, len(cs))
	for _, ct := range cs {
		addrs = append(addrs, ct.Address)
	}
	return addrs
}

func shortID(id string) string {
	if i := strings.LastIndexByte(id, '-'); i >= 0 {
		return id[i+1:]
	}
	return id
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
