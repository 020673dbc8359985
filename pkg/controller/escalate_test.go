package controller_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// killColor stops every container of color, as `docker kill` would.
func (h *harness) killColor(color controller.Color) {
	h.rt.set(func(rt *fakeRuntime) {
		for _, c := range rt.containers {
			if c.Color == color {
				c.State, c.Address, c.ExitCode = "exited", "", 137
			}
		}
	})
}

// removeColorContainers deletes every container of color, as `docker rm -f`
// would.
func (h *harness) removeColorContainers(color controller.Color) {
	h.rt.set(func(rt *fakeRuntime) {
		for id, c := range rt.containers {
			if c.Color == color {
				delete(rt.containers, id)
			}
		}
	})
}

// reconcileQuiet runs one pass; a repair error is fine here, a panic or a
// hang is not.
func (h *harness) reconcileQuiet() {
	h.t.Helper()
	_, _ = h.c.Reconcile(h.ctx())
}

// rollbacks returns the service's rollback deployments, oldest first.
func (h *harness) rollbacks() []controller.Deployment {
	h.t.Helper()
	ds, err := h.store.ListDeployments(h.ctx(), svc, 100)
	if err != nil {
		h.t.Fatalf("ListDeployments: %v", err)
	}
	var out []controller.Deployment
	for _, d := range ds {
		if d.Kind == controller.KindRollback {
			out = append(out, d)
		}
	}
	slices.Reverse(out)
	return out
}

// wantOneAutoRollback checks the whole episode: one rollback by actor,
// which succeeded, one unhealthy notification and one audit entry.
func wantOneAutoRollback(t *testing.T, h *harness, actors ...string) {
	t.Helper()
	rbs := h.rollbacks()
	if len(rbs) != 1 {
		t.Fatalf("rollbacks = %d, want exactly 1", len(rbs))
	}
	rb := h.wait(rbs[0].ID)
	// The noticer tells people and audits after it started the rollback,
	// which may finish first: let every goroutine of the bubble settle.
	synctest.Wait()
	if rb.Status != controller.StatusSucceeded || !slices.Contains(actors, rb.Trigger.Actor) {
		t.Fatalf("rollback = %s by %+v (%q), want succeeded by one of %v", rb.Status, rb.Trigger, rb.Error, actors)
	}
	wantRolledBack(t, h)
	if got := h.notes.ofKind(controller.NotifyServiceUnhealthy); len(got) != 1 {
		t.Errorf("unhealthy notifications = %d (%+v), want 1", len(got), got)
	}
	audit, err := h.c.Audit(h.ctx(), 100)
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	var rollbacks []controller.AuditEntry
	for _, e := range audit {
		if e.Action == "rollback" {
			rollbacks = append(rollbacks, e)
		}
	}
	if len(rollbacks) != 1 || rollbacks[0].DeploymentID != rb.ID || rollbacks[0].Result != "ok" {
		t.Errorf("rollback audit entries = %+v, want one for %s", rollbacks, rb.ID)
	}
}

func TestAutoRollback_WhoeverNoticesFirstRollsBackOnce(t *testing.T) {
	threshold := testWatch.UnhealthyThreshold
	tests := []struct {
		name string
		// notice drives the noticers after green's containers died.
		notice func(h *harness)
		actors []string
	}{
		{name: "reconciler first", actors: []string{"reconciler"}, notice: func(h *harness) {
			h.reconcileQuiet()
			h.watchRounds(threshold + 2)
			h.reconcileQuiet()
		}},
		{name: "watchdog first", actors: []string{"watchdog"}, notice: func(h *harness) {
			h.watchRounds(threshold)
			h.reconcileQuiet()
			h.watchRounds(threshold)
		}},
		// The defect this test was written for: the reconciler noticed
		// between two watchdog rounds and the rollback never came.
		{name: "reconciler between watchdog rounds", actors: []string{"reconciler"}, notice: func(h *harness) {
			h.watchRounds(threshold - 1)
			h.reconcileQuiet()
			h.watchRounds(threshold + 1)
		}},
		{name: "both at the same moment", actors: []string{"reconciler", "watchdog"}, notice: func(h *harness) {
			h.watchRounds(threshold - 1)
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); _ = h.c.Watch(h.ctx()) }()
			go func() { defer wg.Done(); _, _ = h.c.Reconcile(h.ctx()) }()
			wg.Wait()
			h.watchRounds(threshold)
			h.reconcileQuiet()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Many trials: the concurrent ordering interleaves differently
			// each time.
			for trial := range 25 {
				t.Run(fmt.Sprint(trial), func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						h := newHarness(t, func(s *controller.ServiceSpec) { s.AutoRollback = true })
						h.deployOK("v1")
						h.deployOK("v2")
						h.killColor(controller.Green)

						tt.notice(h)

						wantOneAutoRollback(t, h, tt.actors...)
					})
				})
			}
		})
	}
}

