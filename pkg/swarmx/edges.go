package swarmx

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"

	"github.com/deployd/deployd/internal/engine"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
)

// TaskAddress is one running task of a service and its IP on a network.
type TaskAddress struct {
	// Name is the task's name as Swarm shows it: service.slot for a
	// replicated service, service.node-ID for a global one.
	Name string
	// ID is the task's ID.
	ID string
	// Node is the ID of the node it runs on.
	Node string
	// IP is its address on the network asked for.
	IP string
}

// TaskAddresses lists the tasks of the service named serviceName that
// Swarm runs (desired and actual state running), with their IP on
// network, sorted by name. A task not attached to network yet is left
// out; a service that does not exist is an error wrapping
// controller.ErrNotFound.
func (r *Runtime) TaskAddresses(ctx context.Context, serviceName, network string) ([]TaskAddress, error) {
	svc, err := r.inspectService(ctx, serviceName)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	tasks, err := r.api.TaskList(cctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", svc.ID), filters.Arg("desired-state", "running"))})
	if err != nil {
		return nil, engine.WrapErr("list tasks of "+serviceName, err)
	}
	var out []TaskAddress
	for _, t := range tasks {
		if t.Status.State != swarm.TaskStateRunning {
			continue
		}
		// taskAddress joins a port; the caller adds its own.
		addr := taskAddress(t, network, "0")
		if addr == "" {
			continue
		}
		ip, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("address of task %s: %w", t.ID, err)
		}
		out = append(out, TaskAddress{Name: taskName(svc.Spec.Name, t), ID: t.ID, Node: t.NodeID, IP: ip})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// taskName is the name Swarm gives a task: service.slot, or
// service.node-ID for a global service's.
func taskName(service string, t swarm.Task) string {
	if t.Slot > 0 {
		return service + "." + strconv.Itoa(t.Slot)
	}
	return service + "." + t.NodeID
}
