package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// A swarm for tests. Several test processes (one per package) may use the
// local engine's swarm at once, so they coordinate with flock(2) on one
// file: a test holds the lock shared for as long as it uses the swarm, an
// exclusive hold is taken only to init it, and the last process out (the
// one that gets the lock exclusively after its tests) leaves the swarm,
// but only one that carries SwarmTestLabel: a developer's own swarm is
// never left.

// SwarmTestLabel marks a swarm initialised by these helpers.
const SwarmTestLabel = "deployd.test"

const swarmInitTimeout = time.Minute

// swarmLockPath is the file the test processes lock.
func swarmLockPath() string { return filepath.Join(os.TempDir(), "deployd-test-swarm.lock") }

// Lock modes for swarmLease.lock.
const (
	lockShared       = syscall.LOCK_SH
	lockExclusive    = syscall.LOCK_EX
	lockExclusiveNow = syscall.LOCK_EX | syscall.LOCK_NB
)

// swarmLease is one test's shared hold on the swarm lock.
type swarmLease struct{ f *os.File }

func openSwarmLock() (*swarmLease, error) {
	f, err := os.OpenFile(swarmLockPath(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open swarm lock: %w", err)
	}
	return &swarmLease{f: f}, nil
}

func (l *swarmLease) lock(how int) error {
	for {
		err := syscall.Flock(int(l.f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// release drops the lock by closing the file (the lock goes with it).
func (l *swarmLease) release() error { return l.f.Close() }

// Swarm returns a Docker client on an engine that is a swarm manager: the
// local engine is initialised as a single-node swarm (listening on
// 127.0.0.1:2377, labelled SwarmTestLabel=true) when it is in none; a
// swarm left behind by a crashed run is reused. The test holds the swarm
// lock shared until its cleanup, registered first so that it runs after
// the test's own cleanups (services and networks go before the lease).
// Outside CI an engine that cannot be a manager skips the test; with
// CI=true it fails it.
func Swarm(t testing.TB) *client.Client {
	t.Helper()
	return joinSwarm(t, lockShared)
}

// SwarmAlone is Swarm for a test that disturbs every task of the swarm
// (draining its only node, say): it holds the lock exclusively, so it
// waits until no other test process uses the swarm, and they wait for it.
// The calling process must hold no other lease meanwhile: call it from a
// test that is not parallel.
func SwarmAlone(t testing.TB) *client.Client {
	t.Helper()
	return joinSwarm(t, lockExclusive)
}

// joinSwarm is Swarm, holding the lock as hold for the test.
func joinSwarm(t testing.TB, hold int) *client.Client {
	t.Helper()
	cli := Docker(t)
	lease, err := openSwarmLock()
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := lease.release(); err != nil {
			t.Errorf("release swarm lock: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), swarmInitTimeout)
	defer cancel()
	if err := lease.lock(hold); err != nil {
		t.Fatalf("lock %s: %v", swarmLockPath(), err)
	}
	state, err := swarmState(ctx, cli)
	if err != nil {
		unavailable(t, "%v", err)
	}
	if state == swarm.LocalNodeStateActive {
		requireManager(ctx, t, cli)
		return cli
	}
	// Exclusive to init: no other test process is using a swarm now.
	// Converting the lock drops the shared hold first, so two processes
	// upgrading at once do not deadlock.
	if err := lease.lock(lockExclusive); err != nil {
		t.Fatalf("lock %s exclusive: %v", swarmLockPath(), err)
	}
	if state, err = swarmState(ctx, cli); err != nil {
		unavailable(t, "%v", err)
	}
	if state != swarm.LocalNodeStateActive {
		_, err := cli.SwarmInit(ctx, swarm.InitRequest{
			ListenAddr:    "127.0.0.1:2377",
			AdvertiseAddr: "127.0.0.1",
			Spec:          swarm.Spec{Annotations: swarm.Annotations{Labels: map[string]string{SwarmTestLabel: "true"}}},
		})
		if err != nil {
			unavailable(t, "init a test swarm on %s: %v", cli.DaemonHost(), err)
		}
	}
	if err := lease.lock(hold); err != nil {
		t.Fatalf("lock %s: %v", swarmLockPath(), err)
	}
	requireManager(ctx, t, cli)
	return cli
}

func swarmState(ctx context.Context, cli *client.Client) (swarm.LocalNodeState, error) {
	info, err := cli.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("docker info: %w", err)
	}
	return info.Swarm.LocalNodeState, nil
}

func requireManager(ctx context.Context, t testing.TB, cli *client.Client) {
	t.Helper()
	if _, err := cli.SwarmInspect(ctx); err != nil {
		unavailable(t, "the engine at %s is in a swarm but not a manager: %v", cli.DaemonHost(), err)
	}
}

// SwarmMain runs a package's tests and then, if this process is the last
// one using the test swarm and the swarm is the tests' own (it carries
// SwarmTestLabel), leaves it. It returns m.Run's code, for TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.SwarmMain(m)) }
func SwarmMain(m *testing.M) int {
	code := m.Run()
	if err := leaveTestSwarm(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: leave test swarm: %v\n", err)
	}
	return code
}

// leaveTestSwarm leaves the swarm when no other process holds the lock and
// the swarm is labelled as the tests'.
func leaveTestSwarm() error {
	lease, err := openSwarmLock()
	if err != nil {
		return err
	}
	defer func() { _ = lease.release() }()
	if err := lease.lock(lockExclusiveNow); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil // another process still uses it; the last one leaves
		}
		return fmt.Errorf("lock %s: %w", swarmLockPath(), err)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer func() { _ = cli.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), swarmInitTimeout)
	defer cancel()
	sw, err := cli.SwarmInspect(ctx)
	if err != nil {
		// Not a manager, or in no swarm at all: nothing of ours to leave.
		return nil
	}
	if sw.Spec.Labels[SwarmTestLabel] != "true" {
		return nil // someone's real swarm
	}
	if err := cli.SwarmLeave(ctx, true); err != nil {
		return fmt.Errorf("swarm leave: %w", err)
	}
	return nil
}

// OverlayNetwork creates an attachable overlay network with a unique name,
// labelled SwarmTestLabel=true, and returns its name. It is removed at
// cleanup; register it before the services that use it, so that they go
// first. Removal is retried while the swarm detaches their tasks.
func OverlayNetwork(t testing.TB, cli *client.Client) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random network name: %v", err)
	}
	name := "deployd-tnet-" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	resp, err := cli.NetworkCreate(ctx, name, network.CreateOptions{
		Driver:     "overlay",
		Attachable: true,
		Labels:     map[string]string{SwarmTestLabel: "true"},
	})
	if err != nil {
		t.Fatalf("create overlay network %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		for {
			err := cli.NetworkRemove(ctx, resp.ID)
			if err == nil || cerrdefs.IsNotFound(err) {
				return
			}
			select {
			case <-ctx.Done():
				t.Errorf("remove overlay network %s: %v", name, err)
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
	return name
}

// RemoveSwarmServices removes every swarm service labelled
// deployd.service=<service> and waits (bounded) until their tasks are
// gone or ended (the tasks of a removed job linger, complete, until
// Swarm reaps them). Meant for t.Cleanup; problems are reported with t.Errorf.
func RemoveSwarmServices(t testing.TB, cli *client.Client, service string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", serviceLabel+"="+service))
	list, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: f})
	if err != nil {
		t.Errorf("list swarm services of %s: %v", service, err)
		return
	}
	for _, s := range list {
		if err := cli.ServiceRemove(ctx, s.ID); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove swarm service %s: %v", s.Spec.Name, err)
		}
	}
	for {
		tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: f})
		if err == nil && !anyLive(tasks) {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("tasks of %s still there after removing its services (err %v)", service, err)
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// anyLive reports whether a task may still hold a container.
func anyLive(tasks []swarm.Task) bool {
	for _, t := range tasks {
		switch t.Status.State {
		case swarm.TaskStateComplete, swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateShutdown, swarm.TaskStateOrphaned:
		default:
			return true
		}
	}
	return false
}
