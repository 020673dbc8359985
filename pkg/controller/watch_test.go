package controller_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// watchRounds runs n watchdog rounds.
func (h *harness) watchRounds(n int) {
	h.t.Helper()
	for i := 0; i < n; i++ {
		if err := h.c.Watch(h.ctx()); err != nil {
			h.t.Fatalf("Watch round %d: %v", i+1, err)
		}
	}
}

func TestWatch_NotifiesOncePerUnhealthyEpisode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t) // threshold 2
		h.deployOK("v1")
		h.deployOK("v2")
		h.failColor(controller.Green)

		h.watchRounds(1)
		if got := h.notes.ofKind(controller.NotifyServiceUnhealthy); len(got) != 0 {
			t.Fatalf("after 1 failed round: %d unhealthy notifications, want 0", len(got))
		}
		h.watchRounds(3)
		got := h.notes.ofKind(controller.NotifyServiceUnhealthy)
		if len(got) != 1 {
			t.Fatalf("after 4 failed rounds: %d unhealthy notifications, want 1", len(got))
		}
		if n := got[0]; n.Service != svc || n.Color != controller.Green || n.Actor != "watchdog" || !strings.Contains(n.Message, "500") {
			t.Errorf("notification = %+v, want green of %s by watchdog with the probe error", n, svc)
		}
		if st, _ := h.obs.lastState(); st.Healthy {
			t.Errorf("observed state = %+v, want unhealthy", st)
		}

		h.prober.setVerdict(nil)
		h.watchRounds(1)
		if st, _ := h.obs.lastState(); !st.Healthy || st.Active != controller.Green {
			t.Errorf("observed state after recovery = %+v, want green healthy", st)
		}

		h.failColor(controller.Green)
		h.watchRounds(2)
		if got := h.notes.ofKind(controller.NotifyServiceUnhealthy); len(got) != 2 {
			t.Errorf("after a second episode: %d unhealthy notifications, want 2", len(got))
		}
		if d := h.lastDeployment(); d.Kind != controller.KindDeploy {
			t.Errorf("last deployment is a %s, want no rollback without auto_rollback", d.Kind)
		}
	})
}

func TestWatch_PassingRoundResetsTheCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.deployOK("v1")
		for _, fail := range []bool{true, false, true, false, true} {
			if fail {
				h.failColor(controller.Blue)
			} else {
				h.prober.setVerdict(nil)
			}
			h.watchRounds(1)
		}
		if got := h.notes.ofKind(controller.NotifyServiceUnhealthy); len(got) != 0 {
			t.Errorf("unhealthy notifications = %d, want 0: no two failed rounds in a row", len(got))
		}
	})
}

func TestWatch_StoppedActiveContainerFailsTheRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.deployOK("v1")
		blue := h.colorContainers(controller.Blue)
		h.rt.set(func(rt *fakeRuntime) { rt.containers[blue[0].ID].State = "exited" })

		h.watchRounds(2)

		got := h.notes.ofKind(controller.NotifyServiceUnhealthy)
		if len(got) != 1 || !strings.Contains(got[0].Message, "not running") {
			t.Fatalf("unhealthy notifications = %+v, want one saying a container is not running", got)
		}
	})
}

