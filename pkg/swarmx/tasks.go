package swarmx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/engine"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

// StartContainer runs replica n of spec's set, n being the number that
// ends spec.Name. The first call of a set creates its service at
// spec.Replicas (the whole set at once, so Swarm's spread preferences
// apply across it); a later call finds it, scaling it up if it has fewer
// replicas. It then waits until the task of slot n runs and returns it.
// It fails fast, without waiting for ctx, when a task of the set is
// rejected, fails, or cannot be placed: the error quotes Swarm's. The
// failed set is left for the controller to remove.
func (r *Runtime) StartContainer(ctx context.Context, spec controller.ContainerSpec) (controller.Container, error) {
	slot, ok := slotOf(spec.Name)
	if !ok {
		return controller.Container{}, fmt.Errorf("start %s: the name does not end in a replica number", spec.Name)
	}
	if spec.Replicas < slot {
		spec.Replicas = slot
	}
	log := r.log.WithFields(logrus.Fields{
		"service": spec.Service, "color": spec.Color, "deployment": spec.Deployment, "container": spec.Name,
	})
	svc, err := r.ensureSet(ctx, spec, log)
	if err != nil {
		return controller.Container{}, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	ctr, err := r.waitSlot(ctx, svc, slot)
	if err != nil {
		return controller.Container{}, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	log.WithFields(logrus.Fields{"address": ctr.Address, "node": ctr.Node}).Info("task running")
	return ctr, nil
}

// ensureSet creates spec's set service, or scales it up to spec.Replicas,
// under the set's lock, and returns it as it is afterwards.
func (r *Runtime) ensureSet(ctx context.Context, spec controller.ContainerSpec, log logrus.FieldLogger) (swarm.Service, error) {
	ss, err := setSpec(spec)
	if err != nil {
		return swarm.Service{}, err
	}
	m := r.setLock(ss.Name)
	m.Lock()
	defer m.Unlock()

	svc, err := r.inspectService(ctx, ss.Name)
	switch {
	case errors.Is(err, controller.ErrNotFound):
		if err := r.checkNetwork(ctx, spec.Network); err != nil {
			return swarm.Service{}, err
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := r.api.ServiceCreate(cctx, ss, swarm.ServiceCreateOptions{})
		cancel()
		if err != nil {
			return swarm.Service{}, engine.WrapErr("create service "+ss.Name, err)
		}
		for _, w := range resp.Warnings {
			log.Warn("swarm: " + w)
		}
		log.WithField("replicas", spec.Replicas).Info("set service created")
		return r.inspectService(ctx, resp.ID)
	case err != nil:
		return swarm.Service{}, err
	}
	if replicasOf(svc) >= uint64(spec.Replicas) {
		return svc, nil
	}
	return r.scale(ctx, svc.ID, uint64(spec.Replicas), 0)
}

func replicasOf(svc swarm.Service) uint64 {
	if m := svc.Spec.Mode.Replicated; m != nil && m.Replicas != nil {
		return *m.Replicas
	}
	return 0
}

func (r *Runtime) inspectService(ctx context.Context, id string) (swarm.Service, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	svc, _, err := r.api.ServiceInspectWithRaw(ctx, id, swarm.ServiceInspectOptions{})
	if err != nil {
		return swarm.Service{}, engine.WrapErr("inspect service "+id, err)
	}
	return svc, nil
}

// scale sets a service's replica count (and, when grace is not nil, its
// stop grace period), retrying on a version conflict with a concurrent
// update, and returns the service as updated.
func (r *Runtime) scale(ctx context.Context, id string, replicas uint64, grace time.Duration) (swarm.Service, error) {
	for {
		svc, err := r.inspectService(ctx, id)
		if err != nil {
			return swarm.Service{}, err
		}
		if svc.Spec.Mode.Replicated == nil {
			return swarm.Service{}, fmt.Errorf("service %s is not replicated", svc.Spec.Name)
		}
		spec := svc.Spec
		n := replicas
		spec.Mode.Replicated = &swarm.ReplicatedService{Replicas: &n}
		if grace > 0 && spec.TaskTemplate.ContainerSpec != nil {
			spec.TaskTemplate.ContainerSpec.StopGracePeriod = &grace
		}
		uctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err = r.api.ServiceUpdate(uctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{})
		cancel()
		// The engine answers a stale version with an "out of sequence"
		// error that is not classified as a conflict on every version.
		if err != nil && (cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "out of sequence")) {
			if err := sleepPoll(ctx); err != nil {
				return swarm.Service{}, err
			}
			continue
		}
		if err != nil {
			return swarm.Service{}, engine.WrapErr("scale service "+svc.Spec.Name, err)
		}
		return r.inspectService(ctx, id)
	}
}

// waitSlot polls svc's tasks until the one of slot runs and returns it,
// or fails at once when a task created for the service's current version
// was rejected, failed, ended or cannot be scheduled. Swarm reports a task
// whose image has a HEALTHCHECK as running only once it is healthy, so
// this waits for that too; when ctx ends first, the error says what the
// slot's task was doing.
func (r *Runtime) waitSlot(ctx context.Context, svc swarm.Service, slot int) (controller.Container, error) {
	var last swarm.Task
	// A task usually runs, or is rejected, within a couple of seconds;
	// past that it is being pulled or started, and in a burst of deploys
	// every replica's polling adds to the manager's load: the wait grows.
	began, wait := time.Now(), pollInterval
	for {
		tasks, err := r.tasks(ctx, svc.ID)
		if err != nil {
			if ctx.Err() != nil && last.ID != "" {
				return controller.Container{}, fmt.Errorf("set %s: slot %d not running: %w (%s)", svc.Spec.Name, slot, ctx.Err(), r.taskReport(context.WithoutCancel(ctx), last))
			}
			return controller.Container{}, err
		}
		if t, ok := setFailure(svc, tasks); ok {
			return controller.Container{}, fmt.Errorf("set %s: %w: %s", svc.Spec.Name, errTask, r.taskReport(ctx, t))
		}
		for _, t := range tasks {
			if t.Slot != slot || t.DesiredState != swarm.TaskStateRunning {
				continue
			}
			if t.Status.State == swarm.TaskStateRunning {
				return r.toContainer(ctx, svc, t, tasks), nil
			}
			last = t
		}
		err = sleepFor(ctx, wait)
		if time.Since(began) > patientAfter {
			wait = min(wait*3/2, maxPollInterval)
		}
		if err != nil {
			report := "no task yet"
			if last.ID != "" {
				report = r.taskReport(context.WithoutCancel(ctx), last)
			}
			return controller.Container{}, fmt.Errorf("set %s: slot %d not running: %w (%s)", svc.Spec.Name, slot, err, report)
		}
	}
}

// errTask says a set's task was rejected, failed, ended or cannot be
// placed.
var errTask = errors.New("task failed")

// setFailure returns the first task of svc, created since the service was
// last updated, that Swarm rejected, that failed, that ended (a replica
// that ends before deployd stops it has failed, whatever its exit code: a
// task whose HEALTHCHECK failed is stopped by Swarm and may exit 0), or
// that waits with a scheduler error ("no suitable node ...").
func setFailure(svc swarm.Service, tasks []swarm.Task) (swarm.Task, bool) {
	for _, t := range tasks {
		if t.CreatedAt.Before(svc.UpdatedAt) {
			continue // from before the last create or scale
		}
		switch st := t.Status; {
		case st.State == swarm.TaskStateRejected, st.State == swarm.TaskStateFailed,
			st.State == swarm.TaskStateComplete, st.State == swarm.TaskStateShutdown:
			return t, true
		case st.State == swarm.TaskStatePending && st.Err != "":
			return t, true
		}
	}
	return swarm.Task{}, false
}

// taskReport says what became of task t: its state, node, Swarm's error
// or message, the exit code of an ended one, and, when its container is
// on this node and has a HEALTHCHECK that is not passing, the check's
// status and last output.
func (r *Runtime) taskReport(ctx context.Context, t swarm.Task) string {
	st := t.Status
	var b strings.Builder
	fmt.Fprintf(&b, "task %s (slot %d) %s", shortID(t.ID), t.Slot, st.State)
	if t.NodeID != "" {
		fmt.Fprintf(&b, " on node %s", t.NodeID)
	}
	msg := st.Err
	if msg == "" {
		msg = st.Message
	}
	fmt.Fprintf(&b, ": %s", msg)
	cs := st.ContainerStatus
	if cs == nil || cs.ContainerID == "" {
		return b.String()
	}
	switch st.State {
	case swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed:
		fmt.Fprintf(&b, " (exit code %d)", cs.ExitCode)
	}
	ictx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	c, err := r.api.ContainerInspect(ictx, cs.ContainerID)
	if err != nil || c.State == nil || c.State.Health == nil || c.State.Health.Status == container.Healthy {
		// On another node, gone already, or no HEALTHCHECK to blame.
		return b.String()
	}
	h := c.State.Health
	fmt.Fprintf(&b, "; its HEALTHCHECK: %s", h.Status)
	if n := len(h.Log); n > 0 {
		if out := strings.TrimSpace(h.Log[n-1].Output); out != "" {
			fmt.Fprintf(&b, " (%s)", truncate(out, maxHealthOutput))
		}
	}
	return b.String()
}

// maxHealthOutput bounds the HEALTHCHECK output quoted in an error.
const maxHealthOutput = 200

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (r *Runtime) tasks(ctx context.Context, serviceID string) ([]swarm.Task, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	ts, err := r.api.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", serviceID))})
	if err != nil {
		return nil, engine.WrapErr("list tasks of "+serviceID, err)
	}
	return ts, nil
}

// nodeNamesTTL is how long node names are reused before NodeList is
// asked again: every listing names each task's node, and a node's
// hostname hardly ever changes. A node not in the cache asks at once.
const nodeNamesTTL = 30 * time.Second

// nodeName returns the hostname of node id, or id when it cannot be
// told.
func (r *Runtime) nodeName(ctx context.Context, id string) string {
	if id == "" {
		return ""
	}
	r.mu.Lock()
	name, ok := r.nodes[id]
	fresh := time.Since(r.nodesAt) < nodeNamesTTL
	r.mu.Unlock()
	if ok && fresh {
		return name
	}
	lctx, cancel := context.WithTimeout(ctx, callTimeout)
	list, err := r.api.NodeList(lctx, swarm.NodeListOptions{})
	cancel()
	if err != nil {
		r.log.WithError(err).Warn("list swarm nodes")
		if ok {
			return name
		}
		return id
	}
	nodes := make(map[string]string, len(list))
	for _, n := range list {
		nodes[n.ID] = n.Description.Hostname
	}
	r.mu.Lock()
	r.nodes, r.nodesAt = nodes, time.Now()
	r.mu.Unlock()
	if name := nodes[id]; name != "" {
		return name
	}
	return id
}

// toContainer turns task t of set svc into a Container; all are the set's
// tasks (for the slot's restarts).
func (r *Runtime) toContainer(ctx context.Context, svc swarm.Service, t swarm.Task, all []swarm.Task) controller.Container {
	l := svc.Spec.Labels
	ctr := controller.Container{
		ID:         t.ID,
		Name:       l[LabelName] + "-" + strconv.Itoa(t.Slot),
		Service:    l[workload.LabelService],
		Color:      controller.Color(l[workload.LabelColor]),
		Deployment: l[workload.LabelDeployment],
		State:      string(t.Status.State),
		Node:       r.nodeName(ctx, t.NodeID),
	}
	if l[LabelName] == "" {
		ctr.Name = svc.Spec.Name + "-" + strconv.Itoa(t.Slot)
	}
	if cs := t.Spec.ContainerSpec; cs != nil {
		ctr.Image = cs.Image
	}
	if t.Status.ContainerStatus != nil {
		ctr.ExitCode = t.Status.ContainerStatus.ExitCode
	}
	if t.Status.State == swarm.TaskStateRunning {
		ctr.StartedAt = t.Status.Timestamp
		ctr.Address = taskAddress(t, l[LabelNetwork], l[workload.LabelPort])
	}
	for _, o := range all {
		if o.Slot == t.Slot && o.ID != t.ID && o.Status.State == swarm.TaskStateFailed && o.CreatedAt.Before(t.CreatedAt) {
			ctr.Restarts++
		}
	}
	return ctr
}

// taskAddress is the task's IP on network (the first attachment when
// network is "") joined with port; "" when it has none.
func taskAddress(t swarm.Task, network, port string) string {
	if port == "" {
		return ""
	}
	for _, a := range t.NetworksAttachments {
		if network != "" && a.Network.Spec.Name != network && a.Network.ID != network {
			continue
		}
		if a.Network.Spec.Ingress {
			continue
		}
		for _, cidr := range a.Addresses {
			ip, _, err := net.ParseCIDR(cidr)
			if err != nil {
				continue
			}
			return net.JoinHostPort(ip.String(), port)
		}
	}
	return ""
}

func shortID(id string) string { return id[:min(12, len(id))] }
