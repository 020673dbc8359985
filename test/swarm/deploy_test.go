package swarm

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/deployd/deployd/pkg/controller"
)

// The single-host scenarios on runtime swarm: deploys pinned by digest and
// switched under load through nginx with no failed request, a rollback, a
// deploy whose health fails and one whose tasks cannot be placed, both
// leaving the active color serving.
func TestSwarm_DeployRollbackAndFailuresLeaveTheActiveColor(t *testing.T) {
	started := time.Now()
	s := newStack(t, "")
	t.Logf("stack up in %s", time.Since(started).Round(time.Millisecond))

	v1 := s.deploy("v1")
	if v1.Status != controller.StatusSucceeded {
		t.Fatalf("deploy v1: %s (%s)", v1.Status, v1.Error)
	}
	if want := s.repo + ":v1@" + s.digests["v1"]; v1.Image != want {
		t.Fatalf("v1 image = %q, want it pinned: %q", v1.Image, want)
	}
	s.assertServes("v1", "blue")
	s.assertTasksRun(v1.Image, 2)
	t.Logf("v1 deployed in %s", v1.FinishedAt.Sub(v1.CreatedAt).Round(time.Millisecond))

	stop := s.load(8)
	v2 := s.deploy("v2")
	rb := s.deploy("")
	sent, failed, first := stop()
	if v2.Status != controller.StatusSucceeded || rb.Status != controller.StatusSucceeded {
		t.Fatalf("deploy v2: %s (%s); rollback: %s (%s)", v2.Status, v2.Error, rb.Status, rb.Error)
	}
	if failed != 0 {
		t.Fatalf("%d of %d POSTs through nginx failed during the deploy and the rollback: %v", failed, sent, first)
	}
	t.Logf("v2 deployed in %s and rolled back in %s under load: %d POSTs, none failed",
		v2.FinishedAt.Sub(v2.CreatedAt).Round(time.Millisecond), rb.FinishedAt.Sub(rb.CreatedAt).Round(time.Millisecond), sent)
	s.assertServes("v1", "blue")

	// Each replica names the node it runs on.
	svc := s.service()
	for _, ct := range append(svc.Colors.Blue.Containers, svc.Colors.Green.Containers...) {
		if ct.State == "running" && ct.Node == "" {
			t.Errorf("replica %s has no node in the API", ct.Name)
		}
	}

	broken := s.deploy("v3-broken")
	if broken.Status != controller.StatusFailed || !strings.Contains(broken.Error, "health") {
		t.Fatalf("deploy of an unhealthy v3 = %s (%s), want failed at health", broken.Status, broken.Error)
	}
	s.assertServes("v1", "blue")
	t.Logf("whole test %s", time.Since(started).Round(time.Millisecond))
}

// A set no node can take fails its deploy within seconds, quoting Swarm's
// scheduler, and traffic stays where it was.
func TestSwarm_UnplaceableTasksFailTheDeployFast(t *testing.T) {
	s := newStack(t, "    placement: {constraints: [\"node.labels.deployd-test-nowhere==yes\"]}\n")
	d := s.deploy("v1")
	if d.Status != controller.StatusFailed || !strings.Contains(d.Error, "no suitable node") {
		t.Fatalf("deploy with an unplaceable constraint = %s (%s), want failed quoting the scheduler", d.Status, d.Error)
	}
	if took := d.FinishedAt.Sub(d.CreatedAt); took > 20*time.Second {
		t.Errorf("the failure took %s, want it fast", took)
	}
	if v := s.service(); v.ActiveColor != "" {
		t.Errorf("active color after the failed first deploy = %q, want none", v.ActiveColor)
	}
}

// assertTasksRun checks that Swarm runs n tasks of image (pinned by
// digest) for the service.
func (s *stack) assertTasksRun(image string, n int) {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	tasks, err := s.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "deployd.service="+s.svc), filters.Arg("desired-state", "running"))})
	if err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, task := range tasks {
		if task.Status.State == swarm.TaskStateRunning && task.Spec.ContainerSpec != nil && task.Spec.ContainerSpec.Image == image {
			running++
		}
	}
	if running != n {
		t.Fatalf("running tasks of %s = %d, want %d", image, running, n)
	}
}
