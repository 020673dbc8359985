package controller_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// wantRolledBack checks that the service serves blue demoapp:v1 again with
// green demoapp:v2 as the standby, i.e. that v1→v2 was rolled back.
func wantRolledBack(t *testing.T, h *harness) {
	t.Helper()
	st := h.store.service(svc)
	if st.ActiveColor != controller.Blue || st.ActiveImage != "demoapp:v1" || st.StandbyColor != controller.Green || st.StandbyImage != "demoapp:v2" {
		t.Errorf("state active/standby = %s %s / %s %s, want blue demoapp:v1 / green demoapp:v2",
			st.ActiveColor, st.ActiveImage, st.StandbyColor, st.StandbyImage)
	}
	blue := h.colorContainers(controller.Blue)
	if len(blue) != h.spec.Replicas {
		t.Fatalf("blue containers = %v, want %d", namesOf(blue), h.spec.Replicas)
	}
	if got, want := h.router.current(svc), addrsOf(blue); !slices.Equal(got, want) {
		t.Errorf("upstream = %v, want blue %v", got, want)
	}
}

func TestRollback_WarmStandbyNeedsOneProbeThenSwitches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Health.HealthyThreshold = 3 })
		h.deployOK("v1")
		h.deployOK("v2")
		blue := h.colorContainers(controller.Blue)
		h.prober.reset()
		startsBefore := h.rt.countCalls("Start")

		d := h.rollback()

		if d.Status != controller.StatusSucceeded {
			t.Fatalf("status = %s (%q), want succeeded", d.Status, d.Error)
		}
		if d.Kind != controller.KindRollback || d.Image != "demoapp:v1" || d.FromColor != controller.Green || d.ToColor != controller.Blue {
			t.Errorf("kind/image/from/to = %s/%s/%s/%s, want rollback/demoapp:v1/green/blue", d.Kind, d.Image, d.FromColor, d.ToColor)
		}
		wantSteps := []string{"start", "health", "switch", "drain", "standby"}
		if got := stepNames(d); !slices.Equal(got, wantSteps) {
			t.Errorf("steps = %v, want %v", got, wantSteps)
		}
		if s, _ := findStep(d, controller.StepStart); !strings.Contains(s.Message, "warm") {
			t.Errorf("start step message = %q, want it to say the standby was warm", s.Message)
		}
		for _, c := range blue {
			if got := h.prober.count(c.Name); got != 1 {
				t.Errorf("%s probed %d time(s), want 1 for a warm standby", c.Name, got)
			}
		}
		if got := h.rt.countCalls("Start") - startsBefore; got != 0 {
			t.Errorf("containers started by a warm rollback = %d, want 0", got)
		}
		if s := diff(h.colorContainers(controller.Blue), blue); s != "" {
			t.Errorf("blue containers changed:%s", s)
		}
		wantRolledBack(t, h)
		for _, c := range h.colorContainers(controller.Green) {
			if !c.Running() {
				t.Errorf("green container %s state = %s, want running as the new warm standby", c.Name, c.State)
			}
		}
	})
}

func TestRollback_TwiceRollsForwardAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.deployOK("v1")
		h.deployOK("v2")
		if d := h.rollback(); d.Status != controller.StatusSucceeded {
			t.Fatalf("first rollback status = %s (%q), want succeeded", d.Status, d.Error)
		}

		d := h.rollback()

		if d.Status != controller.StatusSucceeded || d.ToColor != controller.Green || d.Image != "demoapp:v2" {
			t.Fatalf("second rollback status/to/image = %s/%s/%s (%q), want succeeded/green/demoapp:v2", d.Status, d.ToColor, d.Image, d.Error)
		}
		st := h.store.service(svc)
		if st.ActiveColor != controller.Green || st.ActiveImage != "demoapp:v2" || st.StandbyColor != controller.Blue || st.StandbyImage != "demoapp:v1" {
			t.Errorf("state active/standby = %s %s / %s %s, want green demoapp:v2 / blue demoapp:v1",
				st.ActiveColor, st.ActiveImage, st.StandbyColor, st.StandbyImage)
		}
		if got, want := h.router.current(svc), addrsOf(h.colorContainers(controller.Green)); !slices.Equal(got, want) {
			t.Errorf("upstream = %v, want green %v", got, want)
		}
	})
}

