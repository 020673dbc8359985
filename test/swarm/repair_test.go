package swarm

import (
	"context"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/deployd/deployd/pkg/controller"
)

// An operator at the cluster's CLI scales the active color's Swarm service
// to 0, then removes it (docker service scale / rm): each time the
// reconciler brings the color back, nginx serves the same version from it
// again, and the next deploy goes through.
func TestSwarm_ActiveSetScaledToZeroOrRemovedByHandComesBack(t *testing.T) {
	s := newStack(t, "")
	if v1 := s.deploy("v1"); v1.Status != controller.StatusSucceeded {
		t.Fatalf("deploy v1: %s (%s)", v1.Status, v1.Error)
	}
	s.assertServes("v1", "blue")

	scaled := s.activeSet("blue")
	zero := uint64(0)
	scaled.Spec.Mode.Replicated.Replicas = &zero
	s.byHand("docker service scale "+scaled.Spec.Name+"=0", func(ctx context.Context) error {
		_, err := s.cli.ServiceUpdate(ctx, scaled.ID, scaled.Version, scaled.Spec, swarm.ServiceUpdateOptions{})
		return err
	}, func(set swarm.Service) bool {
		r := set.Spec.Mode.Replicated.Replicas
		return set.ID == scaled.ID && r != nil && *r == 2
	})

	removed := s.activeSet("blue")
	s.byHand("docker service rm "+removed.Spec.Name, func(ctx context.Context) error {
		return s.cli.ServiceRemove(ctx, removed.ID)
	}, func(set swarm.Service) bool { return set.ID != removed.ID })

	if v2 := s.deploy("v2"); v2.Status != controller.StatusSucceeded {
		t.Fatalf("deploy v2 after the repairs: %s (%s)", v2.Status, v2.Error)
	}
	s.assertServes("v2", "green")
}

// activeSet is the one Swarm service of color.
func (s *stack) activeSet(color string) swarm.Service {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	list, err := s.setsOf(ctx, color)
	if err != nil || len(list) != 1 {
		t.Fatalf("%s's sets = %d (%v), want 1", color, len(list), err)
	}
	return list[0]
}

// setsOf lists the Swarm services of color.
func (s *stack) setsOf(ctx context.Context, color string) ([]swarm.Service, error) {
	return s.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "deployd.service="+s.svc), filters.Arg("label", "deployd.color="+color))})
}

// byHand does what an operator does, then waits, within a few reconciler
// passes, until blue's set is repaired (by repaired's judgement) with two
// tasks running and nginx serves v1 from it. Requests may fail meanwhile
// (there is no standby to take over): the test logs how many did.
func (s *stack) byHand(what string, do func(context.Context) error, repaired func(swarm.Service) bool) {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	if err := do(ctx); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	at := time.Now()
	deadline := at.Add(4 * reconcileInterval)
	var sent, failed int
	for {
		version, color, err := s.appVersion()
		sent++
		if err != nil {
			failed++
		}
		set, n := s.blueSet()
		if err == nil && version == "v1" && color == "blue" && n == 2 && repaired(set) {
			t.Logf("%s: repaired as %s %s after it; %d of %d requests through nginx meanwhile failed",
				what, set.Spec.Name, time.Since(at).Round(time.Millisecond), failed, sent)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s later, blue's set is %s with %d task(s) running and nginx answers %q %q %v, want it repaired and serving v1",
				what, time.Since(at).Round(time.Millisecond), set.Spec.Name, n, version, color, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// blueSet is blue's one Swarm service and its running tasks; a zero
// service while there is none or several.
func (s *stack) blueSet() (swarm.Service, int) {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	list, err := s.setsOf(ctx, "blue")
	if err != nil || len(list) != 1 {
		return swarm.Service{}, 0
	}
	tasks, err := s.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", list[0].ID), filters.Arg("desired-state", "running"))})
	if err != nil {
		return list[0], 0
	}
	n := 0
	for _, task := range tasks {
		if task.Status.State == swarm.TaskStateRunning {
			n++
		}
	}
	return list[0], n
}
