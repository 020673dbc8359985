package controller_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func withBake(d time.Duration) func(*controller.ServiceSpec) {
	return func(s *controller.ServiceSpec) { s.Bake = d }
}

// wantSwitchedBack checks that a v1→v2 deploy that failed its bake left
// blue v1 serving with no standby and no green containers.
func wantSwitchedBack(t *testing.T, h *harness, blue []controller.Container, v1 controller.Deployment) {
	t.Helper()
	if got, want := h.router.current(svc), addrsOf(blue); !slices.Equal(got, want) {
		t.Errorf("upstream = %v, want blue %v", got, want)
	}
	st := h.store.service(svc)
	if st.ActiveColor != controller.Blue || st.ActiveImage != "demoapp:v1" || st.ActiveDeployment != v1.ID {
		t.Errorf("active = %s %s %s, want blue demoapp:v1 %s", st.ActiveColor, st.ActiveImage, st.ActiveDeployment, v1.ID)
	}
	if st.StandbyColor != controller.NoColor || st.StandbyImage != "" || st.StandbyDeployment != "" {
		t.Errorf("standby = %q %q %q, want none", st.StandbyColor, st.StandbyImage, st.StandbyDeployment)
	}
	if green := h.colorContainers(controller.Green); len(green) != 0 {
		t.Errorf("green containers = %v, want none", namesOf(green))
	}
	if got := namesOf(h.colorContainers(controller.Blue)); !slices.Equal(got, namesOf(blue)) {
		t.Errorf("blue containers = %v, want %v untouched", got, namesOf(blue))
	}
}

func TestBake_FailingProbesSwitchBackToPreviousColor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withBake(5*time.Second))
		v1 := h.deployOK("v1")
		blue := h.colorContainers(controller.Blue)
		// Green passes its health check (two probes each), then fails.
		h.prober.setVerdict(func(name string, n int) error {
			if strings.Contains(name, "-green-") && n > 2 {
				return errNope
			}
			return nil
		})

		d := h.deploy("v2")

		if d.Status != controller.StatusRolledBack {
			t.Fatalf("status = %s (%q), want rolled_back", d.Status, d.Error)
		}
		if missing := containsAll(d.Error, "bake", "consecutive failed", "500"); len(missing) > 0 {
			t.Errorf("error = %q, missing %q", d.Error, missing)
		}
		want := []string{"pull=succeeded", "cleanup=succeeded", "backup=skipped", "pre_deploy=skipped", "start=succeeded",
			"health=succeeded", "switch=succeeded", "bake=failed"}
		if got := stepStatuses(d); !slices.Equal(got, want) {
			t.Errorf("steps = %v, want %v", got, want)
		}
		if s, _ := findStep(d, controller.StepBake); !strings.Contains(s.Message, "traffic moved back to blue") {
			t.Errorf("bake step message = %q, want it to say traffic moved back", s.Message)
		}
		wantSwitchedBack(t, h, blue, v1)
		rolled := h.notes.ofKind(controller.NotifyRolledBack)
		if len(rolled) != 1 || rolled[0].Actor != "bake" || rolled[0].Deployment != d.ID {
			t.Errorf("rolled_back notifications = %+v, want one by bake for %s", rolled, d.ID)
		}
		if got, want := h.obs.switches(), []controller.Kind{controller.KindDeploy, controller.KindDeploy, controller.KindRollback}; !slices.Equal(got, want) {
			t.Errorf("observed switches = %v, want %v", got, want)
		}
		if st, _ := h.obs.lastState(); st.Active != controller.Blue || st.StandbyAvailable {
			t.Errorf("observed state = %+v, want blue without standby", st)
		}
	})
}

func TestBake_ExitedContainerSwitchesBackAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withBake(time.Minute))
		v1 := h.deployOK("v1")
		blue := h.colorContainers(controller.Blue)
		// Green's second replica crashes right after its health check (two
		// inspections).
		h.rt.set(func(rt *fakeRuntime) {
			rt.onInspect = func(ct *controller.Container, n int) {
				if byReplica(ct.Name) == "web-green-2" && n >= 3 {
					ct.State, ct.ExitCode = "exited", 137
				}
			}
		})
		start := time.Now()

		d := h.deploy("v2")

		if d.Status != controller.StatusRolledBack {
			t.Fatalf("status = %s (%q), want rolled_back", d.Status, d.Error)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("deploy took %s, want the crash to end the bake at once", took)
		}
		if missing := containsAll(byReplica(d.Error), "web-green-2", "exited", "137"); len(missing) > 0 {
			t.Errorf("error = %q, missing %q", d.Error, missing)
		}
		wantSwitchedBack(t, h, blue, v1)
	})
}

func TestBake_RestartedContainerReportsTheExitCodeOfItsDeath(t *testing.T) {
	tests := []struct {
		name       string
		deathCodes map[string]int
		want       string
	}{
		{"death on record", map[string]int{"web-green-2": 2}, "container web-green-2 restarted (exit code 2, 1 restart(s)) during bake"},
		// Never the new process's 0: that would name a death that did
		// not happen.
		{"death forgotten", nil, "container web-green-2 restarted (exit code unknown, 1 restart(s)) during bake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, withBake(time.Minute))
				v1 := h.deployOK("v1")
				blue := h.colorContainers(controller.Blue)
				// Green's second replica dies after its health check and its
				// restart policy starts it again: running, exit code 0.
				h.rt.set(func(rt *fakeRuntime) {
					rt.deathCodes = tt.deathCodes
					rt.onInspect = func(ct *controller.Container, n int) {
						if byReplica(ct.Name) == "web-green-2" && n >= 3 {
							ct.Restarts = 1
						}
					}
				})

				d := h.deploy("v2")

				if d.Status != controller.StatusRolledBack {
					t.Fatalf("status = %s (%q), want rolled_back", d.Status, d.Error)
				}
				if !strings.Contains(byReplica(d.Error), tt.want) {
					t.Errorf("error = %q, want it to contain %q", d.Error, tt.want)
				}
				wantSwitchedBack(t, h, blue, v1)
			})
		})
	}
}

