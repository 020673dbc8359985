package controller_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func TestService_ShowsRunningDeploymentThenTheLastOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.deployOK("v1")
		release := make(chan struct{})
		h.prober.failUntil("web-green-", errors.New("still booting"), release)
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		eventually(t, "deploy in its health step", h.runningStep(d.ID, controller.StepHealth))

		v, err := h.c.Service(h.ctx(), svc)
		if err != nil {
			t.Fatalf("Service: %v", err)
		}
		if v.Deployment == nil || v.Deployment.ID != d.ID || v.Deployment.Status != controller.StatusRunning {
			t.Errorf("service deployment = %+v, want the running %s", v.Deployment, d.ID)
		}
		if v.ActiveColor != controller.Blue {
			t.Errorf("active color during the deploy = %s, want blue", v.ActiveColor)
		}
		// Without a Docker healthcheck the view shows deployd's own last probe.
		for _, ct := range v.Colors[controller.Green].Containers {
			if ct.Health != controller.HealthUnhealthy {
				t.Errorf("%s health while booting = %q, want %q", ct.Name, ct.Health, controller.HealthUnhealthy)
			}
		}

		close(release)
		h.wait(d.ID)
		v, err = h.c.Service(h.ctx(), svc)
		if err != nil {
			t.Fatalf("Service: %v", err)
		}
		if v.Deployment == nil || v.Deployment.ID != d.ID || v.Deployment.Status != controller.StatusSucceeded {
			t.Errorf("service deployment = %+v, want the finished %s", v.Deployment, d.ID)
		}
		for _, ct := range v.Colors[controller.Green].Containers {
			if ct.Health != controller.HealthHealthy {
				t.Errorf("%s health after the deploy = %q, want %q", ct.Name, ct.Health, controller.HealthHealthy)
			}
		}
	})
}

func TestService_ViewJoinsStateAndContainers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Standby = controller.StandbyStopped })
		h.deployOK("v1")
		h.deployOK("v2")

		v, err := h.c.Service(h.ctx(), svc)
		if err != nil {
			t.Fatalf("Service: %v", err)
		}
		if v.Name != svc || v.ActiveColor != controller.Green || v.ActiveImage != "demoapp:v2" || v.StandbyColor != controller.Blue || v.StandbyImage != "demoapp:v1" {
			t.Errorf("view = %s active %s %s standby %s %s, want web active green demoapp:v2 standby blue demoapp:v1",
				v.Name, v.ActiveColor, v.ActiveImage, v.StandbyColor, v.StandbyImage)
		}
		for color, want := range map[controller.Color]struct {
			image   string
			state   string
			running bool
		}{
			controller.Green: {"demoapp:v2", "running", true},
			controller.Blue:  {"demoapp:v1", "exited", false},
		} {
			cv := v.Colors[color]
			if cv.Image != want.image || len(cv.Containers) != 2 {
				t.Errorf("%s: image %q with %d container(s), want %q with 2", color, cv.Image, len(cv.Containers), want.image)
			}
			for _, c := range cv.Containers {
				if c.State != want.state {
					t.Errorf("%s container %s state = %s, want %s", color, c.Name, c.State, want.state)
				}
			}
		}

		views, err := h.c.Services(h.ctx())
		if err != nil || len(views) != 1 || views[0].Name != svc {
			t.Errorf("Services = %d view(s), err %v; want the one service", len(views), err)
		}
	})
}

func TestService_BeforeFirstDeployHasEmptyColors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)

		v, err := h.c.Service(h.ctx(), svc)

		if err != nil {
			t.Fatalf("Service: %v", err)
		}
		if v.ActiveColor != controller.NoColor || v.Deployment != nil {
			t.Errorf("active color/deployment = %q/%v, want none", v.ActiveColor, v.Deployment)
		}
		for _, color := range []controller.Color{controller.Blue, controller.Green} {
			if cv, ok := v.Colors[color]; !ok || cv.Containers == nil || len(cv.Containers) != 0 {
				t.Errorf("color %s = %+v (present %v), want present with an empty, non-nil container list", color, cv, ok)
			}
		}
	})
}

