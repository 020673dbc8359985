package lab

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
)

// fakeSwarmEngine answers as a manager of the tests' own single-node swarm
// and counts the requests to leave it.
type fakeSwarmEngine struct {
	cli    *client.Client
	leaves atomic.Int32
}

func newFakeSwarmEngine(t *testing.T) *fakeSwarmEngine {
	t.Helper()
	e := &fakeSwarmEngine{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.41/info", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(system.Info{Swarm: swarm.Info{LocalNodeState: swarm.LocalNodeStateActive}})
	})
	mux.HandleFunc("GET /v1.41/swarm", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(swarm.Swarm{ClusterInfo: swarm.ClusterInfo{
			Spec: swarm.Spec{Annotations: swarm.Annotations{Labels: map[string]string{SwarmLabel: "true"}}}}})
	})
	mux.HandleFunc("POST /v1.41/swarm/leave", func(w http.ResponseWriter, _ *http.Request) {
		e.leaves.Add(1)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cli, err := client.NewClientWithOpts(client.WithHost("tcp://"+srv.Listener.Addr().String()), client.WithVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	e.cli = cli
	return e
}

// While a run keeps the swarm (make test's wrapper), the last of its
// users to leave leaves nothing, even with nobody on the swarm lock; the
// keeper, released last, leaves the tests' own swarm.
func TestKeepSwarm_UsersLeaveNothingAndTheKeeperLeavesLast(t *testing.T) {
	// The lock files live in TMPDIR: this test's own, apart from the
	// swarm of any test running beside it.
	t.Setenv("TMPDIR", t.TempDir())
	engine := newFakeSwarmEngine(t)
	ctx := context.Background()

	keep, err := KeepSwarm(ctx, engine.cli)
	if err != nil {
		t.Fatalf("KeepSwarm: %v", err)
	}
	user, err := JoinSwarm(ctx, engine.cli, false)
	if err != nil {
		t.Fatalf("JoinSwarm beside the keeper: %v", err)
	}
	if err := user.Release(); err != nil {
		t.Fatal(err)
	}
	if left, err := LeaveSwarmIfLast(ctx, engine.cli); left || err != nil {
		t.Fatalf("last user's leave while the swarm is kept = %v, %v; want nothing left", left, err)
	}
	alone, err := JoinSwarm(ctx, engine.cli, true)
	if err != nil {
		t.Fatalf("a user that needs the swarm alone, beside the keeper: %v", err)
	}
	if err := alone.Release(); err != nil {
		t.Fatal(err)
	}
	if n := engine.leaves.Load(); n != 0 {
		t.Fatalf("swarm leaves while kept = %d, want 0", n)
	}

	left, err := keep.Release(ctx, engine.cli)
	if !left || err != nil {
		t.Fatalf("keeper's release = %v, %v; want the swarm left", left, err)
	}
	if n := engine.leaves.Load(); n != 1 {
		t.Fatalf("swarm leaves = %d, want 1", n)
	}
}