func TestAutoRollback_RetriedOnceTheStandbyAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.AutoRollback = true })
		h.deployOK("v1")
		h.deployOK("v2")
		// Green is dead and blue, the standby, fails its probe for a while.
		h.killColor(controller.Green)
		h.failColor(controller.Blue)

		h.watchRounds(testWatch.UnhealthyThreshold + 1)
		if n := len(h.rollbacks()); n != 0 {
			t.Fatalf("rollbacks while the standby fails its probe = %d, want 0", n)
		}
		notes := h.notes.ofKind(controller.NotifyServiceUnhealthy)
		if len(notes) != 1 || !strings.Contains(notes[0].Message, "no automatic rollback") {
			t.Fatalf("unhealthy notifications = %+v, want one saying no automatic rollback yet", notes)
		}

		h.prober.setVerdict(nil)
		h.watchRounds(1)

		wantOneAutoRollback(t, h, "watchdog")
	})
}

func TestAutoRollback_VerdictOnColorNoLongerActiveIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.AutoRollback = true })
		h.deployOK("v1")
		h.deployOK("v2")
		h.killColor(controller.Green)
		h.watchRounds(testWatch.UnhealthyThreshold - 1)
		// A person rolls back before the watchdog reaches its threshold; the
		// watchdog's next failed count is about a color that no longer serves.
		h.wait(h.rollback().ID)
		h.killColor(controller.Green)

		h.watchRounds(testWatch.UnhealthyThreshold + 1)
		h.reconcileQuiet()

		if n := len(h.rollbacks()); n != 1 {
			t.Fatalf("rollbacks = %d, want only the person's: green is the standby now", n)
		}
		if st := h.store.service(svc); st.ActiveColor != controller.Blue {
			t.Errorf("active = %s, want blue", st.ActiveColor)
		}
	})
}

