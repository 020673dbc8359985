package swarmx

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/deployd/deployd/internal/engine"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

// task inspects a task; a missing one wraps controller.ErrNotFound.
func (r *Runtime) task(ctx context.Context, id string) (swarm.Task, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	t, _, err := r.api.TaskInspectWithRaw(ctx, id)
	if err != nil {
		return swarm.Task{}, engine.WrapErr("inspect task "+id, err)
	}
	return t, nil
}

// InspectContainer returns one task as a Container; a missing task wraps
// controller.ErrNotFound.
func (r *Runtime) InspectContainer(ctx context.Context, id string) (controller.Container, error) {
	t, err := r.task(ctx, id)
	if err != nil {
		return controller.Container{}, err
	}
	svc, err := r.inspectService(ctx, t.ServiceID)
	if err != nil {
		return controller.Container{}, err
	}
	tasks, err := r.tasks(ctx, svc.ID)
	if err != nil {
		return controller.Container{}, err
	}
	return r.toContainer(ctx, svc, t, tasks), nil
}

// Containers lists the tasks that Swarm wants running of every set
// service of service. A set scaled to zero (a cold standby) has no tasks:
// it shows as one stopped Container per slot (see stoppedSlot), which
// StartExisting scales up again and RemoveContainer removes, as the
// controller does with stopped containers on a single host.
func (r *Runtime) Containers(ctx context.Context, service string) ([]controller.Container, error) {
	lctx, cancel := context.WithTimeout(ctx, callTimeout)
	list, err := r.api.ServiceList(lctx, swarm.ServiceListOptions{Filters: workload.Filter(service)})
	cancel()
	if err != nil {
		return nil, engine.WrapErr("list services of "+service, err)
	}
	var out []controller.Container
	for _, svc := range list {
		if workload.IsOneOff(svc.Spec.Labels) {
			continue
		}
		if replicasOf(svc) == 0 {
			out = append(out, stoppedSlots(svc)...)
			continue
		}
		tasks, err := r.tasks(ctx, svc.ID)
		if errors.Is(err, controller.ErrNotFound) {
			continue // removed between the list and now
		}
		if err != nil {
			return nil, fmt.Errorf("list containers of %s: %w", service, err)
		}
		for _, t := range tasks {
			if t.DesiredState != swarm.TaskStateRunning {
				continue
			}
			out = append(out, r.toContainer(ctx, svc, t, tasks))
		}
	}
	return out, nil
}

// StopContainer scales the task's whole set to zero (a set is stopped as
// one, like the controller's cold standby) with timeout as its stop grace
// period, and waits until none of its tasks runs. Swarm deletes the tasks
// of slots it scales away, so stopping the set's other tasks afterwards
// finds them gone, which is no error: they are stopped. From then on the
// set lists as stopped slots (see Containers).
func (r *Runtime) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	ref, err := r.refOf(ctx, id)
	if errors.Is(err, controller.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	svc, err := r.scale(ctx, ref.serviceID, 0, timeout)
	if err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout+callTimeout)
	defer cancel()
	for {
		tasks, err := r.tasks(wctx, svc.ID)
		if err != nil {
			return fmt.Errorf("stop %s: %w", id, err)
		}
		running := 0
		for _, t := range tasks {
			switch t.Status.State {
			case swarm.TaskStateRunning, swarm.TaskStateStarting, swarm.TaskStatePreparing, swarm.TaskStateReady,
				swarm.TaskStateAssigned, swarm.TaskStateAccepted, swarm.TaskStatePending:
				running++
			}
		}
		if running == 0 {
			return nil
		}
		if err := sleepPoll(wctx); err != nil {
			return fmt.Errorf("stop %s: %d task(s) of %s still running: %w", id, running, svc.Spec.Name, err)
		}
	}
}

// refOf finds the set and slot of a task, or of a stopped slot's ID.
func (r *Runtime) refOf(ctx context.Context, id string) (taskRef, error) {
	if ref, ok := parseStoppedSlot(id); ok {
		return ref, nil
	}
	t, err := r.task(ctx, id)
	if err != nil {
		return taskRef{}, err
	}
	return taskRef{serviceID: t.ServiceID, slot: t.Slot}, nil
}

// stoppedPrefix starts the ID of a stopped slot: "stopped-<service
// ID>-<slot>". Swarm's own IDs are alphanumeric, so the two never mix.
const stoppedPrefix = "stopped-"