func TestService_ErrorCodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		if _, err := h.c.Service(h.ctx(), "nope"); controller.ErrorCode(err) != controller.ENOTFOUND {
			t.Errorf("Service(nope): code = %q (err %v), want %q", controller.ErrorCode(err), err, controller.ENOTFOUND)
		}
		h.rt.set(func(rt *fakeRuntime) { rt.containersErr = controller.ErrUnavailable })
		_, err := h.c.Service(h.ctx(), svc)
		if got := controller.ErrorCode(err); got != controller.EUNAVAILABLE {
			t.Errorf("Service with the engine down: code = %q (err %v), want %q", got, err, controller.EUNAVAILABLE)
		}
		if !errors.Is(err, controller.ErrUnavailable) {
			t.Errorf("Service with the engine down: err = %v, want it to wrap ErrUnavailable for the logs", err)
		}
		h.rt.set(func(rt *fakeRuntime) { rt.containersErr = errors.New("boom") })
		_, err = h.c.Service(h.ctx(), svc)
		if got := controller.ErrorCode(err); got != controller.EINTERNAL {
			t.Errorf("Service with an unclassified runtime error: code = %q (err %v), want %q", got, err, controller.EINTERNAL)
		}
		if got := controller.ErrorMessage(err); got != "internal error" {
			t.Errorf("message of an internal error = %q, want %q", got, "internal error")
		}
	})
}

func TestDeployments_NewestFirstAndLookup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		var ids []string
		for _, im := range []string{"v1", "v2", "v3"} {
			ids = append(ids, h.deployOK(im).ID)
		}

		ds, err := h.c.Deployments(h.ctx(), svc, 2)
		if err != nil {
			t.Fatalf("Deployments: %v", err)
		}
		if got, want := fmt.Sprint(idsOf(ds)), fmt.Sprint([]string{ids[2], ids[1]}); got != want {
			t.Errorf("Deployments(limit 2) = %s, want %s", got, want)
		}
		if ids[0] >= ids[1] || ids[1] >= ids[2] {
			t.Errorf("ids %v do not sort by creation", ids)
		}

		d, err := h.c.Deployment(h.ctx(), ids[1])
		if err != nil || d.Image != "demoapp:v2" {
			t.Errorf("Deployment(%s) = %s, err %v; want demoapp:v2", ids[1], d.Image, err)
		}
		if _, err := h.c.Deployment(h.ctx(), "nope"); controller.ErrorCode(err) != controller.ENOTFOUND {
			t.Errorf("Deployment(nope): code = %q, want %q", controller.ErrorCode(err), controller.ENOTFOUND)
		}
		if _, err := h.c.Deployments(h.ctx(), "nope", 0); controller.ErrorCode(err) != controller.ENOTFOUND {
			t.Errorf("Deployments(nope): code = %q, want %q", controller.ErrorCode(err), controller.ENOTFOUND)
		}
		empty := newHarness(t)
		if ds, err := empty.c.Deployments(empty.ctx(), "", 10); err != nil || ds == nil || len(ds) != 0 {
			t.Errorf("Deployments of a fresh controller = %v, err %v; want an empty, non-nil list", ds, err)
		}
	})
}

func idsOf(ds []controller.Deployment) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// Once traffic has moved, shutdown must not undo the deploy: the drain is
// cut short and the old color still becomes the standby.
func TestClose_DuringDrainCompletesTheDeploy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) {
			s.Drain = time.Minute
			s.Standby = controller.StandbyStopped
		})
		h.deployOK("v1")
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		eventually(t, "deploy in its drain step", h.runningStep(d.ID, controller.StepDrain))

		if err := h.c.Close(h.ctx()); err != nil {
			t.Fatalf("Close: %v", err)
		}

		got := h.wait(d.ID)
		if got.Status != controller.StatusSucceeded {
			t.Fatalf("status = %s (%q), want succeeded", got.Status, got.Error)
		}
		if s, _ := findStep(got, controller.StepDrain); !strings.Contains(s.Message, "cut short") {
			t.Errorf("drain message = %q, want it to say the drain was cut short", s.Message)
		}
		if s, _ := findStep(got, controller.StepStandby); s.Status != controller.StepSucceeded {
			t.Errorf("standby step status = %s, want succeeded", s.Status)
		}
		for _, c := range h.colorContainers(controller.Blue) {
			if c.Running() {
				t.Errorf("blue container %s state = %s, want stopped as the cold standby", c.Name, c.State)
			}
		}
		if st := h.store.service(svc); st.ActiveColor != controller.Green {
			t.Errorf("active color = %s, want green", st.ActiveColor)
		}
	})
}

