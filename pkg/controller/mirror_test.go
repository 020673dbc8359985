package controller_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// mirroringRuntime is a cluster runtime that keeps a copy of each
// service's state (StateMirror), as swarmx does with labels on its sets.
type mirroringRuntime struct {
	*fakeRuntime
	mu     sync.Mutex
	states map[string]controller.ServiceState
	fail   error // when set, MirrorState fails with it
	writes int
}

var _ controller.StateMirror = (*mirroringRuntime)(nil)

func (m *mirroringRuntime) MirrorState(ctx context.Context, st controller.ServiceState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.writes++
	m.states[st.Name] = st
	return nil
}

func (m *mirroringRuntime) MirroredState(ctx context.Context, service string) (controller.ServiceState, bool, error) {
	if err := ctx.Err(); err != nil {
		return controller.ServiceState{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.states[service]
	return st, ok, nil
}

func (m *mirroringRuntime) mirrored() (controller.ServiceState, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.states[svc]
	return st, ok
}

func (m *mirroringRuntime) setFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

func (m *mirroringRuntime) seed(st controller.ServiceState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.states[st.Name] = st
}

// newMirrorHarness is a harness whose service runs on a mirroring
// cluster runtime.
func newMirrorHarness(t *testing.T, mutate ...func(*controller.ServiceSpec)) (*harness, *mirroringRuntime) {
	t.Helper()
	var m *mirroringRuntime
	h := newHarnessWith(t, func(o *controller.Options) {
		m = &mirroringRuntime{fakeRuntime: o.Runtime.(*fakeRuntime), states: map[string]controller.ServiceState{}}
		o.Swarm = m
	}, append(mutate, func(s *controller.ServiceSpec) { s.Runtime = controller.RuntimeSwarm })...)
	return h, m
}

// wantMirrored checks that the cluster's copy names the sets the store does.
func wantMirrored(t *testing.T, h *harness, m *mirroringRuntime, when string) {
	t.Helper()
	got, ok := m.mirrored()
	want := h.store.service(svc)
	if !ok {
		t.Fatalf("%s: nothing mirrored, want %+v", when, want)
	}
	got.UpdatedAt, want.UpdatedAt = time.Time{}, time.Time{}
	if d := diff(got, want); d != "" {
		t.Errorf("%s: mirrored state differs from the store's:%s", when, d)
	}
}

func TestMirror_DeployRollbackAndBakeOutAreMirrored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, m := newMirrorHarness(t, withBake(time.Second))
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatal(err)
		}
		if _, ok := m.mirrored(); ok {
			t.Fatal("a service never deployed was mirrored")
		}
		h.deployOK("v1")
		wantMirrored(t, h, m, "after v1")
		h.deployOK("v2")
		wantMirrored(t, h, m, "after v2")
		if st, _ := m.mirrored(); st.ActiveImage != "demoapp:v2" || st.StandbyImage != "demoapp:v1" {
			t.Fatalf("mirrored after v2 = %+v, want v2 active and v1 standby", st)
		}
		if rb := h.rollback(); rb.Status != controller.StatusSucceeded {
			t.Fatalf("rollback = %s (%s)", rb.Status, rb.Error)
		}
		wantMirrored(t, h, m, "after the rollback")
		if st, _ := m.mirrored(); st.ActiveImage != "demoapp:v1" || st.StandbyImage != "demoapp:v2" {
			t.Fatalf("mirrored after the rollback = %+v, want v1 active and v2 standby", st)
		}

		// v3 passes its health check, then fails its bake: traffic and the
		// mirror go back to v1.
		h.prober.setVerdict(func(name string, n int) error {
			if strings.Contains(name, "-green-") && n > 2 {
				return errNope
			}
			return nil
		})
		if d := h.deploy("v3"); d.Status != controller.StatusRolledBack {
			t.Fatalf("deploy v3 = %s (%s), want rolled_back by its bake", d.Status, d.Error)
		}
		wantMirrored(t, h, m, "after the bake switched back")
		if st, _ := m.mirrored(); st.ActiveImage != "demoapp:v1" {
			t.Fatalf("mirrored after the bake = %+v, want v1 active", st)
		}
	})
}

func TestMirror_FailureDoesNotFailTheDeployAndReconcileRepairsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, m := newMirrorHarness(t)
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatal(err)
		}
		h.deployOK("v1")
		m.setFail(errors.New("swarm manager lost quorum"))
		v2 := h.deployOK("v2")
		if st := h.store.service(svc); st.ActiveDeployment != v2.ID {
			t.Fatalf("stored active deployment = %s, want %s", st.ActiveDeployment, v2.ID)
		}
		if st, _ := m.mirrored(); st.ActiveImage != "demoapp:v1" {
			t.Fatalf("mirrored = %+v, want still v1 while mirroring fails", st)
		}
		var warned bool
		for _, e := range h.logs.AllEntries() {
			if strings.Contains(e.Message, "state not mirrored") && e.Data["service"] == svc {
				warned = true
			}
		}
		if !warned {
			t.Error("no warning naming the service about the failed mirror")
		}

		// A pass while the cluster still refuses changes nothing and fails
		// nothing.
		if _, err := h.c.Reconcile(h.ctx()); err != nil {
			t.Fatalf("Reconcile while mirroring fails = %v, want nil", err)
		}
		m.setFail(nil)
		n, err := h.c.Reconcile(h.ctx())
		if err != nil || n != 1 {
			t.Fatalf("Reconcile = %d, %v; want 1 repair", n, err)
		}
		wantMirrored(t, h, m, "after Reconcile")
		if got := h.obs.repairList(); !slices.Contains(got, svc+"/"+controller.RepairStateMirror) {
			t.Errorf("repairs = %v, want a %s repair", got, controller.RepairStateMirror)
		}
		if n, err := h.c.Reconcile(h.ctx()); err != nil || n != 0 {
			t.Fatalf("second Reconcile = %d, %v; want nothing to repair", n, err)
		}
	})
}

