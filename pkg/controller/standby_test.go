package controller_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// afterTwoDeploys deploys v1 and v2: green v2 serves, blue v1 is the warm
// standby, and the next deploy targets blue. It returns blue's names.
func afterTwoDeploys(h *harness) []string {
	h.t.Helper()
	h.deployOK("v1")
	h.deployOK("v2")
	return namesOf(h.colorContainers(controller.Blue))
}

// failNewBlue makes every blue container other than standby fail its
// probes with err.
func failNewBlue(h *harness, standby []string, err error) {
	h.prober.setVerdict(func(name string, _ int) error {
		if strings.HasPrefix(name, "web-blue-") && !slices.Contains(standby, name) {
			return err
		}
		return nil
	})
}

// wantThreeSets checks that, while deployment id runs, blue holds the
// standby's containers and the deployment's side by side, all running.
func wantThreeSets(t *testing.T, h *harness, id string, standby []string) {
	t.Helper()
	blue := h.colorContainers(controller.Blue)
	own := namesOf(h.ownContainers(id))
	if len(own) != h.spec.Replicas || len(blue) != len(standby)+len(own) || len(running(blue)) != len(blue) {
		t.Fatalf("blue during the deploy = %v, want the standby %v running beside the deployment's %d", namesOf(blue), standby, h.spec.Replicas)
	}
}

// wantWarmRollback rolls back and checks it took the standby as it was:
// warm, one probe per replica, traffic on its containers.
func wantWarmRollback(t *testing.T, h *harness, standby []string) {
	t.Helper()
	d := h.rollback()
	if d.Status != controller.StatusSucceeded {
		t.Fatalf("rollback status = %s (%q), want succeeded", d.Status, d.Error)
	}
	if s, _ := findStep(d, controller.StepStart); !strings.Contains(s.Message, "warm") {
		t.Errorf("rollback start step = %q, want the standby warm", s.Message)
	}
	blue := h.colorContainers(controller.Blue)
	if got := namesOf(blue); !slices.Equal(got, standby) {
		t.Errorf("blue after the rollback = %v, want the standby %v", got, standby)
	}
	if got, want := h.router.current(svc), addrsOf(blue); !slices.Equal(got, want) {
		t.Errorf("upstream = %v, want the standby's %v", got, want)
	}
	if st := h.store.service(svc); st.ActiveColor != controller.Blue || st.ActiveImage != "demoapp:v1" {
		t.Errorf("active = %s %s, want blue demoapp:v1", st.ActiveColor, st.ActiveImage)
	}
}

func TestDeploy_FailureLeavesTheStandbyWarm(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*controller.ServiceSpec)
		// run starts the deploy of v3 (to blue, the standby's color) and
		// makes it fail; it returns the deployment as it ended.
		run        func(t *testing.T, h *harness, standby []string) controller.Deployment
		wantStatus controller.Status
		// closed: the controller is shut down, no rollback can follow.
		closed bool
	}{
		{
			name:   "failed health",
			mutate: func(s *controller.ServiceSpec) { s.Health.StartTimeout = 2 * time.Second },
			run: func(t *testing.T, h *harness, standby []string) controller.Deployment {
				failNewBlue(h, standby, errors.New("GET /health: status 503"))
				d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v3"})
				if err != nil {
					t.Fatal(err)
				}
				eventually(t, "deploy in its health step", h.runningStep(d.ID, controller.StepHealth))
				wantThreeSets(t, h, d.ID, standby)
				return h.wait(d.ID)
			},
			wantStatus: controller.StatusFailed,
		},
		{
			name: "failed pre-deploy",
			mutate: func(s *controller.ServiceSpec) {
				s.PreDeploy = controller.PreDeploySpec{Command: []string{"migrate"}, Timeout: time.Second}
			},
			run: func(t *testing.T, h *harness, _ []string) controller.Deployment {
				h.rt.set(func(rt *fakeRuntime) {
					rt.oneOff = func(context.Context, controller.OneOffSpec) (controller.OneOffResult, error) {
						return controller.OneOffResult{ExitCode: 1}, nil
					}
				})
				return h.deploy("v3")
			},
			wantStatus: controller.StatusFailed,
		},
		{
			name:   "cancelled",
			mutate: func(s *controller.ServiceSpec) { s.Health.StartTimeout = time.Minute },
			run: func(t *testing.T, h *harness, standby []string) controller.Deployment {
				failNewBlue(h, standby, errors.New("still booting"))
				d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v3"})
				if err != nil {
					t.Fatal(err)
				}
				eventually(t, "deploy in its health step", h.runningStep(d.ID, controller.StepHealth))
				wantThreeSets(t, h, d.ID, standby)
				if _, err := h.c.Cancel(h.ctx(), d.ID); err != nil {
					t.Fatalf("Cancel: %v", err)
				}
				return h.wait(d.ID)
			},
			wantStatus: controller.StatusCancelled,
		},
		{
			name:   "interrupted by shutdown",
			mutate: func(s *controller.ServiceSpec) { s.Health.StartTimeout = time.Minute },
			run: func(t *testing.T, h *harness, standby []string) controller.Deployment {
				failNewBlue(h, standby, errors.New("still booting"))
				d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v3"})
				if err != nil {
					t.Fatal(err)
				}
				eventually(t, "deploy in its health step", h.runningStep(d.ID, controller.StepHealth))
				wantThreeSets(t, h, d.ID, standby)
				if err := h.c.Close(h.ctx()); err != nil {
					t.Fatalf("Close: %v", err)
				}
				return h.wait(d.ID)
			},
			wantStatus: controller.StatusInterrupted,
			closed:     true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, tt.mutate)
				standby := afterTwoDeploys(h)
				before := h.snapshot()

				d := tt.run(t, h, standby)

				if d.Status != tt.wantStatus || d.ToColor != controller.Blue {
					t.Fatalf("status, to = %s %s (%q), want %s blue", d.Status, d.ToColor, d.Error, tt.wantStatus)
				}
				if s, _ := findStep(d, controller.StepCleanup); !strings.Contains(s.Message, "removed 0 old blue") {
					t.Errorf("cleanup step = %q, want nothing removed, the standby kept", s.Message)
				}
				if own := h.ownContainers(d.ID); len(own) > 0 {
					t.Errorf("containers of the %s deployment left behind: %v", d.Status, namesOf(own))
				}
				if s := diff(h.snapshot(), before); s != "" {
					t.Errorf("active color, standby, their containers or the upstream changed:%s", s)
				}
				if tt.closed {
					return
				}
				h.prober.setVerdict(nil)
				wantWarmRollback(t, h, standby)
			})
		})
	}
}

