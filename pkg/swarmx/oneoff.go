package swarmx

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/engine"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

// outputTail is how much of a one-off's output is kept, as in dockerx.
const outputTail = 64 << 10

// RunOneOff runs spec as a replicated job (one task, run once, never
// restarted) on spec.Network, waits until its task ends, and returns its
// exit code and the tail of its output. The job's service is removed
// before RunOneOff returns, also when ctx ends first (ctx's error is then
// returned wrapped). A non-zero exit is not an error; a task Swarm
// rejected or could not place is, quoting Swarm's reason.
func (r *Runtime) RunOneOff(ctx context.Context, spec controller.OneOffSpec) (controller.OneOffResult, error) {
	log := r.log.WithFields(logrus.Fields{"service": spec.Service, "deployment": spec.Deployment, "container": spec.Name})
	if err := r.checkNetwork(ctx, spec.Network); err != nil {
		return controller.OneOffResult{}, fmt.Errorf("run %s: %w", spec.Name, err)
	}
	labels := oneOffLabels(spec)
	cs := containerSpec(spec.Image, spec.Command, spec.Limits, labels,
		append(append([]string(nil), spec.Env...), controller.ReplicaEnv(spec.Service, controller.NoColor, spec.Deployment)...))
	cs.Mounts = append(cs.Mounts, volumeMounts(spec)...)
	one := uint64(1)
	ss := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: spec.Name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			Resources:     resources(spec.Limits, controller.Resources{}),
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			Networks:      networks(spec.Network),
		},
		Mode: swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &one, TotalCompletions: &one}},
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	resp, err := r.api.ServiceCreate(cctx, ss, swarm.ServiceCreateOptions{})
	cancel()
	if err != nil {
		return controller.OneOffResult{}, engine.WrapErr("run "+spec.Name+": create job", err)
	}
	// Whatever happens from here, the job goes; a detached context
	// because ctx may be the reason we are leaving.
	defer r.removeQuietly(ctx, resp.ID, log)

	t, err := r.waitJob(ctx, resp.ID)
	if err != nil {
		return controller.OneOffResult{}, fmt.Errorf("run %s: %w", spec.Name, err)
	}
	if t.Status.State != swarm.TaskStateComplete && t.Status.State != swarm.TaskStateFailed {
		return controller.OneOffResult{}, fmt.Errorf("run %s: %w: task %s: %s", spec.Name, errTask, t.Status.State, t.Status.Err)
	}
	exit := 0
	if t.Status.ContainerStatus != nil {
		exit = t.Status.ContainerStatus.ExitCode
	}
	out, err := r.logsTail(ctx, resp.ID)
	if err != nil {
		return controller.OneOffResult{ExitCode: exit}, fmt.Errorf("run %s: %w", spec.Name, err)
	}
	log.WithField("exit_code", exit).Info("one-off finished")
	return controller.OneOffResult{ExitCode: exit, Output: out}, nil
}

// waitJob polls the job's tasks until one has ended (complete, failed,
// rejected) or waits with a scheduler error, and returns it.
func (r *Runtime) waitJob(ctx context.Context, serviceID string) (swarm.Task, error) {
	for {
		tasks, err := r.tasks(ctx, serviceID)
		if err != nil {
			return swarm.Task{}, err
		}
		for _, t := range tasks {
			switch st := t.Status; {
			case st.State == swarm.TaskStateComplete, st.State == swarm.TaskStateFailed, st.State == swarm.TaskStateRejected:
				return t, nil
			case st.State == swarm.TaskStatePending && st.Err != "":
				return t, nil
			}
		}
		if err := sleepPoll(ctx); err != nil {
			return swarm.Task{}, err
		}
	}
}

// logsTail returns the last outputTail bytes of the service's stdout and
// stderr.
func (r *Runtime) logsTail(ctx context.Context, serviceID string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	rc, err := r.api.ServiceLogs(ctx, serviceID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", engine.WrapErr("logs", err)
	}
	defer func() { _ = rc.Close() }()
	return engine.ReadTail(rc, outputTail)
}

// removeQuietly removes the job's service, then its tasks' containers
// that are on this node: engines before Docker 24 leave a removed
// replicated job's containers behind (moby/moby#44312), one exited
// container per one-off. A container on another node is not this
// engine's to remove; on such engines it stays there (docs/scaling.md).
func (r *Runtime) removeQuietly(ctx context.Context, serviceID string, log logrus.FieldLogger) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	tasks, err := r.tasks(rctx, serviceID)
	if err != nil {
		log.WithError(err).Warn("cleanup: list the job's tasks")
	}
	if err := r.api.ServiceRemove(rctx, serviceID); err != nil {
		log.WithError(err).Warn("cleanup: remove job service")
		return
	}
	for _, t := range tasks {
		cs := t.Status.ContainerStatus
		if cs == nil || cs.ContainerID == "" {
			continue
		}
		err := r.api.ContainerRemove(rctx, cs.ContainerID, container.RemoveOptions{Force: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			log.WithError(err).WithField("task", shortID(t.ID)).Warn("cleanup: remove the job's container")
		}
	}
}

// volumeMounts turns spec's mounts into named local volumes. On a
// multi-node swarm such a volume lives on the node the task ran on; the
// engine creates a missing one there.
func volumeMounts(spec controller.OneOffSpec) []mount.Mount {
	var ms []mount.Mount
	for _, m := range spec.Mounts {
		ms = append(ms, mount.Mount{
			Type: mount.TypeVolume, Source: m.Volume, Target: m.Target,
			VolumeOptions: &mount.VolumeOptions{
				Labels:       map[string]string{workload.LabelManaged: "true", workload.LabelService: spec.Service},
				DriverConfig: &mount.Driver{Name: "local"},
			},
		})
	}
	return ms
}

// OneOffs lists the service's one-off job services that still exist: what
// a killed deployd left, or a run in progress. ID is the job service's,
// which RemoveContainer accepts.
func (r *Runtime) OneOffs(ctx context.Context, service string) ([]controller.Container, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	list, err := r.api.ServiceList(ctx, swarm.ServiceListOptions{Filters: oneOffFilter(service)})
	if err != nil {
		return nil, engine.WrapErr("list one-offs of "+service, err)
	}
	out := make([]controller.Container, 0, len(list))
	for _, s := range list {
		ctr := controller.Container{
			ID: s.ID, Name: s.Spec.Name,
			Service: s.Spec.Labels[workload.LabelService], Deployment: s.Spec.Labels[workload.LabelDeployment],
			State: "job",
		}
		if cs := s.Spec.TaskTemplate.ContainerSpec; cs != nil {
			ctr.Image = cs.Image
		}
		out = append(out, ctr)
	}
	return out, nil
}

// FileSize is not supported on Swarm yet: the file would have to be read
// on the node a task of the image runs on, and the archive API that
// dockerx uses works on containers of the local engine only. It returns an
// error wrapping controller.ErrUnavailable.
func (r *Runtime) FileSize(ctx context.Context, spec controller.OneOffSpec, path string) (int64, error) {
	return 0, fmt.Errorf("stat %s: file sizes are not supported on swarm yet: %w", path, controller.ErrUnavailable)
}