// stoppedSlots are the Containers of a set scaled to zero: one per slot
// of its full size, stopped, named as the controller named the replicas.
func stoppedSlots(svc swarm.Service) []controller.Container {
	l := svc.Spec.Labels
	n, err := strconv.Atoi(l[LabelReplicas])
	if err != nil || n < 1 {
		return nil
	}
	prefix := l[LabelName]
	if prefix == "" {
		prefix = svc.Spec.Name
	}
	var image string
	if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
		image = cs.Image
	}
	out := make([]controller.Container, 0, n)
	for slot := 1; slot <= n; slot++ {
		out = append(out, controller.Container{
			ID:         stoppedPrefix + svc.ID + "-" + strconv.Itoa(slot),
			Name:       prefix + "-" + strconv.Itoa(slot),
			Service:    l[workload.LabelService],
			Color:      controller.Color(l[workload.LabelColor]),
			Deployment: l[workload.LabelDeployment],
			Image:      image,
			State:      "exited",
		})
	}
	return out
}

// parseStoppedSlot reads a stopped slot's ID back into its set and slot.
func parseStoppedSlot(id string) (taskRef, bool) {
	rest, ok := strings.CutPrefix(id, stoppedPrefix)
	if !ok {
		return taskRef{}, false
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return taskRef{}, false
	}
	slot, err := strconv.Atoi(rest[i+1:])
	if err != nil || slot < 1 {
		return taskRef{}, false
	}
	return taskRef{serviceID: rest[:i], slot: slot}, true
}

// StartExisting scales a stopped slot's set (or a task's) back to its
// full size (its deployd.replicas label) and returns the task that now
// runs in the slot: a new task, with a new ID and address. It fails fast
// like StartContainer. A task Swarm no longer knows wraps
// controller.ErrNotFound.
func (r *Runtime) StartExisting(ctx context.Context, id string) (controller.Container, error) {
	ref, err := r.refOf(ctx, id)
	if err != nil {
		return controller.Container{}, fmt.Errorf("start existing %s: %w", id, err)
	}
	svc, err := r.inspectService(ctx, ref.serviceID)
	if err != nil {
		return controller.Container{}, fmt.Errorf("start existing %s: %w", id, err)
	}
	want, err := strconv.ParseUint(svc.Spec.Labels[LabelReplicas], 10, 64)
	if err != nil || want < uint64(ref.slot) {
		want = uint64(ref.slot)
	}
	m := r.setLock(svc.Spec.Name)
	m.Lock()
	if replicasOf(svc) < want {
		svc, err = r.scale(ctx, svc.ID, want, 0)
	}
	m.Unlock()
	if err != nil {
		return controller.Container{}, fmt.Errorf("start existing %s: %w", id, err)
	}
	ctr, err := r.waitSlot(ctx, svc, ref.slot)
	if err != nil {
		return controller.Container{}, fmt.Errorf("start existing %s: %w", id, err)
	}
	return ctr, nil
}

// RemoveContainer removes the whole set service the task belongs to: the
// controller only ever removes whole sets (a failed start, a retired
// standby), and the set's other tasks go with it. id may also be a set
// service's ID. A task or service that is gone is no error.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	ref, err := r.refOf(ctx, id)
	switch {
	case errors.Is(err, controller.ErrNotFound):
		ref.serviceID = id
	case err != nil:
		return fmt.Errorf("remove %s: %w", id, err)
	}
	svc, err := r.inspectService(ctx, ref.serviceID)
	if errors.Is(err, controller.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if svc.Spec.Labels[workload.LabelManaged] != "true" {
		return fmt.Errorf("remove %s: service %s is not deployd's", id, svc.Spec.Name)
	}
	rctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := r.api.ServiceRemove(rctx, svc.ID); err != nil && !errors.Is(engine.WrapErr("", err), controller.ErrNotFound) {
		return engine.WrapErr("remove service "+svc.Spec.Name, err)
	}
	r.mu.Lock()
	delete(r.sets, svc.Spec.Name)
	r.mu.Unlock()
	r.log.WithField("container", svc.Spec.Name).Info("set service removed")
	return nil
}

// LastExitCode returns the exit code of the task's container once the
// task has ended; a task that still runs, never ran a container or is gone
// wraps controller.ErrNotFound. A restarted slot is a new task in Swarm,
// so this is the given task's own exit.
func (r *Runtime) LastExitCode(ctx context.Context, id string) (int, error) {
	t, err := r.task(ctx, id)
	if err != nil {
		return 0, err
	}
	switch t.Status.State {
	case swarm.TaskStateComplete, swarm.TaskStateFailed, swarm.TaskStateShutdown:
		if t.Status.ContainerStatus != nil {
			return t.Status.ContainerStatus.ExitCode, nil
		}
	}
	return 0, fmt.Errorf("exit code of task %s (%s): %w", id, t.Status.State, controller.ErrNotFound)
}

// oneOffFilter selects a service's one-off job services.
func oneOffFilter(service string) filters.Args {
	f := workload.Filter(service)
	f.Add("label", workload.LabelOneOff+"=true")
	return f
}
