package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
)

func TestMain(m *testing.M) { os.Exit(SwarmMain(m)) }

func TestSwarm_EngineIsAManagerWithAnAttachableOverlay(t *testing.T) {
	cli := Swarm(t)
	name := OverlayNetwork(t, cli)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sw, err := cli.SwarmInspect(ctx)
	if err != nil {
		t.Fatalf("SwarmInspect: %v", err)
	}
	t.Logf("swarm %s, labels %v", sw.ID, sw.Spec.Labels)
	n, err := cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if err != nil {
		t.Fatalf("NetworkInspect %s: %v", name, err)
	}
	// The engine reports no Driver for an overlay no local container is
	// attached to yet, so the scope is what tells it is the swarm's.
	if !n.Attachable || n.Scope != "swarm" || n.Labels[SwarmTestLabel] != "true" {
		t.Fatalf("network = driver %s attachable %v scope %s labels %v; want a labelled attachable swarm overlay",
			n.Driver, n.Attachable, n.Scope, n.Labels)
	}
}

func TestSwarmLock_SharedHoldersBlockTheLeave(t *testing.T) {
	held, err := openSwarmLock()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.release() }()
	if err := held.lock(lockShared); err != nil {
		t.Fatalf("lock shared: %v", err)
	}
	other, err := openSwarmLock()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.release() }()
	if err := other.lock(lockExclusiveNow); err == nil {
		t.Fatal("exclusive lock granted while another holder has it shared")
	}
}
