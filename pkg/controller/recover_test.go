package controller_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// IDs as a previous process made them: they sort by creation time.
const (
	oldDeployID  = "20250101T100000.000000Z-aaaaaa"
	lostDeployID = "20250101T110000.000000Z-bbbbbb"
)

// seedService records a service state as a previous process left it.
func (h *harness) seedService(st controller.ServiceState) {
	h.t.Helper()
	st.Name = svc
	if err := h.store.PutService(context.Background(), st); err != nil {
		h.t.Fatal(err)
	}
}

// seedDeployment records a deployment that a previous process left running
// in the last of steps, after the ones before it succeeded; with no steps it
// is still queued.
func (h *harness) seedDeployment(id string, kind controller.Kind, from, to controller.Color, image string, steps ...string) controller.Deployment {
	h.t.Helper()
	created := time.Date(2025, 1, 1, 11, 0, 0, 0, time.UTC)
	d := controller.Deployment{
		ID: id, Service: svc, Kind: kind, Image: image, FromColor: from, ToColor: to,
		Status: controller.StatusRunning, CreatedAt: created, Steps: []controller.Step{},
	}
	if len(steps) == 0 {
		d.Status = controller.StatusQueued
	}
	for i, name := range steps {
		s := controller.Step{Name: name, Status: controller.StepSucceeded, StartedAt: created, FinishedAt: &created, Message: "done"}
		if i == len(steps)-1 {
			s.Status, s.FinishedAt, s.Message = controller.StepRunning, nil, ""
		}
		d.Steps = append(d.Steps, s)
	}
	if err := h.store.PutDeployment(context.Background(), d); err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) start() {
	h.t.Helper()
	if err := h.c.Start(h.ctx()); err != nil {
		h.t.Fatalf("Start: %v", err)
	}
}

func (h *harness) stored(id string) controller.Deployment {
	h.t.Helper()
	d, err := h.store.GetDeployment(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func TestStart_InterruptedDeployOfOtherColorIsRemovedAndTrafficRestored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.seedService(controller.ServiceState{ActiveColor: controller.Blue, ActiveImage: "demoapp:v1"})
		h.rt.add(svc, controller.Blue, 1, "demoapp:v1", oldDeployID, true)
		h.rt.add(svc, controller.Blue, 2, "demoapp:v1", oldDeployID, true)
		g1 := h.rt.add(svc, controller.Green, 1, "demoapp:v2", lostDeployID, true)
		h.rt.add(svc, controller.Green, 2, "demoapp:v2", lostDeployID, false)
		h.seedDeployment(lostDeployID, controller.KindDeploy, controller.Blue, controller.Green, "demoapp:v2",
			"pull", "cleanup", "backup", "pre_deploy", "start", "health")
		// The crash came after nginx had been rewritten but before the record.
		if err := h.router.Switch(h.ctx(), svc, controller.NoColor, []string{g1.Address}); err != nil {
			t.Fatal(err)
		}

		h.start()

		if got := namesOf(h.colorContainers(controller.Green)); len(got) != 0 {
			t.Errorf("green containers = %v, want the interrupted deployment's removed", got)
		}
		blue := h.colorContainers(controller.Blue)
		if got, want := namesOf(blue), []string{"web-blue-1", "web-blue-2"}; !slices.Equal(got, want) {
			t.Errorf("blue containers = %v, want %v kept", got, want)
		}
		if got, want := h.router.current(svc), addrsOf(blue); !slices.Equal(got, want) {
			t.Errorf("upstream = %v, want the active blue %v", got, want)
		}
		d := h.stored(lostDeployID)
		if d.Status != controller.StatusInterrupted || d.FinishedAt == nil {
			t.Errorf("status = %s, finished_at = %v; want interrupted with a finish time", d.Status, d.FinishedAt)
		}
		if want := "deployd stopped during step health"; d.Error != want {
			t.Errorf("error = %q, want %q", d.Error, want)
		}
		last := d.Steps[len(d.Steps)-1]
		if last.Status != controller.StepFailed || last.FinishedAt == nil || !strings.Contains(last.Message, "interrupted") {
			t.Errorf("last step = %+v, want health failed as interrupted with a finish time", last)
		}
		if got := h.stored(lostDeployID).Steps[0].Status; got != controller.StepSucceeded {
			t.Errorf("first step status = %s, want the finished steps left succeeded", got)
		}
		if ds, _ := h.store.UnfinishedDeployments(h.ctx()); len(ds) != 0 {
			t.Errorf("unfinished deployments after Start = %d, want 0", len(ds))
		}
	})
}

