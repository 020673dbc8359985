package controller_test

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/deployd/deployd/pkg/controller"
)

// A service on the Swarm runtime is deployed, rolled back and reconciled
// through that runtime alone: the local engine's sees none of it.
func TestRuntime_SwarmServiceUsesOnlyTheSwarmRuntime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		local := newFakeRuntime()
		h := newHarnessWith(t, func(o *controller.Options) {
			o.Swarm, o.Runtime = o.Runtime, local
		}, func(s *controller.ServiceSpec) { s.Runtime = controller.RuntimeSwarm })
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatal(err)
		}
		h.deployOK("v1")
		h.deployOK("v2")
		if rb := h.wait(h.rollback().ID); rb.Status != controller.StatusSucceeded {
			t.Fatalf("rollback = %s (%s), want succeeded", rb.Status, rb.Error)
		}
		if _, err := h.c.Reconcile(h.ctx()); err != nil {
			t.Fatal(err)
		}
		if n := len(h.rt.list(svc)); n != 4 {
			t.Errorf("containers on the swarm runtime = %d, want 4 (both colors)", n)
		}
		local.mu.Lock()
		defer local.mu.Unlock()
		for _, call := range local.calls {
			if call != "Ping" { // the readiness of the local engine
				t.Errorf("local runtime was called: %s", call)
			}
		}
	})
}

func TestRuntime_StartRefusesASwarmServiceWithoutASwarm(t *testing.T) {
	h := newHarness(t, func(s *controller.ServiceSpec) { s.Runtime = controller.RuntimeSwarm })
	err := h.c.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "service web: runtime swarm is not available") {
		t.Fatalf("Start = %v, want it to refuse the swarm service", err)
	}
}