func TestDeploy_ReplacedStandbyIsRemovedOnlyAfterTheSwitch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		standby := afterTwoDeploys(h)
		var blueAtSwitch []string
		d := h.duringSwitch("v3", func() { blueAtSwitch = namesOf(h.colorContainers(controller.Blue)) })
		if d.Status != controller.StatusSucceeded {
			t.Fatalf("status = %s (%q), want succeeded", d.Status, d.Error)
		}
		for _, name := range standby {
			if !slices.Contains(blueAtSwitch, name) {
				t.Errorf("blue at the switch = %v, want the old standby %v still there", blueAtSwitch, standby)
			}
		}
		if got, want := namesOf(h.colorContainers(controller.Blue)), replicaNames(controller.Blue, d.ID, h.spec.Replicas); !slices.Equal(got, want) {
			t.Errorf("blue after the deploy = %v, want only the new %v", got, want)
		}
		if s, _ := findStep(d, controller.StepRetire); s.Status != controller.StepSucceeded || !strings.Contains(s.Message, "removed the replaced blue standby (2") {
			t.Errorf("retire step = %s %q, want succeeded removing 2", s.Status, s.Message)
		}
		st := h.store.service(svc)
		if st.ActiveColor != controller.Blue || st.StandbyColor != controller.Green || st.StandbyImage != "demoapp:v2" {
			t.Errorf("state = %+v, want blue v3 active, green v2 standby", st)
		}
	})
}

func TestBake_FailureKeepsTheStandbyItWouldHaveReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Short enough for v2's bake to pass within the harness's wait.
		h := newHarness(t, withBake(time.Second))
		standby := afterTwoDeploys(h)
		before := h.snapshot()
		// The new blue passes its health check (two probes each), then fails.
		h.prober.setVerdict(func(name string, n int) error {
			if strings.HasPrefix(name, "web-blue-") && !slices.Contains(standby, name) && n > 2 {
				return errNope
			}
			return nil
		})

		d := h.deploy("v3")

		if d.Status != controller.StatusRolledBack {
			t.Fatalf("status = %s (%q), want rolled_back", d.Status, d.Error)
		}
		after := h.snapshot()
		after.State.UpdatedAt = before.State.UpdatedAt
		if s := diff(after, before); s != "" {
			t.Errorf("state, active, standby or upstream not as before the deploy:%s", s)
		}
		h.prober.setVerdict(nil)
		wantWarmRollback(t, h, standby)
	})
}

func TestDeploy_StandbyDuringDeployRemoveFreesTheStandbyFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) {
			s.StandbyDuringDeploy = controller.DeployStandbyRemove
			s.Health.StartTimeout = 2 * time.Second
		})
		standby := afterTwoDeploys(h)
		before := h.store.service(svc)
		failNewBlue(h, standby, errors.New("GET /health: status 503"))
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v3"})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "deploy in its health step", h.runningStep(d.ID, controller.StepHealth))
		if got, want := namesOf(h.colorContainers(controller.Blue)), namesOf(h.ownContainers(d.ID)); !slices.Equal(got, want) {
			t.Errorf("blue during the deploy = %v, want only the new %v", got, want)
		}
		d = h.wait(d.ID)
		if d.Status != controller.StatusFailed {
			t.Fatalf("status = %s, want failed", d.Status)
		}
		if blue := h.colorContainers(controller.Blue); len(blue) != 0 {
			t.Errorf("blue = %v, want none: the standby went before the start", namesOf(blue))
		}
		// The record still names the standby: a rollback is cold.
		if s := diff(h.store.service(svc), before); s != "" {
			t.Errorf("state changed:%s", s)
		}
	})
}