func TestStart_UnfinishedFirstDeployResetsToPlaceholder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b1 := h.rt.add(svc, controller.Blue, 1, "demoapp:v1", lostDeployID, true)
		h.seedDeployment(lostDeployID, controller.KindDeploy, controller.NoColor, controller.Blue, "demoapp:v1",
			"pull", "cleanup", "backup", "pre_deploy", "start", "health", "switch")
		if err := h.router.Switch(h.ctx(), svc, controller.NoColor, []string{b1.Address}); err != nil {
			t.Fatal(err)
		}

		h.start()

		if got := h.router.current(svc); got != nil {
			t.Errorf("upstream = %v, want the placeholder", got)
		}
		sw := h.router.switches()
		if last := sw[len(sw)-1]; last.Addrs != nil || last.Err != nil {
			t.Errorf("last switch = %+v, want a successful Switch with no addresses", last)
		}
		if got := h.rt.list(svc); len(got) != 0 {
			t.Errorf("containers = %v, want the interrupted first deploy's removed", namesOf(got))
		}
		if d := h.stored(lostDeployID); d.Status != controller.StatusInterrupted || d.Error != "deployd stopped during step switch" {
			t.Errorf("status/error = %s/%q, want interrupted/%q", d.Status, d.Error, "deployd stopped during step switch")
		}
	})
}

func TestStart_FreshServiceGetsPlaceholder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)

		h.start()

		h.router.mu.Lock()
		placeholder := h.router.placeholders[svc]
		h.router.mu.Unlock()
		if !placeholder {
			t.Errorf("EnsurePlaceholder not called for %s", svc)
		}
		if got := h.router.current(svc); got != nil {
			t.Errorf("upstream = %v, want the placeholder", got)
		}
	})
}

func TestStart_QueuedDeployIsInterruptedBeforeItsFirstStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.seedDeployment(lostDeployID, controller.KindDeploy, controller.NoColor, controller.Blue, "demoapp:v1")

		h.start()

		if d := h.stored(lostDeployID); d.Status != controller.StatusInterrupted || d.Error != "deployd stopped before its first step" {
			t.Errorf("status/error = %s/%q, want interrupted/%q", d.Status, d.Error, "deployd stopped before its first step")
		}
	})
}

func TestStart_StartsStoppedContainersOfActiveColor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.seedService(controller.ServiceState{ActiveColor: controller.Blue, ActiveImage: "demoapp:v1"})
		b1 := h.rt.add(svc, controller.Blue, 1, "demoapp:v1", oldDeployID, false)
		b2 := h.rt.add(svc, controller.Blue, 2, "demoapp:v1", oldDeployID, true)

		h.start()

		calls := h.rt.callLog()
		if !slices.Contains(calls, "StartExisting "+b1.ID) || slices.Contains(calls, "StartExisting "+b2.ID) {
			t.Errorf("call log = %v, want StartExisting for the stopped %s only", calls, b1.Name)
		}
		blue := h.colorContainers(controller.Blue)
		for _, c := range blue {
			if !c.Running() {
				t.Errorf("%s state = %s, want running", c.Name, c.State)
			}
		}
		if got, want := h.router.current(svc), addrsOf(blue); !slices.Equal(got, want) {
			t.Errorf("upstream = %v, want both blue containers %v", got, want)
		}
	})
}

