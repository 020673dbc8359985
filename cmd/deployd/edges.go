package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/deployd/deployd/pkg/trafficswitch"
)

// edgesPollInterval is how often the daemon asks the edge switches at
// start whether they answer.
const edgesPollInterval = 250 * time.Millisecond

// edgesPlane is the Plane of the edge switches of a swarm
// (traffic.switchd.edges): a Fanout that lists the running tasks of the
// edges' Swarm service at every call and drives each over its TCP
// control API on the overlay, so that a switch succeeds only when every
// edge confirmed it. It returns once every edge answers for the first
// service, or fails after switchdStartTimeout: the controller's recovery
// needs them, as it needs a local switchd.
func (m *Main) edgesPlane(ctx context.Context) (*trafficswitch.Fanout, error) {
	cfg := m.Config
	token, err := cfg.ResolveSwitchdControlToken(m.Getenv, os.ReadFile)
	if err != nil {
		return nil, err
	}
	rt, err := m.swarmManager(ctx, "traffic.switchd.edges.service", "the edge switches run on a swarm")
	if err != nil {
		return nil, err
	}
	e := cfg.Traffic.Switchd.Edges
	port := strconv.Itoa(cfg.EdgesControlPort())
	discover := func(ctx context.Context) ([]trafficswitch.Edge, error) {
		tasks, err := rt.TaskAddresses(ctx, e.Service, e.Network)
		if err != nil {
			return nil, fmt.Errorf("edge switches of Swarm service %s: %w", e.Service, err)
		}
		edges := make([]trafficswitch.Edge, 0, len(tasks))
		for _, t := range tasks {
			// The task's name says which edge; its IP tells two tasks
			// of one slot apart while Swarm replaces one.
			edges = append(edges, trafficswitch.Edge{
				Name:  t.Name + "@" + t.IP,
				Plane: trafficswitch.NewTCPClient(net.JoinHostPort(t.IP, port), string(token)),
			})
		}
		return edges, nil
	}
	f, err := trafficswitch.NewFanout(trafficswitch.FanoutOptions{Discover: discover, Logger: m.Logger})
	if err != nil {
		return nil, fmt.Errorf("edge switches: %w", err)
	}
	if err := waitEdges(ctx, f, cfg.ServiceSpecs()[0].Name); err != nil {
		return nil, fmt.Errorf("edge switches of Swarm service %s on %s: %w", e.Service, e.Network, err)
	}
	m.Logger.WithField("edges_service", e.Service).Info("traffic moves through the edge switches of the swarm")
	return f, nil
}

// waitEdges polls the edges until each answers for service (knowing it or
// not), or switchdStartTimeout passes.
func waitEdges(ctx context.Context, f *trafficswitch.Fanout, service string) error {
	ctx, cancel := context.WithTimeout(ctx, switchdStartTimeout)
	defer cancel()
	t := time.NewTicker(edgesPollInterval)
	defer t.Stop()
	for {
		_, err := f.Status(ctx, service)
		if err == nil || errors.Is(err, trafficswitch.ErrNotFound) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", errors.Join(ctx.Err(), err))
		case <-t.C:
		}
	}
}