// deployd rescheduled on another manager with an empty store: the
// cluster's copy becomes the store's state and traffic goes to the active
// set's running replicas.
func TestMirror_StartWithAnEmptyStoreAdoptsTheClusterCopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, m := newMirrorHarness(t)
		const active, standby = "20260101T000000.000000Z-aaaaaa", "20251231T000000.000000Z-bbbbbb"
		green := []controller.Container{
			h.rt.add(svc, controller.Green, 1, "demoapp:v2", active, true),
			h.rt.add(svc, controller.Green, 2, "demoapp:v2", active, true),
		}
		h.rt.add(svc, controller.Blue, 1, "demoapp:v1", standby, true)
		h.rt.add(svc, controller.Blue, 2, "demoapp:v1", standby, true)
		want := controller.ServiceState{Name: svc,
			ActiveColor: controller.Green, ActiveImage: "demoapp:v2", ActiveDeployment: active,
			StandbyColor: controller.Blue, StandbyImage: "demoapp:v1", StandbyDeployment: standby,
			UpdatedAt: time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)}
		m.seed(want)

		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatal(err)
		}
		if d := diff(h.store.service(svc), want); d != "" {
			t.Errorf("stored state after Start:%s", d)
		}
		if got, want := h.router.current(svc), addrsOf(green); !slices.Equal(sorted(got), sorted(want)) {
			t.Errorf("upstream = %v, want the active green replicas %v", got, want)
		}
		var logged bool
		for _, e := range h.logs.AllEntries() {
			if strings.Contains(e.Message, "state of web rebuilt from the cluster: active green (demoapp:v2, deployment "+active) {
				logged = true
			}
		}
		if !logged {
			t.Error("no log line says the state was rebuilt from the cluster")
		}
		if n, err := h.c.Reconcile(h.ctx()); err != nil || n != 0 {
			t.Fatalf("Reconcile after the rebuild = %d, %v; want nothing to repair (no replica is an orphan)", n, err)
		}
		if rb := h.rollback(); rb.Status != controller.StatusSucceeded || rb.Image != "demoapp:v1" {
			t.Fatalf("rollback after the rebuild = %s %s (%s), want succeeded to v1", rb.Status, rb.Image, rb.Error)
		}
		wantMirrored(t, h, m, "after the rollback")
	})
}

// With a store, the store wins: a stale cluster copy is logged and
// written again from the store, and routing follows the store.
func TestMirror_StartWithAStoreIgnoresAStaleMirrorAndRepairsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, m := newMirrorHarness(t)
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatal(err)
		}
		h.deployOK("v1")
		h.deployOK("v2")
		stored := h.store.service(svc)
		stale := stored
		stale.ActiveColor, stale.StandbyColor = stale.StandbyColor, stale.ActiveColor
		stale.ActiveImage, stale.StandbyImage = stale.StandbyImage, stale.ActiveImage
		stale.ActiveDeployment, stale.StandbyDeployment = stale.StandbyDeployment, stale.ActiveDeployment
		m.seed(stale)

		// A second controller on the same store and cluster: deployd
		// restarted with its volume.
		again := controller.New(controller.Options{
			Services: []controller.ServiceSpec{h.spec}, Runtime: h.rt, Swarm: m,
			Router: h.router, Prober: h.prober, Store: h.store, Logger: h.logger, Watch: testWatch,
		})
		t.Cleanup(func() {
			if err := again.Close(context.Background()); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		if err := again.Start(h.ctx()); err != nil {
			t.Fatal(err)
		}
		if d := diff(h.store.service(svc), stored); d != "" {
			t.Errorf("stored state changed by a stale mirror:%s", d)
		}
		if got, want := h.router.current(svc), addrsOf(h.colorContainers(stored.ActiveColor)); !slices.Equal(sorted(got), sorted(want)) {
			t.Errorf("upstream = %v, want the stored active color's %v", got, want)
		}
		wantMirrored(t, h, m, "after Start")
		var warned bool
		for _, e := range h.logs.AllEntries() {
			if strings.Contains(e.Message, "differs from the store's") &&
				strings.Contains(e.Message, "active "+string(stale.ActiveColor)) &&
				strings.Contains(e.Message, "active "+string(stored.ActiveColor)) {
				warned = true
			}
		}
		if !warned {
			t.Error("no warning naming both states")
		}
	})
}

func sorted(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return out
}