// A Deploy accepted just before Close must be waited for: once Close has
// returned, main closes the store and the Docker client, so no deployment
// goroutine may still be using them.
func TestClose_WaitsForDeployBeingRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		entered := make(chan struct{})
		release := make(chan struct{})
		var writesMu sync.Mutex
		writes := 0
		h.store.set(func(s *memStore) {
			s.onPut = func(d controller.Deployment) {
				if d.Status == controller.StatusQueued {
					close(entered)
					<-release
				}
				writesMu.Lock()
				writes++
				writesMu.Unlock()
			}
		})
		deployed := make(chan controller.Deployment, 1)
		go func() {
			d, _ := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v1"})
			deployed <- d
		}()
		<-entered

		closed := make(chan error, 1)
		go func() { closed <- h.c.Close(h.ctx()) }()
		// Give a Close that does not wait the chance to return before the
		// record is released; a correct Close blocks here until then.
		select {
		case <-closed:
			closed <- nil
		case <-time.After(100 * time.Millisecond):
		}
		close(release)
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		writesMu.Lock()
		atClose := writes
		writesMu.Unlock()

		d := <-deployed
		if d.ID != "" {
			h.wait(d.ID)
		}
		writesMu.Lock()
		after := writes
		writesMu.Unlock()
		if after != atClose {
			t.Errorf("store writes after Close returned = %d, want 0 (deployment %s kept running after Close)", after-atClose, d.ID)
		}
	})
}

func TestService_LastFailureStaysUntilADeploySucceedsAndLastSwitchNamesTheRollback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.deployOK("v1")
		h.deployOK("v2")
		if v := h.view(); v.LastFailure != nil {
			t.Fatalf("last failure after good deploys = %+v, want none", v.LastFailure)
		}

		release := make(chan struct{})
		h.prober.failUntil(svc+"-blue-", errors.New("GET /health: 500"), release)
		failed := h.deploy("v3")
		if failed.Status != controller.StatusFailed {
			t.Fatalf("deploy of v3: %s, want failed", failed.Status)
		}
		if v := h.view(); v.LastFailure == nil || v.LastFailure.ID != failed.ID || v.LastFailure.Error == "" {
			t.Fatalf("last failure = %+v, want %s with its error", v.LastFailure, failed.ID)
		}
		close(release)
		// A rollback is not a deploy: it does not clear the failure.
		if rb := h.rollback(); rb.Status != controller.StatusSucceeded {
			t.Fatalf("rollback: %s (%s), want succeeded", rb.Status, rb.Error)
		}
		v := h.view()
		if v.LastFailure == nil || v.LastFailure.ID != failed.ID {
			t.Fatalf("last failure after a rollback = %+v, want %s", v.LastFailure, failed.ID)
		}
		if v.LastSwitch == nil || v.LastSwitch.Kind != controller.KindRollback {
			t.Errorf("last switch after a rollback = %+v, want the rollback", v.LastSwitch)
		}

		ok := h.deployOK("v2")
		v = h.view()
		if v.LastFailure != nil {
			t.Errorf("last failure after a successful deploy = %+v, want none", v.LastFailure)
		}
		if v.LastSwitch == nil || v.LastSwitch.ID != ok.ID {
			t.Errorf("last switch = %+v, want the deploy %s", v.LastSwitch, ok.ID)
		}
	})
}

func (h *harness) view() controller.ServiceView {
	h.t.Helper()
	v, err := h.c.Service(h.ctx(), svc)
	if err != nil {
		h.t.Fatalf("Service: %v", err)
	}
	return v
}