func TestStart_DeployWithRecordedSwitchKeepsItsContainers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.seedService(controller.ServiceState{
			ActiveColor: controller.Green, ActiveImage: "demoapp:v2",
			StandbyColor: controller.Blue, StandbyImage: "demoapp:v1",
		})
		h.rt.add(svc, controller.Blue, 1, "demoapp:v1", oldDeployID, true)
		h.rt.add(svc, controller.Green, 1, "demoapp:v2", lostDeployID, true)
		h.rt.add(svc, controller.Green, 2, "demoapp:v2", lostDeployID, true)
		h.seedDeployment(lostDeployID, controller.KindDeploy, controller.Blue, controller.Green, "demoapp:v2",
			"pull", "cleanup", "backup", "pre_deploy", "start", "health", "switch", "drain")

		h.start()

		green := h.colorContainers(controller.Green)
		if got, want := namesOf(green), []string{"web-green-1", "web-green-2"}; !slices.Equal(got, want) {
			t.Fatalf("green containers = %v, want %v kept: they serve traffic", got, want)
		}
		if got, want := h.router.current(svc), addrsOf(green); !slices.Equal(got, want) {
			t.Errorf("upstream = %v, want green %v", got, want)
		}
		d := h.stored(lostDeployID)
		want := "deployd stopped during step drain after traffic had moved to green"
		if d.Status != controller.StatusInterrupted || d.Error != want {
			t.Errorf("status/error = %s/%q, want interrupted/%q", d.Status, d.Error, want)
		}
		if n := len(h.colorContainers(controller.Blue)); n != 1 {
			t.Errorf("blue containers = %d, want the standby's 1 kept", n)
		}
	})
}

func TestStart_InterruptedRollbackKeepsStandbyContainers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.seedService(controller.ServiceState{
			ActiveColor: controller.Green, ActiveImage: "demoapp:v2",
			StandbyColor: controller.Blue, StandbyImage: "demoapp:v1",
		})
		h.rt.add(svc, controller.Blue, 1, "demoapp:v1", lostDeployID, true)
		g := h.rt.add(svc, controller.Green, 1, "demoapp:v2", oldDeployID, true)
		h.seedDeployment(lostDeployID, controller.KindRollback, controller.Green, controller.Blue, "demoapp:v1", "start", "health")

		h.start()

		if n := len(h.colorContainers(controller.Blue)); n != 1 {
			t.Errorf("blue containers = %d, want the standby's 1 kept", n)
		}
		if got, want := h.router.current(svc), []string{g.Address}; !slices.Equal(got, want) {
			t.Errorf("upstream = %v, want active green %v", got, want)
		}
		if d := h.stored(lostDeployID); d.Status != controller.StatusInterrupted {
			t.Errorf("status = %s, want interrupted", d.Status)
		}
	})
}

// With the active color's containers gone there is no right place to send
// traffic; Start must leave nginx alone and say so rather than route to
// the standby, a version nobody chose.
func TestStart_ActiveColorWithoutContainersLeavesUpstreamAndLogs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.seedService(controller.ServiceState{
			ActiveColor: controller.Green, ActiveImage: "demoapp:v2",
			StandbyColor: controller.Blue, StandbyImage: "demoapp:v1",
		})
		h.rt.add(svc, controller.Blue, 1, "demoapp:v1", oldDeployID, true)
		if err := h.router.Switch(h.ctx(), svc, controller.NoColor, []string{"10.0.0.99:8000"}); err != nil {
			t.Fatal(err)
		}

		h.start()

		if got, want := h.router.current(svc), []string{"10.0.0.99:8000"}; !slices.Equal(got, want) {
			t.Errorf("upstream = %v, want it left at %v", got, want)
		}
		found := false
		for _, e := range h.logs.AllEntries() {
			if e.Level == logrus.ErrorLevel && strings.Contains(e.Message, "no running containers") && e.Data["service"] == svc {
				found = true
			}
		}
		if !found {
			t.Errorf("no error logged for the active color without running containers")
		}
	})
}
