// Package swarmx adapts Docker Swarm mode to controller.Runtime. A
// controller Container is one Swarm task; a set (the replicas one
// deployment runs in one color of a service) is one Swarm service named
// <service>-<color>-<last 6 characters of the deployment>. Everything goes
// through the Engine API of a manager: no ssh, no CLI.
package swarmx

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// callTimeout bounds every short Engine call; waits for tasks are bounded
// by the caller's context.
const callTimeout = 30 * time.Second

// pollInterval is how often task states are read while waiting: Swarm
// reports a rejected or unplaceable task within a second or so, and a
// deploy should fail within a couple of seconds of that.
const pollInterval = 250 * time.Millisecond

// Engine lists the Docker SDK methods swarmx uses; *client.Client has them.
type Engine interface {
	SwarmInspect(ctx context.Context) (swarm.Swarm, error)
	ServiceCreate(ctx context.Context, spec swarm.ServiceSpec, opts swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error)
	ServiceInspectWithRaw(ctx context.Context, id string, opts swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceUpdate(ctx context.Context, id string, version swarm.Version, spec swarm.ServiceSpec, opts swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error)
	ServiceList(ctx context.Context, opts swarm.ServiceListOptions) ([]swarm.Service, error)
	ServiceRemove(ctx context.Context, id string) error
	ServiceLogs(ctx context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error)
	TaskList(ctx context.Context, opts swarm.TaskListOptions) ([]swarm.Task, error)
	TaskInspectWithRaw(ctx context.Context, id string) (swarm.Task, []byte, error)
	NodeList(ctx context.Context, opts swarm.NodeListOptions) ([]swarm.Node, error)
	NetworkInspect(ctx context.Context, id string, opts network.InspectOptions) (network.Inspect, error)
	// ContainerInspect reads a task's container where it runs on this
	// node, for its HEALTHCHECK's last output.
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	// ContainerRemove removes a finished job's container on this node
	// (see removeQuietly).
	ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error
}

var _ Engine = (*client.Client)(nil)

// Runtime runs deployd's replicas as Swarm services. It is safe for
// concurrent use.
type Runtime struct {
	api Engine
	pin Pinner
	log logrus.FieldLogger

	mu sync.Mutex
	// sets serialises the create-or-scale of one set's service: the
	// controller starts a set's replicas in parallel.
	sets map[string]*sync.Mutex
	// nodes are the swarm's node names by ID as listed at nodesAt (see
	// nodeName).
	nodes   map[string]string
	nodesAt time.Time
}

// taskRef is a task's set service and slot.
type taskRef struct {
	serviceID string
	slot      int
}

var (
	_ controller.Runtime     = (*Runtime)(nil)
	_ controller.ImagePinner = (*Runtime)(nil)
)

// Pinner resolves an image reference to the registry's digest of it;
// dockerx.Client's PinnedRef does.
type Pinner interface {
	PinnedRef(ctx context.Context, ref string) (string, error)
}

// New returns a Runtime on cli, which must talk to a swarm manager (see
// Ping), pinning images with pin. log may be nil.
func New(cli Engine, pin Pinner, log logrus.FieldLogger) *Runtime {
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = l
	}
	return &Runtime{api: cli, pin: pin, log: log, sets: map[string]*sync.Mutex{}}
}

// Ping checks that the engine answers as a swarm manager; otherwise the
// error wraps controller.ErrUnavailable.
func (r *Runtime) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := r.api.SwarmInspect(ctx); err != nil {
		return fmt.Errorf("swarm inspect (not a swarm manager?): %w: %w", controller.ErrUnavailable, err)
	}
	return nil
}

// setLock returns the mutex of the set service named name.
func (r *Runtime) setLock(name string) *sync.Mutex {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.sets[name]
	if !ok {
		m = &sync.Mutex{}
		r.sets[name] = m
	}
	return m
}

// patientAfter is how long a wait for a task polls every pollInterval;
// after it the polls are spaced out, up to maxPollInterval apart.
const (
	patientAfter    = 2 * time.Second
	maxPollInterval = 2 * time.Second
)

// sleepPoll waits pollInterval or until ctx ends.
func sleepPoll(ctx context.Context) error { return sleepFor(ctx, pollInterval) }

// sleepFor waits d or until ctx ends.
func sleepFor(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
