package swarm

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/deployd/deployd/pkg/controller"
)

// A node drained by hand during a deploy: the deploy fails cleanly,
// quoting Swarm, and deployd's record of the active color is untouched.
// On a single node the drain may also stop the active color's tasks; once
// the node takes tasks again Swarm starts them (on new addresses), and the
// reconciler points traffic at them without anyone touching deployd.
func TestSwarm_DrainedNodeFailsTheDeployAndTheActiveColorComesBack(t *testing.T) {
	s := newStackWith(t, "", stackOptions{alone: true})
	v1 := s.deploy("v1")
	if v1.Status != controller.StatusSucceeded {
		t.Fatalf("deploy v1: %s (%s)", v1.Status, v1.Error)
	}
	before := s.service()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes, err := s.cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil || len(nodes) != 1 {
		t.Fatalf("NodeList = %d nodes, %v; want the one", len(nodes), err)
	}
	node := nodes[0].ID
	s.setAvailability(node, swarm.NodeAvailabilityDrain)
	t.Cleanup(func() { s.setAvailability(node, swarm.NodeAvailabilityActive) })

	d := s.deploy("v2")
	if d.Status != controller.StatusFailed || !strings.Contains(d.Error, "not available for new tasks") {
		t.Fatalf("deploy on a drained node = %s (%s), want failed quoting Swarm", d.Status, d.Error)
	}
	t.Logf("deploy on the drained node failed in %s: %s", d.FinishedAt.Sub(d.CreatedAt).Round(time.Millisecond), d.Error)
	if after := s.service(); after.ActiveColor != before.ActiveColor || after.ActiveImage != before.ActiveImage {
		t.Fatalf("active after the failed deploy = %s %s, want %s %s", after.ActiveColor, after.ActiveImage, before.ActiveColor, before.ActiveImage)
	}

	s.setAvailability(node, swarm.NodeAvailabilityActive)
	back := time.Now()
	deadline := back.Add(2 * time.Minute)
	for {
		if v, c, err := s.appVersion(); err == nil && v == "v1" && c == "blue" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("v1 does not serve again two minutes after the node took tasks again")
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("v1 served again %s after the node took tasks again", time.Since(back).Round(time.Millisecond))
	s.assertServes("v1", "blue")
}

func (s *stack) setAvailability(node string, a swarm.NodeAvailability) {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		n, _, err := s.cli.NodeInspectWithRaw(ctx, node)
		if err == nil {
			n.Spec.Availability = a
			err = s.cli.NodeUpdate(ctx, node, n.Version, n.Spec)
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("set node %s %s: %v", node, a, err)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}
