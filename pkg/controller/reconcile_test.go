package controller_test

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// deployedTwice leaves green active (v2) and blue the running standby (v1).
func deployedTwice(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	if err := h.c.Start(h.ctx()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	h.deployOK("v1")
	h.deployOK("v2")
	return h
}

func (h *harness) reconcile() int {
	h.t.Helper()
	n, err := h.c.Reconcile(h.ctx())
	if err != nil {
		h.t.Fatalf("Reconcile: %v", err)
	}
	return n
}

func TestReconcile_RewritesHandEditedOrDeletedUpstream(t *testing.T) {
	for _, gone := range []bool{false, true} {
		name := map[bool]string{false: "edited", true: "deleted"}[gone]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := deployedTwice(t)
				want := addrsOf(running(h.colorContainers(controller.Green)))
				h.router.handEdit(svc, gone)

				if n := h.reconcile(); n != 1 {
					t.Fatalf("repairs = %d, want 1", n)
				}
				if got := h.router.current(svc); !slices.Equal(got, want) {
					t.Errorf("upstream = %v, want the active color's %v", got, want)
				}
				if got, want := h.obs.repairList(), []string{"web/upstream"}; !slices.Equal(got, want) {
					t.Errorf("observed repairs = %v, want %v", got, want)
				}
				notes := h.notes.ofKind(controller.NotifyRepair)
				if len(notes) != 1 || notes[0].Service != svc || notes[0].Color != controller.Green {
					t.Errorf("repair notifications = %+v, want one for %s/green", notes, svc)
				}
				if n := h.reconcile(); n != 0 {
					t.Errorf("second pass repairs = %d, want 0", n)
				}
			})
		})
	}
}

func TestReconcile_InSyncServiceIsLeftAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := deployedTwice(t)
		before := len(h.router.switches())
		if n := h.reconcile(); n != 0 {
			t.Fatalf("repairs = %d, want 0", n)
		}
		if got := len(h.router.switches()); got != before {
			t.Errorf("switches = %d, want %d (no reload)", got, before)
		}
		if got := h.notes.ofKind(controller.NotifyRepair); len(got) != 0 {
			t.Errorf("repair notifications = %+v, want none", got)
		}
		if got := h.rt.countCalls("RemoveContainer"); got != 0 {
			t.Errorf("RemoveContainer calls = %d, want 0: active and standby are kept", got)
		}
	})
}

func TestReconcile_NoDeployYetResetsUpstreamToPlaceholder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		// Someone pointed the service at something by hand.
		if err := h.router.Switch(h.ctx(), svc, controller.NoColor, []string{"10.0.0.9:80"}); err != nil {
			t.Fatal(err)
		}
		if n := h.reconcile(); n != 1 {
			t.Fatalf("repairs = %d, want 1", n)
		}
		if got := h.router.current(svc); got != nil {
			t.Errorf("upstream = %v, want the placeholder", got)
		}
	})
}

func TestReconcile_RemovesOrphanContainersAndOneOffs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		h.deployOK("v1") // blue active, no standby
		orphan := h.rt.add(svc, controller.Green, 1, "demoapp:v3", "gone-deployment", true)
		unlabelled := h.rt.add(svc, controller.NoColor, 1, "demoapp:v3", "", false)
		oneOff := h.rt.addOneOff(svc, "web-pre-x", "gone-deployment")
		active := h.colorContainers(controller.Blue)

		if n := h.reconcile(); n != 3 {
			t.Fatalf("repairs = %d, want 3", n)
		}
		for _, ct := range []controller.Container{orphan, unlabelled, oneOff} {
			if !slices.Contains(h.rt.callLog(), "RemoveContainer "+ct.ID) {
				t.Errorf("%s (%s) was not removed; calls %v", ct.Name, ct.ID, h.rt.callLog())
			}
		}
		if got := h.colorContainers(controller.Blue); diff(got, active) != "" {
			t.Errorf("active containers changed:%s", diff(got, active))
		}
		got := h.obs.repairList()
		slices.Sort(got)
		if want := []string{"web/orphan_container", "web/orphan_container", "web/orphan_oneoff"}; !slices.Equal(got, want) {
			t.Errorf("observed repairs = %v, want %v", got, want)
		}
	})
}

func TestReconcile_NoActiveColorRecordedLeavesContainers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		h.rt.add(svc, controller.Blue, 1, "demoapp:v1", "unknown", true)
		h.reconcile()
		if got := h.rt.countCalls("RemoveContainer"); got != 0 {
			t.Errorf("RemoveContainer calls = %d, want 0 without a recorded active color", got)
		}
	})
}

func TestReconcile_SkipsServiceWhileDeploying(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := deployedTwice(t)
		h.router.handEdit(svc, false)
		var n int
		var err error
		h.duringSwitch("v3", func() { n, err = h.c.Reconcile(h.ctx()) })
		if err != nil || n != 0 {
			t.Fatalf("Reconcile during a deploy = %d, %v; want 0, nil", n, err)
		}
	})
}

func TestReconcile_DeployWaitsOutAPassInsteadOfRacingIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := deployedTwice(t)
		h.router.handEdit(svc, false)
		type result struct {
			d   controller.Deployment
			err error
		}
		deployed := make(chan result, 1)
		answeredDuringPass := false
		h.router.setBeforeSwitch(func(string) {
			h.router.setBeforeSwitch(nil)
			// Inside the reconciler's own switch the service is held: a deploy
			// asked for now must wait for the pass, not race it or fail.
			go func() {
				d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v3"})
				deployed <- result{d, err}
			}()
			select {
			case r := <-deployed:
				answeredDuringPass = true
				deployed <- r
			case <-time.After(200 * time.Millisecond):
			}
		})
		if n := h.reconcile(); n != 1 {
			t.Fatalf("repairs = %d, want 1", n)
		}
		r := <-deployed
		if answeredDuringPass {
			t.Fatalf("Deploy answered while the reconcile pass held the service (err %v), want it to wait", r.err)
		}
		if r.err != nil {
			t.Fatalf("Deploy during a reconcile pass: %v, want it accepted once the pass ends", r.err)
		}
		if d := h.wait(r.d.ID); d.Status != controller.StatusSucceeded {
			t.Fatalf("deploy after the pass: status = %s (%q), want succeeded", d.Status, d.Error)
		}
	})
}

func running(cs []controller.Container) []controller.Container {
	var out []controller.Container
	for _, c := range cs {
		if c.Running() {
			out = append(out, c)
		}
	}
	return out
}

func TestReconcile_PartlyAppliedRepairIsNotCountedAndTriedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := deployedTwice(t)
		h.router.handEdit(svc, false)
		h.router.mu.Lock()
		h.router.partial = true
		h.router.mu.Unlock()

		for range 3 {
			if n, err := h.c.Reconcile(h.ctx()); err == nil || n != 0 {
				t.Fatalf("Reconcile = %d, %v; want 0 repairs and an error while the switch does not take", n, err)
			}
		}
		if got := h.notes.ofKind(controller.NotifyRepair); len(got) != 0 {
			t.Errorf("repair notifications = %+v, want none", got)
		}

		h.router.mu.Lock()
		h.router.partial = false
		h.router.mu.Unlock()
		if n := h.reconcile(); n != 1 {
			t.Errorf("repairs once the switch takes = %d, want 1", n)
		}
	})
}
