package controller_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

func TestCancel_BeforeSwitchRemovesContainersAndKeepsTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Health.StartTimeout = time.Minute })
		h.deployOK("v1")
		before := h.snapshot()
		switchesBefore := len(h.router.switches())
		h.prober.failUntil("web-green-", errors.New("still booting"), nil)
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		eventually(t, "deploy in its health step", h.runningStep(d.ID, controller.StepHealth))
		if own := h.ownContainers(d.ID); len(own) != 2 {
			t.Fatalf("deploy in health has %d container(s), want 2 to be removed by the cancel", len(own))
		}

		start := time.Now()
		got, err := h.c.Cancel(h.ctx(), d.ID)
		if err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		if got.ID != d.ID {
			t.Errorf("Cancel returned deployment %s, want %s", got.ID, d.ID)
		}

		end := h.wait(d.ID)
		if took := time.Since(start); took > time.Second {
			t.Errorf("cancelled deploy took %s to end, want it to cut the health wait short", took)
		}
		if end.Status != controller.StatusCancelled {
			t.Errorf("status = %s (%q), want cancelled", end.Status, end.Error)
		}
		if want := "cancelled by request during step health"; end.Error != want {
			t.Errorf("error = %q, want %q", end.Error, want)
		}
		if own := h.ownContainers(d.ID); len(own) > 0 {
			t.Errorf("containers of the cancelled deployment left behind: %v", namesOf(own))
		}
		if s := diff(h.snapshot(), before); s != "" {
			t.Errorf("active color, its containers or the upstream changed:%s", s)
		}
		if n := len(h.router.switches()); n != switchesBefore {
			t.Errorf("router saw %d Switch call(s) during the cancelled deploy, want none", n-switchesBefore)
		}
		evs := collectEvents(t, h.c, d.ID, 0)
		if last := evs[len(evs)-1]; last.Status != "cancelled" || last.Message != end.Error {
			t.Errorf("last event = %+v, want status cancelled with the record's error", last)
		}

		// The service is free again.
		h.prober.setVerdict(nil)
		h.deployOK("v3")
	})
}

func TestCancel_RefusesWhatItCannotStop(t *testing.T) {
	h := newHarness(t)
	finished := h.deployOK("v1")

	tests := []struct {
		name     string
		id       string
		wantCode string
	}{
		{"finished deployment", finished.ID, controller.ECONFLICT},
		{"unknown deployment", "nope", controller.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.c.Cancel(h.ctx(), tt.id)
			if got := controller.ErrorCode(err); got != tt.wantCode {
				t.Fatalf("error code = %q (err %v), want %q", got, err, tt.wantCode)
			}
		})
	}
	if d := h.stored(finished.ID); d.Status != controller.StatusSucceeded {
		t.Errorf("finished deployment's status after a refused cancel = %s, want succeeded", d.Status)
	}
}

func TestCancel_AfterSwitchBeganConflictsAndDeployCompletes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.deployOK("v1")
		entered := make(chan struct{})
		release := make(chan struct{})
		var once sync.Once
		h.router.setBeforeSwitch(func(string) {
			once.Do(func() {
				close(entered)
				<-release
			})
		})
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		select {
		case <-entered:
		case <-time.After(testDeadline):
			t.Fatal("deploy never reached the router's Switch")
		}

		_, err = h.c.Cancel(h.ctx(), d.ID)
		close(release)
		if got := controller.ErrorCode(err); got != controller.ECONFLICT {
			t.Fatalf("Cancel during the switch: code = %q (err %v), want %q", got, err, controller.ECONFLICT)
		}
		if !strings.Contains(controller.ErrorMessage(err), "roll back") {
			t.Errorf("message = %q, want it to point to a rollback", controller.ErrorMessage(err))
		}

		end := h.wait(d.ID)
		if end.Status != controller.StatusSucceeded {
			t.Fatalf("status = %s (%q), want succeeded: a refused cancel must not stop the switch", end.Status, end.Error)
		}
		if st := h.store.service(svc); st.ActiveColor != controller.Green || st.ActiveImage != "demoapp:v2" {
			t.Errorf("active = %s %s, want green demoapp:v2", st.ActiveColor, st.ActiveImage)
		}
		if got, want := h.router.current(svc), addrsOf(h.colorContainers(controller.Green)); !slices.Equal(got, want) {
			t.Errorf("upstream = %v, want the green containers %v", got, want)
		}
	})
}

// blockOnLog holds the goroutine that logs msg until release is closed;
// entered is closed when it first does.
type blockOnLog struct {
	msg     string
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (b *blockOnLog) Levels() []logrus.Level { return logrus.AllLevels }

func (b *blockOnLog) Fire(e *logrus.Entry) error {
	if e.Message == b.msg {
		b.once.Do(func() {
			close(b.entered)
			<-b.release
		})
	}
	return nil
}

// A deployment whose final record is written but whose goroutine has not
// yet let go of the service has ended all the same.
func TestCancel_DeploymentThatJustEndedConflicts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Health.StartTimeout = 20 * time.Millisecond })
		h.prober.setVerdict(func(string, int) error { return errors.New("502 Bad Gateway") })
		hold := &blockOnLog{msg: "deployment ended", entered: make(chan struct{}), release: make(chan struct{})}
		h.logger.AddHook(hold)
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v1"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		select {
		case <-hold.entered:
		case <-time.After(testDeadline):
			t.Fatal("deployment never logged its end")
		}

		_, err = h.c.Cancel(h.ctx(), d.ID)
		close(hold.release)
		if got := controller.ErrorCode(err); got != controller.ECONFLICT {
			t.Fatalf("Cancel of a deployment that just failed: code = %q (err %v), want %q", got, err, controller.ECONFLICT)
		}
		if end := h.wait(d.ID); end.Status != controller.StatusFailed {
			t.Errorf("status = %s, want failed, untouched by the refused cancel", end.Status)
		}
	})
}

// A rollback's target is the standby: cancelling it must leave the standby
// containers in place for the next attempt.
func TestCancel_RollbackBeforeSwitchKeepsStandbyAndTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Health.StartTimeout = time.Minute })
		h.deployOK("v1")
		h.deployOK("v2")
		before := h.snapshot()
		standby := namesOf(h.colorContainers(controller.Blue))
		h.prober.failUntil("web-blue-", errors.New("connection refused"), nil)
		d, err := h.c.Rollback(h.ctx(), svc, controller.RollbackRequest{Trigger: controller.Trigger{Source: "test"}})
		if err != nil {
			t.Fatalf("Rollback: %v", err)
		}
		eventually(t, "rollback in its health step", h.runningStep(d.ID, controller.StepHealth))

		if _, err := h.c.Cancel(h.ctx(), d.ID); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		end := h.wait(d.ID)
		if end.Status != controller.StatusCancelled || end.Error != "cancelled by request during step health" {
			t.Errorf("status = %s (%q), want cancelled during step health", end.Status, end.Error)
		}
		if got := namesOf(h.colorContainers(controller.Blue)); !slices.Equal(got, standby) {
			t.Errorf("standby containers after the cancelled rollback = %v, want %v", got, standby)
		}
		if s := diff(h.snapshot(), before); s != "" {
			t.Errorf("active color, its containers or the upstream changed:%s", s)
		}
	})
}