// A crash during a deploy leaves its containers beside the standby's in the
// standby's color: the next start removes them, and only them.
func TestStart_InterruptedDeployBesideTheStandbyRemovesOnlyItsContainers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		const greenID = "20250101T103000.000000Z-cccccc"
		h.seedService(controller.ServiceState{ActiveColor: controller.Green, ActiveImage: "demoapp:v2", ActiveDeployment: greenID,
			StandbyColor: controller.Blue, StandbyImage: "demoapp:v1", StandbyDeployment: oldDeployID})
		g := h.rt.add(svc, controller.Green, 1, "demoapp:v2", greenID, true)
		standby := []controller.Container{h.rt.add(svc, controller.Blue, 1, "demoapp:v1", oldDeployID, true)}
		lost := h.rt.add(svc, controller.Blue, 1, "demoapp:v3", lostDeployID, true)
		h.rt.set(func(rt *fakeRuntime) { rt.containers[lost.ID].Name = "web-blue-bbbbbb-1" })
		h.seedDeployment(lostDeployID, controller.KindDeploy, controller.Green, controller.Blue, "demoapp:v3",
			"pull", "cleanup", "backup", "pre_deploy", "start", "health")
		if err := h.router.Switch(h.ctx(), svc, controller.Green, []string{g.Address}); err != nil {
			t.Fatal(err)
		}

		h.start()

		if s := diff(h.colorContainers(controller.Blue), standby); s != "" {
			t.Errorf("blue after the start, want only the standby, untouched:%s", s)
		}
		if got := h.router.current(svc); !slices.Equal(got, []string{g.Address}) {
			t.Errorf("upstream = %v, want green %v", got, g.Address)
		}
		if d := h.stored(lostDeployID); d.Status != controller.StatusInterrupted {
			t.Errorf("status = %s, want interrupted", d.Status)
		}
	})
}

// A crash after the switch was recorded but before retire: the deployment's
// containers serve, the standby they replaced goes.
func TestStart_InterruptedAfterTheSwitchRemovesTheReplacedStandby(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		const greenID = "20250101T103000.000000Z-cccccc"
		h.seedService(controller.ServiceState{ActiveColor: controller.Blue, ActiveImage: "demoapp:v3", ActiveDeployment: lostDeployID,
			StandbyColor: controller.Green, StandbyImage: "demoapp:v2", StandbyDeployment: greenID})
		green := []controller.Container{h.rt.add(svc, controller.Green, 1, "demoapp:v2", greenID, true)}
		h.rt.add(svc, controller.Blue, 1, "demoapp:v1", oldDeployID, true)
		nb := h.rt.add(svc, controller.Blue, 1, "demoapp:v3", lostDeployID, true)
		h.rt.set(func(rt *fakeRuntime) { rt.containers[nb.ID].Name = "web-blue-bbbbbb-1" })
		nb.Name = "web-blue-bbbbbb-1"
		h.seedDeployment(lostDeployID, controller.KindDeploy, controller.Green, controller.Blue, "demoapp:v3",
			"pull", "cleanup", "backup", "pre_deploy", "start", "health", "switch", "retire")
		if err := h.router.Switch(h.ctx(), svc, controller.Blue, []string{nb.Address}); err != nil {
			t.Fatal(err)
		}

		h.start()

		if s := diff(h.colorContainers(controller.Blue), []controller.Container{nb}); s != "" {
			t.Errorf("blue after the start, want only the deployment's:%s", s)
		}
		if s := diff(h.colorContainers(controller.Green), green); s != "" {
			t.Errorf("green standby changed:%s", s)
		}
		if got := h.router.current(svc); !slices.Equal(got, []string{nb.Address}) {
			t.Errorf("upstream = %v, want the new blue %v", got, nb.Address)
		}
	})
}

// What a failed deploy could not remove (the engine away) sits in the
// standby's color: the reconciler removes it and nothing of the standby,
// and the upstream never names it.
func TestReconcile_RemovesAFailedDeploysLeftoversBesideTheStandby(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		standby := afterTwoDeploys(h)
		before := h.snapshot()
		left := h.rt.add(svc, controller.Blue, 1, "demoapp:v3", lostDeployID, true)
		h.rt.set(func(rt *fakeRuntime) { rt.containers[left.ID].Name = "web-blue-bbbbbb-1" })

		if n := h.reconcile(); n != 1 {
			t.Errorf("repairs = %d, want 1 (the leftover)", n)
		}
		if s := diff(h.snapshot(), before); s != "" {
			t.Errorf("active, standby or upstream changed:%s", s)
		}
		if got := namesOf(h.colorContainers(controller.Blue)); !slices.Equal(got, standby) {
			t.Errorf("blue = %v, want the standby %v", got, standby)
		}
	})
}