func TestWatch_AutoRollbackToWarmHealthyStandby(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.AutoRollback = true })
		h.deployOK("v1")
		v2 := h.deployOK("v2")
		h.failColor(controller.Green)

		h.watchRounds(2)

		rb := h.lastDeployment()
		if rb.Kind != controller.KindRollback || rb.Trigger.Source != "watchdog" || rb.Trigger.Actor != "watchdog" {
			t.Fatalf("last deployment = %s by %+v, want a rollback by the watchdog", rb.Kind, rb.Trigger)
		}
		rb = h.wait(rb.ID)
		if rb.Status != controller.StatusSucceeded {
			t.Fatalf("rollback status = %s (%q), want succeeded", rb.Status, rb.Error)
		}
		wantRolledBack(t, h)
		audit, err := h.c.Audit(h.ctx(), 10)
		if err != nil {
			t.Fatalf("Audit: %v", err)
		}
		want := controller.AuditEntry{Actor: "watchdog", Action: "rollback", Target: svc, Result: "ok", DeploymentID: rb.ID}
		if len(audit) != 1 {
			t.Fatalf("audit = %+v, want one entry", audit)
		}
		got := audit[0]
		got.ID, got.Time = "", want.Time
		if got != want {
			t.Errorf("audit entry = %+v, want %+v", got, want)
		}
		rolled := h.notes.ofKind(controller.NotifyRolledBack)
		if len(rolled) != 1 || rolled[0].Actor != "watchdog" || rolled[0].Deployment != rb.ID {
			t.Errorf("rolled_back notifications = %+v, want one by the watchdog for %s", rolled, rb.ID)
		}
		fin := h.obs.finishedDeployments()
		if last := fin[len(fin)-1]; last.ID != rb.ID || last.Trigger.Source != "watchdog" {
			t.Errorf("last finished = %s from %q, want %s from watchdog", last.ID, last.Trigger.Source, rb.ID)
		}
		// Traffic moved: the count starts over for blue, which is healthy.
		if st, _ := h.obs.lastState(); !st.Healthy || st.Active != controller.Blue {
			t.Errorf("observed state = %+v, want blue healthy", st)
		}
		h.watchRounds(2)
		if d := h.lastDeployment(); d.ID != rb.ID {
			t.Errorf("another deployment %s after the rollback, want none (v2 was %s)", d.ID, v2.ID)
		}
	})
}

func TestWatch_NoAutoRollbackWhenStandbyUnfit(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*controller.ServiceSpec)
		fail   []controller.Color
		why    string
	}{
		{name: "cold standby", mutate: func(s *controller.ServiceSpec) { s.Standby = controller.StandbyStopped },
			fail: []controller.Color{controller.Green}, why: "cold"},
		{name: "unhealthy standby", fail: []controller.Color{controller.Green, controller.Blue}, why: "not healthy"},
		{name: "not opted in", mutate: func(s *controller.ServiceSpec) { s.AutoRollback = false },
			fail: []controller.Color{controller.Green}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, func(s *controller.ServiceSpec) {
					s.AutoRollback = true
					if tt.mutate != nil {
						tt.mutate(s)
					}
				})
				h.deployOK("v1")
				v2 := h.deployOK("v2")
				before := h.store.service(svc)
				h.prober.setVerdict(func(name string, n int) error {
					for _, c := range tt.fail {
						if strings.Contains(name, "-"+string(c)+"-") {
							return errNope
						}
					}
					return nil
				})

				h.watchRounds(3)

				if d := h.lastDeployment(); d.ID != v2.ID {
					t.Fatalf("last deployment = %s %s by %+v, want none after %s", d.Kind, d.ID, d.Trigger, v2.ID)
				}
				if got := h.store.service(svc); got != before {
					t.Errorf("state = %+v, want unchanged %+v", got, before)
				}
				if audit, _ := h.c.Audit(h.ctx(), 10); len(audit) != 0 {
					t.Errorf("audit = %+v, want empty", audit)
				}
				notes := h.notes.ofKind(controller.NotifyServiceUnhealthy)
				if len(notes) != 1 || !strings.Contains(notes[0].Message, tt.why) {
					t.Errorf("unhealthy notifications = %+v, want one mentioning %q", notes, tt.why)
				}
			})
		})
	}
}

func TestWatch_SkipsServicesWithoutActiveColor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.watchRounds(3)
		if got := h.notes.all(); len(got) != 0 {
			t.Errorf("notifications = %+v, want none before the first deploy", got)
		}
		if got := h.obs.failures(svc); got != 0 {
			t.Errorf("failed probes = %d, want 0", got)
		}
	})
}