func TestBake_HealthyColorGoesOnToDrainAndStandby(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withBake(30*time.Millisecond))
		h.deployOK("v1")
		d := h.deployOK("v2")

		want := []string{"pull", "cleanup", "backup", "pre_deploy", "start", "health", "switch", "bake", "retire", "drain", "standby"}
		if got := stepNames(d); !slices.Equal(got, want) {
			t.Errorf("steps = %v, want %v", got, want)
		}
		if s, _ := findStep(d, controller.StepBake); s.Status != controller.StepSucceeded || !strings.Contains(s.Message, "healthy for") {
			t.Errorf("bake step = %s %q, want succeeded, healthy for the bake time", s.Status, s.Message)
		}
		st := h.store.service(svc)
		if st.ActiveColor != controller.Green || st.StandbyColor != controller.Blue || st.StandbyImage != "demoapp:v1" {
			t.Errorf("state = %+v, want green active, blue v1 standby", st)
		}
		if got := h.router.current(svc); !slices.Equal(got, addrsOf(h.colorContainers(controller.Green))) {
			t.Errorf("upstream = %v, want green", got)
		}
	})
}

func TestBake_OneFailedRoundBelowThresholdIsForgiven(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withBake(60*time.Millisecond)) // threshold 2
		h.deployOK("v1")
		h.prober.setVerdict(func(name string, n int) error {
			if strings.Contains(name, "-green-") && n == 3 {
				return errNope
			}
			return nil
		})
		d := h.deployOK("v2")
		if s, _ := findStep(d, controller.StepBake); s.Status != controller.StepSucceeded {
			t.Errorf("bake step = %s %q, want succeeded", s.Status, s.Message)
		}
	})
}

func TestBake_FirstDeploySkipsBake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withBake(time.Minute))
		d := h.deployOK("v1")
		if s, ok := findStep(d, controller.StepBake); !ok || s.Status != controller.StepSkipped {
			t.Errorf("bake step = %+v (found %v), want skipped: nothing to switch back to", s, ok)
		}
	})
}

func TestBake_ShutdownCutsBakeShortAndKeepsTheNewColor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withBake(time.Minute))
		h.deployOK("v1")
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		eventually(t, "bake to start", h.runningStep(d.ID, controller.StepBake))
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		if err := h.c.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}

		d, err = h.store.GetDeployment(ctx, d.ID)
		if err != nil {
			t.Fatalf("GetDeployment: %v", err)
		}
		if d.Status != controller.StatusSucceeded {
			t.Fatalf("status = %s (%q), want succeeded", d.Status, d.Error)
		}
		if s, _ := findStep(d, controller.StepBake); s.Status != controller.StepSucceeded || !strings.Contains(s.Message, "cut short") {
			t.Errorf("bake step = %s %q, want succeeded and cut short", s.Status, s.Message)
		}
		if st := h.store.service(svc); st.ActiveColor != controller.Green || st.StandbyColor != controller.Blue {
			t.Errorf("state = %+v, want green active with blue standby", st)
		}
		if s, ok := findStep(d, controller.StepStandby); !ok || s.Status != controller.StepSucceeded {
			t.Errorf("standby step = %+v, want succeeded", s)
		}
	})
}

func TestBake_CancelIsRefusedDuringBake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withBake(time.Minute))
		h.deployOK("v1")
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		eventually(t, "bake to start", h.runningStep(d.ID, controller.StepBake))
		if _, err := h.c.Cancel(h.ctx(), d.ID); controller.ErrorCode(err) != controller.ECONFLICT {
			t.Errorf("Cancel during bake = %v, want %s", err, controller.ECONFLICT)
		}
	})
}

func TestBake_FailedSwitchBackLeavesTrafficOnNewColor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withBake(5*time.Second))
		h.deployOK("v1")
		blueAddrs := addrsOf(h.colorContainers(controller.Blue))
		h.prober.setVerdict(func(name string, n int) error {
			if strings.Contains(name, "-green-") && n > 2 {
				return errNope
			}
			return nil
		})
		h.router.setFail(func(service string, addrs []string) error {
			if slices.Equal(addrs, blueAddrs) {
				return errNope
			}
			return nil
		})

		d := h.deploy("v2")

		if d.Status != controller.StatusFailed {
			t.Fatalf("status = %s (%q), want failed", d.Status, d.Error)
		}
		if missing := containsAll(d.Error, "bake", "traffic stays on green", "switch back"); len(missing) > 0 {
			t.Errorf("error = %q, missing %q", d.Error, missing)
		}
		green := h.colorContainers(controller.Green)
		if len(green) != h.spec.Replicas {
			t.Fatalf("green containers = %v, want %d kept: they serve traffic", namesOf(green), h.spec.Replicas)
		}
		if got := h.router.current(svc); !slices.Equal(got, addrsOf(green)) {
			t.Errorf("upstream = %v, want green %v", got, addrsOf(green))
		}
		if st := h.store.service(svc); st.ActiveColor != controller.Green || st.StandbyColor != controller.Blue {
			t.Errorf("state = %+v, want green active with blue standby, as nginx says", st)
		}
	})
}