func TestRollback_ColdStandbyIsStartedAndFullyChecked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) {
			s.Standby = controller.StandbyStopped
			s.Health.HealthyThreshold = 3
		})
		h.deployOK("v1")
		h.deployOK("v2")
		stopped := h.colorContainers(controller.Blue)
		for _, c := range stopped {
			if c.Running() {
				t.Fatalf("blue container %s is %s before the rollback, want stopped", c.Name, c.State)
			}
		}
		h.prober.reset()

		d := h.rollback()

		if d.Status != controller.StatusSucceeded {
			t.Fatalf("status = %s (%q), want succeeded", d.Status, d.Error)
		}
		for _, c := range stopped {
			if !slices.Contains(h.rt.callLog(), "StartExisting "+c.ID) {
				t.Errorf("StartExisting not called for stopped %s", c.Name)
			}
			if got := h.prober.count(c.Name); got < 3 {
				t.Errorf("%s probed %d time(s), want the full healthy threshold 3", c.Name, got)
			}
		}
		if n := h.rt.countCalls("StartContainer"); n != 4 {
			t.Errorf("StartContainer calls = %d, want only the 4 of the two deploys (existing containers are reused)", n)
		}
		// wantRolledBack compares the upstream with the addresses the restarted
		// containers got, which differ from the ones they had before.
		wantRolledBack(t, h)
		for _, c := range h.colorContainers(controller.Green) {
			if c.Running() {
				t.Errorf("green container %s state = %s, want stopped as the new cold standby", c.Name, c.State)
			}
		}
	})
}

func TestRollback_MissingStandbyContainersAreRecreatedFromStandbyImage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		v1 := h.deployOK("v1")
		h.deployOK("v2")
		for _, c := range h.colorContainers(controller.Blue) {
			if err := h.rt.RemoveContainer(h.ctx(), c.ID); err != nil {
				t.Fatal(err)
			}
		}

		d := h.rollback()

		if d.Status != controller.StatusSucceeded {
			t.Fatalf("status = %s (%q), want succeeded", d.Status, d.Error)
		}
		if !slices.Contains(h.rt.callLog(), "EnsureImage demoapp:v1 missing") {
			t.Errorf("call log = %v, want EnsureImage of the standby image demoapp:v1", h.rt.callLog())
		}
		// Created in the name of the deployment the standby records, so
		// that they are its set as if they had never gone.
		blue := h.colorContainers(controller.Blue)
		if got, want := namesOf(blue), replicaNames(controller.Blue, v1.ID, h.spec.Replicas); !slices.Equal(got, want) {
			t.Errorf("blue containers = %v, want %v", got, want)
		}
		for _, c := range blue {
			if c.Image != "demoapp:v1" || c.Deployment != v1.ID || !c.Running() {
				t.Errorf("blue container %s image/deployment/state = %s/%s/%s, want demoapp:v1/%s/running", c.Name, c.Image, c.Deployment, c.State, v1.ID)
			}
		}
		wantRolledBack(t, h)
	})
}

func TestRollback_WithoutStandbyConflicts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		for _, stage := range []string{"before any deploy", "after the first deploy"} {
			_, err := h.c.Rollback(h.ctx(), svc, controller.RollbackRequest{Trigger: controller.Trigger{}})
			if got := controller.ErrorCode(err); got != controller.ECONFLICT {
				t.Errorf("Rollback %s: code = %q (err %v), want %q", stage, got, err, controller.ECONFLICT)
			}
			h.deployOK("v1")
		}
	})
}

func TestRollback_HealthFailureLeavesTrafficUntouched(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Health.StartTimeout = 100 * time.Millisecond })
		h.deployOK("v1")
		h.deployOK("v2")
		before := h.snapshot()
		blue := h.colorContainers(controller.Blue)
		h.prober.setVerdict(func(name string, _ int) error {
			if strings.HasPrefix(name, "web-blue-") {
				return errors.New("GET /health: status 500, want 2xx")
			}
			return nil
		})

		d := h.rollback()

		if d.Status != controller.StatusFailed {
			t.Fatalf("status = %s, want failed", d.Status)
		}
		if missing := containsAll(d.Error, "health", "not healthy within 100ms", "status 500"); len(missing) > 0 {
			t.Errorf("error = %q, want it to contain %q", d.Error, missing)
		}
		if s := diff(h.snapshot(), before); s != "" {
			t.Errorf("active color, its containers or the upstream changed:%s", s)
		}
		// The standby is not the rollback's to remove: it stays for a later try.
		if s := diff(h.colorContainers(controller.Blue), blue); s != "" {
			t.Errorf("standby containers changed:%s", s)
		}
	})
}

func TestRollback_ActiveDeploymentNamesTheDeployThatBuiltTheImage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		v1 := h.deployOK("v1")
		v2 := h.deployOK("v2")
		if st := h.store.service(svc); st.ActiveDeployment != v2.ID || st.StandbyDeployment != v1.ID {
			t.Fatalf("after v2: active/standby deployment = %s/%s, want %s/%s", st.ActiveDeployment, st.StandbyDeployment, v2.ID, v1.ID)
		}

		h.rollback()

		// The rollback moved traffic, but v1 is still the image deploy v1
		// built, with its commit and actor: that is what the status page shows.
		st := h.store.service(svc)
		if st.ActiveDeployment != v1.ID || st.StandbyDeployment != v2.ID {
			t.Errorf("after rollback: active/standby deployment = %s/%s, want %s/%s", st.ActiveDeployment, st.StandbyDeployment, v1.ID, v2.ID)
		}
	})
}
