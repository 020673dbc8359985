package controller_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/deployd/deployd/pkg/controller"
)

func TestDeploy_DockerDownAnswersUnavailableAndRecordsNothing(t *testing.T) {
	calls := map[string]func(h *harness) error{
		"deploy": func(h *harness) error {
			_, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2"})
			return err
		},
		"rollback": func(h *harness) error {
			_, err := h.c.Rollback(h.ctx(), svc, controller.RollbackRequest{Trigger: controller.Trigger{Source: "test"}})
			return err
		},
		"delivery": func(h *harness) error {
			_, _, err := h.c.DeployDelivery(h.ctx(), "delivery-1", svc, controller.DeployRequest{Image: "v2"})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t)
				h.deployOK("v1")
				h.deployOK("v2")
				before, _ := h.store.ListDeployments(h.ctx(), "", 0)
				_, writesBefore := h.store.accesses()
				h.rt.set(func(rt *fakeRuntime) { rt.pingErr = controller.ErrUnavailable })

				err := call(h)

				if got := controller.ErrorCode(err); got != controller.EUNAVAILABLE {
					t.Fatalf("error code = %q (%v), want %q", got, err, controller.EUNAVAILABLE)
				}
				if msg := controller.ErrorMessage(err); !strings.HasPrefix(msg, "docker engine unavailable: ") {
					t.Errorf("message = %q, want it to start with %q", msg, "docker engine unavailable: ")
				}
				after, _ := h.store.ListDeployments(h.ctx(), "", 0)
				if len(after) != len(before) {
					t.Errorf("deployments = %d, want %d: nothing recorded", len(after), len(before))
				}
				if _, writes := h.store.accesses(); writes != writesBefore {
					t.Errorf("store writes = %d, want %d", writes, writesBefore)
				}
				if _, err := h.store.GetDelivery(h.ctx(), "delivery-1"); !errors.Is(err, controller.ErrNotFound) {
					t.Errorf("delivery remembered (err %v), want not found", err)
				}
			})
		})
	}
}

func TestReady_ReportsEachFailingDependency(t *testing.T) {
	down := errors.New("down")
	tests := []struct {
		name               string
		store, docker, ngx error
		want               []string
		notWant            []string
	}{
		{name: "all up"},
		{name: "store", store: down, want: []string{"store: "}, notWant: []string{"docker", "traffic"}},
		{name: "docker", docker: controller.ErrUnavailable, want: []string{"docker: "}, notWant: []string{"store", "traffic"}},
		{name: "traffic", ngx: errors.New("nginx config test: emerg: unknown directive"), want: []string{"traffic: ", "nginx config test: emerg: unknown directive"}, notWant: []string{"store", "docker"}},
		{name: "all down", store: down, docker: down, ngx: down, want: []string{"store: ", "docker: ", "traffic: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t)
				h.store.set(func(s *memStore) { s.pingErr = tt.store })
				h.rt.set(func(rt *fakeRuntime) { rt.pingErr = tt.docker })
				h.router.setCheckErr(tt.ngx)

				err := h.c.Ready(h.ctx())

				if tt.want == nil {
					if err != nil {
						t.Fatalf("Ready = %v, want nil", err)
					}
					return
				}
				if got := controller.ErrorCode(err); got != controller.EUNAVAILABLE {
					t.Fatalf("error code = %q (%v), want %q", got, err, controller.EUNAVAILABLE)
				}
				msg := controller.ErrorMessage(err)
				if missing := containsAll(msg, tt.want...); len(missing) > 0 {
					t.Errorf("message = %q, missing %q", msg, missing)
				}
				for _, s := range tt.notWant {
					if strings.Contains(msg, s) {
						t.Errorf("message = %q, want no mention of %q", msg, s)
					}
				}
			})
		})
	}
}

func TestDeploy_NotifiesStartAndEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.deployOK("v1")
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2", Trigger: controller.Trigger{Source: "api", Actor: "alice", OnBehalfOf: "octocat"}})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		h.wait(d.ID)
		h.prober.setVerdict(func(name string, n int) error { return errors.New("503") })
		failed := h.deploy("v3")
		h.prober.setVerdict(nil)
		rb, err := h.c.Rollback(h.ctx(), svc, controller.RollbackRequest{Trigger: controller.Trigger{Source: "api", Actor: "bob"}})
		if err != nil {
			t.Fatalf("Rollback: %v", err)
		}
		h.wait(rb.ID)

		want := []string{
			"deploy_started", "deploy_succeeded", // v1
			"deploy_started", "deploy_succeeded", // v2
			"deploy_started", "deploy_failed", // v3
			"deploy_started", "rolled_back",
		}
		if got := h.notes.kinds(); !slices.Equal(got, want) {
			t.Fatalf("notification kinds = %v, want %v", got, want)
		}
		notes := h.notes.all()
		if n := notes[3]; n.Deployment != d.ID || n.Actor != "alice" || n.OnBehalfOf != "octocat" || n.Image != "demoapp:v2" || n.Color != controller.Green || n.Service != svc {
			t.Errorf("success notification = %+v, want deployment %s by alice (for octocat) of demoapp:v2 to green", n, d.ID)
		}
		if n := notes[5]; n.Deployment != failed.ID || !strings.Contains(n.Message, "503") {
			t.Errorf("failure notification = %+v, want deployment %s with the error", n, failed.ID)
		}
		if n := notes[7]; n.Actor != "bob" || n.OnBehalfOf != "" || !strings.Contains(n.Message, "rolled back") || !strings.Contains(n.Message, "bob") {
			t.Errorf("rollback notification = %+v, want it to say rolled back by bob", n)
		}
	})
}

