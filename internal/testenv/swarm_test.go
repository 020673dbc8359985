package testenv

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"

	"github.com/deployd/deployd/internal/lab"
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

// sharedAndOther returns a lease holding the swarm lock shared and a
// second, unlocked one, both released at the test's end. The lock is the
// test's own (in its temporary directory), so that the swarm's real users
// running beside it neither disturb it nor are disturbed.
func sharedAndOther(t *testing.T) (held, other *lab.SwarmLease) {
	t.Helper()
	t.Setenv("TMPDIR", t.TempDir())
	held, err := lab.OpenSwarmLock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = held.Release() })
	if err := held.LockShared(t.Context()); err != nil {
		t.Fatalf("lock shared: %v", err)
	}
	other, err = lab.OpenSwarmLock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Release() })
	return held, other
}

func TestSwarmLock_SharedHoldersBlockTheLeave(t *testing.T) {
	_, other := sharedAndOther(t)
	if err := other.TryExclusive(); err == nil {
		t.Fatal("exclusive lock granted while another holder has it shared")
	}
}

// A wait for the lock ends at its context's deadline, so a test that needs
// the swarm alone fails naming the wait instead of hanging on flock(2); a
// wait that can be granted is granted.
func TestSwarmLock_WaitEndsWithItsContext(t *testing.T) {
	_, other := sharedAndOther(t)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := other.LockExclusive(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "uses the swarm") {
		t.Fatalf("exclusive wait beside a shared holder = %v, want the deadline, naming the wait", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("the wait took %v after a 300ms deadline", waited)
	}
	if err := other.LockShared(t.Context()); err != nil {
		t.Fatalf("shared beside shared = %v, want granted", err)
	}
}

// A waiter for the swarm alone is not overtaken by users who come after
// it: they wait at the gate until it had its turn, which comes once the
// users already in are done.
func TestSwarmLock_ExclusiveWaiterIsNotOvertaken(t *testing.T) {
	held, alone := sharedAndOther(t)
	aloneGot := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		aloneGot <- alone.LockExclusive(ctx)
	}()
	// Once the waiter has closed the gate (it polls), a shared user that
	// comes later is kept waiting, though the lock is only held shared.
	deadline := time.Now().Add(5 * time.Second)
	for {
		later, err := lab.OpenSwarmLock()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		err = later.LockShared(ctx)
		cancel()
		_ = later.Release()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("a shared user arriving after the exclusive waiter = %v, want it kept waiting", err)
		}
	}

	if err := held.Release(); err != nil {
		t.Fatal(err)
	}
	if err := <-aloneGot; err != nil {
		t.Fatalf("exclusive waiter, once the shared holder left = %v, want granted", err)
	}
	if err := alone.Release(); err != nil {
		t.Fatal(err)
	}
	later, err := lab.OpenSwarmLock()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = later.Release() }()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := later.LockShared(ctx); err != nil {
		t.Fatalf("a shared user after the exclusive one left = %v, want granted", err)
	}
}
