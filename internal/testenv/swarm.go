package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/deployd/deployd/internal/lab"
)

// A swarm for tests, on the lock lab.JoinSwarm describes: a test holds it
// shared for as long as it uses the swarm, and the last process out leaves
// the swarm if it is the tests' own. The benchmark takes the same lock, so
// a benchmark run and the test packages never init or leave the swarm
// under each other.

// SwarmTestLabel marks a swarm initialised by these helpers (and by the
// benchmark): lab.SwarmLabel.
const SwarmTestLabel = lab.SwarmLabel

// swarmWaitTimeout bounds joining the test swarm, mostly a wait for the
// lock: a SwarmAlone test waits until every other package and benchmark
// run using the swarm is done, which takes minutes in `make test`.
const swarmWaitTimeout = 10 * time.Minute

// swarmLeaveTimeout bounds leaving it.
const swarmLeaveTimeout = time.Minute

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
	return joinSwarm(t, false)
}

// SwarmAlone is Swarm for a test that disturbs every task of the swarm
// (draining its only node, say): it holds the lock exclusively, so it
// waits until no other process uses the swarm, and they wait for it.
// The calling process must hold no other lease meanwhile: call it from a
// test that is not parallel.
func SwarmAlone(t testing.TB) *client.Client {
	t.Helper()
	return joinSwarm(t, true)
}

func joinSwarm(t testing.TB, exclusive bool) *client.Client {
	t.Helper()
	cli := Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), swarmWaitTimeout)
	defer cancel()
	lease, err := lab.JoinSwarm(ctx, cli, exclusive)
	if errors.Is(err, lab.ErrSwarmUnavailable) {
		unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := lease.Release(); err != nil {
			t.Errorf("release swarm lock: %v", err)
		}
	})
	return cli
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

func leaveTestSwarm() error {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer func() { _ = cli.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), swarmLeaveTimeout)
	defer cancel()
	_, err = lab.LeaveSwarmIfLast(ctx, cli)
	return err
}

// OverlayNetwork creates an attachable overlay network with a unique name,
// labelled SwarmTestLabel=true, and returns its name. It is removed at
// cleanup; register it before the services that use it, so that they go
// first. Removal is retried while the swarm detaches their tasks.
func OverlayNetwork(t testing.TB, cli *client.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	name, id, err := lab.CreateOverlay(ctx, cli, "deployd-tnet-", nil)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := lab.RemoveNetwork(ctx, cli, id); err != nil {
			t.Errorf("overlay %s: %v", name, err)
		}
	})
	return name
}

// RemoveSwarmServices removes every swarm service labelled
// deployd.service=<service> and waits (bounded) until their tasks are
// gone or ended. Meant for t.Cleanup; problems are reported with
// t.Errorf.
func RemoveSwarmServices(t testing.TB, cli *client.Client, service string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := lab.RemoveSwarmServices(ctx, cli, service); err != nil {
		t.Errorf("%v", err)
	}
}