func TestDeploy_ObserverSeesFinishSwitchFailedProbesAndState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		// Each replica's first probe fails: two failed probes, then healthy.
		h.prober.setVerdict(func(name string, n int) error {
			if n == 1 {
				return errors.New("connection refused")
			}
			return nil
		})
		d := h.deployOK("v1")
		h.deployOK("v2")

		fin := h.obs.finishedDeployments()
		if len(fin) != 2 || fin[0].ID != d.ID || fin[0].Status != controller.StatusSucceeded || len(fin[0].Steps) == 0 {
			t.Fatalf("finished = %+v, want 2 with the first being %s succeeded with its steps", fin, d.ID)
		}
		if got, want := h.obs.switches(), []controller.Kind{controller.KindDeploy, controller.KindDeploy}; !slices.Equal(got, want) {
			t.Errorf("switches = %v, want %v", got, want)
		}
		if got, want := h.obs.failures(svc), 4; got != want {
			t.Errorf("failed probes = %d, want %d", got, want)
		}
		got, ok := h.obs.lastState()
		want := observedState{Service: svc, Active: controller.Green, StandbyAvailable: true, Healthy: true}
		if !ok || got != want {
			t.Errorf("last state = %+v, want %+v", got, want)
		}
	})
}

func TestStart_PublishesEachServiceState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.store.set(func(s *memStore) {
			s.services[svc] = controller.ServiceState{Name: svc, ActiveColor: controller.Blue, ActiveImage: "demoapp:v1"}
		})
		h.rt.add(svc, controller.Blue, 1, "demoapp:v1", "d1", true)
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		want := []observedState{{Service: svc, Active: controller.Blue, StandbyAvailable: false, Healthy: true}}
		if got := h.obs.stateCalls(); !slices.Equal(got, want) {
			t.Errorf("state calls = %+v, want %+v", got, want)
		}
	})
}

func TestDeploy_HookPointsInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.deployOK("v1")
		old := addrsOf(h.colorContainers(controller.Blue))
		type seen struct {
			point    string
			upstream []string
			active   controller.Color
		}
		var at []seen
		h.hooks.at = func(point string) {
			at = append(at, seen{point, h.router.current(svc), h.store.service(svc).ActiveColor})
		}
		h.deployOK("v2")

		want := []string{controller.PointAfterStart, controller.PointDuringHealth, controller.PointBeforeSave}
		var points []string
		for _, s := range at {
			points = append(points, s.point)
		}
		if !slices.Equal(points, want) {
			t.Fatalf("points = %v, want %v", points, want)
		}
		if got := h.hooks.reached(); !slices.Equal(got, append(want[:len(want):len(want)], want...)) {
			t.Errorf("points over both deploys = %v, want %v twice", got, want)
		}
		// Before the switch traffic and state are the old color's; at
		// before-save nginx has moved but the store has not.
		for _, s := range at[:2] {
			if !slices.Equal(s.upstream, old) || s.active != controller.Blue {
				t.Errorf("at %s: upstream %v active %s, want blue %v", s.point, s.upstream, s.active, old)
			}
		}
		green := addrsOf(h.colorContainers(controller.Green))
		if s := at[2]; !slices.Equal(s.upstream, green) || s.active != controller.Blue {
			t.Errorf("at %s: upstream %v active %s, want green %v and stored active still blue", s.point, s.upstream, s.active, green)
		}
	})
}

func TestNew_NilNotifierObserverAndHookAreFine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newFakeRuntime("demoapp:v1")
		store := newMemStore()
		c := controller.New(controller.Options{
			Services: []controller.ServiceSpec{baseSpec()},
			Runtime:  rt, Router: newFakeRouter(), Prober: newFakeProber(rt), Store: store,
		})
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		d, err := c.Deploy(ctx, svc, controller.DeployRequest{Image: "v1"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		if d, err = c.Wait(ctx, d.ID); err != nil || d.Status != controller.StatusSucceeded {
			t.Fatalf("deploy = %s, %v, want succeeded", d.Status, err)
		}
		if err := c.Watch(ctx); err != nil {
			t.Fatalf("Watch: %v", err)
		}
	})
}

// lastDeployment returns the newest deployment of the service.
func (h *harness) lastDeployment() controller.Deployment {
	h.t.Helper()
	ds, err := h.store.ListDeployments(h.ctx(), svc, 1)
	if err != nil || len(ds) == 0 {
		h.t.Fatalf("last deployment: %v (%d found)", err, len(ds))
	}
	return ds[0]
}

// failColor makes every probe of color's containers fail.
func (h *harness) failColor(color controller.Color) {
	h.prober.failUntil(svc+"-"+string(color)+"-", errors.New("GET /health: 500"), nil)
}

func TestStart_ReportsInterruptedDeploymentsAsFinished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.seedDeployment(lostDeployID, controller.KindDeploy, controller.NoColor, controller.Blue, "demoapp:v1", "pull", "start")

		h.start()

		fin := h.obs.finishedDeployments()
		if len(fin) != 1 || fin[0].ID != lostDeployID || fin[0].Status != controller.StatusInterrupted {
			t.Fatalf("finished = %+v, want %s interrupted", fin, lostDeployID)
		}
		notes := h.notes.ofKind(controller.NotifyDeployInterrupted)
		if len(notes) != 1 || notes[0].Deployment != lostDeployID || !strings.Contains(notes[0].Message, "interrupted") {
			t.Errorf("deploy_interrupted notifications = %+v, want one saying %s was interrupted", notes, lostDeployID)
		}
		if failed := h.notes.ofKind(controller.NotifyDeployFailed); len(failed) != 0 {
			t.Errorf("deploy_failed notifications = %+v, want none for an interrupted deployment", failed)
		}
	})
}