func TestReconcile_DeadActiveColorWithoutWarmStandbyIsRestarted(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*controller.ServiceSpec)
		kill   func(h *harness)
		calls  string
		// why the repair message gives for not rolling back.
		why string
	}{
		{name: "stopped, no auto rollback", kill: func(h *harness) { h.killColor(controller.Green) }, calls: "StartExisting",
			why: "(auto_rollback is off)"},
		{name: "removed, no auto rollback", kill: func(h *harness) { h.removeColorContainers(controller.Green) }, calls: "StartContainer",
			why: "(auto_rollback is off)"},
		{name: "stopped, cold standby", kill: func(h *harness) { h.killColor(controller.Green) }, calls: "StartExisting",
			mutate: func(s *controller.ServiceSpec) { s.AutoRollback, s.Standby = true, controller.StandbyStopped },
			why:    "(standby blue is cold (0 of 2 running))"},
		{name: "removed, no standby containers", kill: func(h *harness) {
			h.removeColorContainers(controller.Green)
			h.removeColorContainers(controller.Blue)
		}, calls: "StartContainer", mutate: func(s *controller.ServiceSpec) { s.AutoRollback = true },
			why: "(standby blue has no containers)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mutate := func(*controller.ServiceSpec) {}
				if tt.mutate != nil {
					mutate = tt.mutate
				}
				h := newHarness(t, mutate)
				h.deployOK("v1")
				v2 := h.deployOK("v2")
				before := h.store.service(svc)
				tt.kill(h)
				calls := h.rt.countCalls(tt.calls)

				if n := h.reconcile(); n < h.spec.Replicas {
					t.Fatalf("repairs = %d, want at least %d", n, h.spec.Replicas)
				}

				if got := h.rt.countCalls(tt.calls) - calls; got != h.spec.Replicas {
					t.Errorf("%s calls = %d, want %d", tt.calls, got, h.spec.Replicas)
				}
				green := h.colorContainers(controller.Green)
				if len(running(green)) != h.spec.Replicas {
					t.Fatalf("running green containers = %v, want %d", namesOf(green), h.spec.Replicas)
				}
				for _, ct := range green {
					if ct.Image != "demoapp:v2" || ct.Deployment != v2.ID {
						t.Errorf("container %s = image %s deployment %s, want demoapp:v2 of %s", ct.Name, ct.Image, ct.Deployment, v2.ID)
					}
				}
				if got, want := h.router.current(svc), addrsOf(green); !slices.Equal(got, want) {
					t.Errorf("upstream = %v, want the restarted containers %v", got, want)
				}
				if got := h.store.service(svc); got != before {
					t.Errorf("state = %+v, want unchanged %+v", got, before)
				}
				if n := len(h.rollbacks()); n != 0 {
					t.Errorf("rollbacks = %d, want 0", n)
				}
				repairs := h.notes.ofKind(controller.NotifyRepair)
				if len(repairs) != 1 || !strings.Contains(repairs[0].Message, "had no running containers") || repairs[0].Actor != "reconciler" {
					t.Errorf("repair notifications = %+v, want one for the restarted active color", repairs)
				} else if !strings.Contains(repairs[0].Message, tt.why) {
					t.Errorf("repair notification %q, want it to say why there was no rollback: %q", repairs[0].Message, tt.why)
				}
				if got, want := h.obs.repairList(), []string{svc + "/" + controller.RepairActiveRestarted}; !slices.Equal(got, want) {
					t.Errorf("observed repairs = %v, want %v", got, want)
				}
				audit, err := h.c.Audit(h.ctx(), 10)
				if err != nil {
					t.Fatalf("Audit: %v", err)
				}
				if len(audit) != 1 || audit[0].Action != "repair" || audit[0].Actor != "reconciler" || audit[0].Result != "ok" {
					t.Errorf("audit = %+v, want one ok repair by the reconciler", audit)
				}

				// The next rounds find a healthy service and nothing to do.
				h.watchRounds(testWatch.UnhealthyThreshold + 1)
				if n := h.reconcile(); n != 0 {
					t.Errorf("repairs on the next pass = %d, want 0", n)
				}
				if got := h.notes.ofKind(controller.NotifyServiceUnhealthy); len(got) != 0 {
					t.Errorf("unhealthy notifications = %+v, want none: the pass repaired before any round failed", got)
				}
			})
		})
	}
}

func TestReconcile_FailedRestartIsReportedOnceAndRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.deployOK("v1")
		h.deployOK("v2")
		h.removeColorContainers(controller.Green)
		// The active image was pruned and cannot be pulled: nothing can come
		// back until it can.
		h.rt.set(func(rt *fakeRuntime) { delete(rt.images, "demoapp:v2") })
		for range 3 {
			if _, err := h.c.Reconcile(h.ctx()); err == nil {
				t.Fatal("Reconcile = nil, want the failed restart")
			}
		}
		notes := h.notes.ofKind(controller.NotifyServiceUnhealthy)
		if len(notes) != 1 || !strings.Contains(notes[0].Message, "no running containers") {
			t.Errorf("unhealthy notifications = %+v, want one saying the active color has no running containers", notes)
		}

		h.rt.addImage("sha256:v2again", time.Now(), "demoapp:v2")
		h.reconcile()
		if green := running(h.colorContainers(controller.Green)); len(green) != h.spec.Replicas {
			t.Fatalf("running green = %v, want %d once the image is back", namesOf(green), h.spec.Replicas)
		}
	})
}