func TestWatch_DockerUnreachableIsAnErrorNotAFailedRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.deployOK("v1")
		h.rt.set(func(rt *fakeRuntime) { rt.containersErr = controller.ErrUnavailable })
		for i := 0; i < 3; i++ {
			if err := h.c.Watch(h.ctx()); err == nil {
				t.Fatalf("Watch round %d = nil, want the runtime's error", i+1)
			}
		}
		if got := h.notes.ofKind(controller.NotifyServiceUnhealthy); len(got) != 0 {
			t.Errorf("unhealthy notifications = %+v, want none while Docker is away", got)
		}
		if got := slices.Clone(h.obs.stateCalls()); len(got) > 0 && !got[len(got)-1].Healthy {
			t.Errorf("observed unhealthy while Docker is away: %+v", got)
		}
	})
}

var errNope = errors.New("GET /health: 500")

func TestWatch_SkipsServiceWhileItDeploys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Health.StartTimeout = 300 * time.Millisecond })
		h.deployOK("v1")
		blue := h.colorContainers(controller.Blue)
		h.rt.set(func(rt *fakeRuntime) { rt.containers[blue[0].ID].State = "exited" })
		h.failColor(controller.Green) // the deploy stays in its health step
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		eventually(t, "health step", h.runningStep(d.ID, controller.StepHealth))

		h.watchRounds(3)

		if got := h.notes.ofKind(controller.NotifyServiceUnhealthy); len(got) != 0 {
			t.Errorf("unhealthy notifications during a deploy = %+v, want none", got)
		}
		h.wait(d.ID)
		h.watchRounds(2)
		if got := h.notes.ofKind(controller.NotifyServiceUnhealthy); len(got) != 1 {
			t.Errorf("unhealthy notifications after the deploy = %d, want 1", len(got))
		}
	})
}

// A round works on several services at once, and on a color's replicas
// at once: with every probe taking a second, 16 services of 2 replicas
// take 2 s (16 services, 8 at a time), where one after another they took
// 32 s and the watchdog fell behind its interval.
func TestWatch_ServicesAndReplicasAreProbedSideBySide(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const services = 16
		var extra []controller.ServiceSpec
		for i := 1; i < services; i++ {
			s := baseSpec()
			s.Name = "svc" + strconv.Itoa(i)
			extra = append(extra, s)
		}
		h := newHarnessWith(t, func(o *controller.Options) { o.Services = append(o.Services, extra...) }, func(s *controller.ServiceSpec) { s.Replicas = 2 })
		for _, s := range append([]controller.ServiceSpec{h.spec}, extra...) {
			d, err := h.c.Deploy(h.ctx(), s.Name, controller.DeployRequest{Image: "v1", Trigger: controller.Trigger{Source: "test"}})
			if err != nil {
				t.Fatalf("Deploy %s: %v", s.Name, err)
			}
			if d = h.wait(d.ID); d.Status != controller.StatusSucceeded {
				t.Fatalf("deploy %s: %s (%s)", s.Name, d.Status, d.Error)
			}
		}
		h.prober.setVerdict(func(string, int) error {
			time.Sleep(time.Second)
			return nil
		})

		start := time.Now()
		h.watchRounds(1)
		if took := time.Since(start); took != 2*time.Second {
			t.Errorf("a round over %d services of 2 replicas, each probe 1s: %s, want 2s", services, took)
		}

		// Side by side, each service still gets its own verdict.
		h.prober.setVerdict(func(name string, _ int) error {
			if strings.HasPrefix(name, "svc3-") {
				return errors.New("GET /health: 500")
			}
			return nil
		})
		h.watchRounds(2) // the threshold
		got := h.notes.ofKind(controller.NotifyServiceUnhealthy)
		if len(got) != 1 || got[0].Service != "svc3" || !strings.Contains(got[0].Message, "500") {
			t.Errorf("unhealthy notifications = %+v, want one, of svc3, quoting its probes", got)
		}
	})
}
