package controller_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func TestDeploy_FirstDeployGoesBlueAndSwitches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		envFile := filepath.Join(t.TempDir(), "web.env")
		content := "# secrets\nSHARED=from-file\nDB_URL=\"postgres://db/web\"\nexport FROM_EXPORT=yes\n"
		if err := os.WriteFile(envFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, func(s *controller.ServiceSpec) {
			s.Replicas = 3
			s.EnvFile = envFile
			s.Env = map[string]string{"APP_MODE": "production", "SHARED": "from-config"}
		})

		d := h.deployOK("v1")

		if d.Image != "demoapp:v1" || d.FromColor != controller.NoColor || d.ToColor != controller.Blue || d.Kind != controller.KindDeploy {
			t.Errorf("deployment image/from/to/kind = %q/%q/%q/%q, want demoapp:v1/\"\"/blue/deploy", d.Image, d.FromColor, d.ToColor, d.Kind)
		}
		if d.Error != "" || d.FinishedAt == nil {
			t.Errorf("error = %q, finished_at = %v; want no error and a finish time", d.Error, d.FinishedAt)
		}
		wantSteps := []string{"pull=succeeded", "cleanup=succeeded", "backup=skipped", "pre_deploy=skipped", "start=succeeded", "health=succeeded", "switch=succeeded"}
		if got := stepStatuses(d); !slices.Equal(got, wantSteps) {
			t.Errorf("steps = %v, want %v", got, wantSteps)
		}
		for _, s := range d.Steps {
			if s.FinishedAt == nil || s.Message == "" {
				t.Errorf("step %s finished_at = %v, message = %q; want both set", s.Name, s.FinishedAt, s.Message)
			}
		}

		cs := h.rt.list(svc)
		if got, want := namesOf(cs), replicaNames(controller.Blue, d.ID, 3); !slices.Equal(got, want) {
			t.Fatalf("containers = %v, want %v", got, want)
		}
		// The runtime adds DEPLOYD_* itself; the controller passes the env
		// file overlaid with the configured env, sorted.
		wantEnv := []string{"APP_MODE=production", "DB_URL=postgres://db/web", "FROM_EXPORT=yes", "SHARED=from-config"}
		for _, c := range cs {
			if c.Service != svc || c.Color != controller.Blue || c.Deployment != d.ID || c.Image != "demoapp:v1" || !c.Running() {
				t.Errorf("container %s service/color/deployment/image/state = %s/%s/%s/%s/%s, want %s/blue/%s/demoapp:v1/running",
					c.Name, c.Service, c.Color, c.Deployment, c.Image, c.State, svc, d.ID)
			}
			spec := h.rt.spec(c.ID)
			if spec.Port != 8000 || spec.Network != "deployd" || spec.RestartPolicy != "unless-stopped" {
				t.Errorf("container %s port/network/restart = %d/%s/%s, want 8000/deployd/unless-stopped", c.Name, spec.Port, spec.Network, spec.RestartPolicy)
			}
			if !slices.Equal(spec.Env, wantEnv) {
				t.Errorf("container %s env = %v, want %v", c.Name, spec.Env, wantEnv)
			}
			if got := h.prober.count(c.Name); got < h.spec.Health.HealthyThreshold {
				t.Errorf("container %s probed %d time(s), want at least the healthy threshold %d", c.Name, got, h.spec.Health.HealthyThreshold)
			}
		}

		if got, want := h.router.current(svc), addrsOf(cs); !slices.Equal(got, want) {
			t.Errorf("upstream = %v, want %v", got, want)
		}
		want := controller.ServiceState{Name: svc, ActiveColor: controller.Blue, ActiveImage: "demoapp:v1", ActiveDeployment: d.ID}
		got := h.store.service(svc)
		got.UpdatedAt = time.Time{}
		if s := diff(got, want); s != "" {
			t.Errorf("service state:%s", s)
		}
		if n := h.rt.countCalls("StopContainer"); n != 0 {
			t.Errorf("StopContainer called %d time(s) on a first deploy, want 0", n)
		}
	})
}

func TestDeploy_SecondDeployKeepsOldColorAsWarmStandby(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.deployOK("v1")
		blue := h.colorContainers(controller.Blue)

		d := h.deployOK("v2")

		if d.FromColor != controller.Blue || d.ToColor != controller.Green {
			t.Errorf("from/to = %s/%s, want blue/green", d.FromColor, d.ToColor)
		}
		wantSteps := []string{"pull", "cleanup", "backup", "pre_deploy", "start", "health", "switch", "retire", "drain", "standby"}
		if got := stepNames(d); !slices.Equal(got, wantSteps) {
			t.Errorf("steps = %v, want %v", got, wantSteps)
		}
		if s := diff(h.colorContainers(controller.Blue), blue); s != "" {
			t.Errorf("blue containers changed, want them kept running untouched:%s", s)
		}
		green := h.colorContainers(controller.Green)
		if got, want := namesOf(green), replicaNames(controller.Green, d.ID, 2); !slices.Equal(got, want) {
			t.Fatalf("green containers = %v, want %v", got, want)
		}
		if got, want := h.router.current(svc), addrsOf(green); !slices.Equal(got, want) {
			t.Errorf("upstream = %v, want green %v", got, want)
		}
		st := h.store.service(svc)
		if st.ActiveColor != controller.Green || st.ActiveImage != "demoapp:v2" || st.StandbyColor != controller.Blue || st.StandbyImage != "demoapp:v1" {
			t.Errorf("state active/standby = %s %s / %s %s, want green demoapp:v2 / blue demoapp:v1",
				st.ActiveColor, st.ActiveImage, st.StandbyColor, st.StandbyImage)
		}
		if n := h.rt.countCalls("StopContainer"); n != 0 {
			t.Errorf("StopContainer called %d time(s), want 0 with a warm standby", n)
		}
	})
}

func TestDeploy_SecondDeployKeepsOldColorAsStoppedStandby(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Standby = controller.StandbyStopped })
		h.deployOK("v1")
		blue := h.colorContainers(controller.Blue)

		d := h.deployOK("v2")

		standby, ok := findStep(d, controller.StepStandby)
		if !ok || standby.Status != controller.StepSucceeded {
			t.Fatalf("standby step = %+v (found %v), want succeeded", standby, ok)
		}
		after := h.colorContainers(controller.Blue)
		if got, want := namesOf(after), namesOf(blue); !slices.Equal(got, want) {
			t.Fatalf("blue containers = %v, want the same %v kept (stopped, not removed)", got, want)
		}
		for i, c := range after {
			if c.ID != blue[i].ID || c.State != "exited" {
				t.Errorf("blue container %s id/state = %s/%s, want %s/exited", c.Name, c.ID, c.State, blue[i].ID)
			}
		}
		if got := h.rt.countCalls("StopContainer"); got != len(blue) {
			t.Errorf("StopContainer calls = %d, want %d", got, len(blue))
		}
		if got, want := h.router.current(svc), addrsOf(h.colorContainers(controller.Green)); !slices.Equal(got, want) {
			t.Errorf("upstream = %v, want green %v", got, want)
		}
	})
}

func TestDeploy_ThirdDeployReplacesTheStandbyColor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.deployOK("v1")
		oldBlue := h.colorContainers(controller.Blue)
		h.deployOK("v2")

		d := h.deployOK("v3")

		if d.ToColor != controller.Blue {
			t.Fatalf("to color = %s, want blue", d.ToColor)
		}
		blue := h.colorContainers(controller.Blue)
		for _, c := range blue {
			if c.Image != "demoapp:v3" || c.Deployment != d.ID {
				t.Errorf("blue container %s image/deployment = %s/%s, want demoapp:v3/%s", c.Name, c.Image, c.Deployment, d.ID)
			}
		}
		for _, old := range oldBlue {
			if !slices.Contains(h.rt.callLog(), "RemoveContainer "+old.ID) {
				t.Errorf("old blue container %s was not removed by the cleanup step", old.Name)
			}
		}
		st := h.store.service(svc)
		if st.ActiveColor != controller.Blue || st.ActiveImage != "demoapp:v3" || st.StandbyColor != controller.Green || st.StandbyImage != "demoapp:v2" {
			t.Errorf("state active/standby = %s %s / %s %s, want blue demoapp:v3 / green demoapp:v2",
				st.ActiveColor, st.ActiveImage, st.StandbyColor, st.StandbyImage)
		}
	})
}

// The limits are the service's, and a migration runs the same untrusted
// image as the app: it must not escape them.
func TestDeploy_LimitsReachEveryContainerAndTheOneOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limits := controller.ContainerLimits{
			Memory: 256 << 20, NanoCPUs: 500_000_000, PidsLimit: 128,
			CapDrop: []string{"ALL"}, CapAdd: []string{"NET_BIND_SERVICE"},
			NoNewPrivileges: true, ReadOnly: true, User: "65534:65534",
		}
		h := newHarness(t, func(s *controller.ServiceSpec) {
			s.Replicas = 2
			s.Limits = limits
			s.PreDeploy = controller.PreDeploySpec{Command: []string{"manage", "migrate"}, Timeout: time.Second}
		})
		h.deployOK("v1")

		h.rt.mu.Lock()
		defer h.rt.mu.Unlock()
		if len(h.rt.oneOffs) != 1 || !reflect.DeepEqual(h.rt.oneOffs[0].Limits, limits) {
			t.Errorf("one-off specs = %+v, want one with limits %+v", h.rt.oneOffs, limits)
		}
		n := 0
		for _, c := range h.rt.containers {
			n++
			if !reflect.DeepEqual(c.Spec.Limits, limits) {
				t.Errorf("container %s limits = %+v, want %+v", c.Name, c.Spec.Limits, limits)
			}
		}
		if n != 2 {
			t.Errorf("containers = %d, want 2", n)
		}
	})
}

func TestDeploy_PreDeployRunsInNewImageBeforeAnyReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) {
			s.PreDeploy = controller.PreDeploySpec{Command: []string{"manage", "migrate"}, Timeout: time.Second}
		})

		d := h.deployOK("v1")

		pd, _ := findStep(d, controller.StepPreDeploy)
		if pd.Status != controller.StepSucceeded || pd.Output != "ok\n" {
			t.Errorf("pre_deploy status/output = %s/%q, want succeeded/%q", pd.Status, pd.Output, "ok\n")
		}
		h.rt.mu.Lock()
		oneOffs := slices.Clone(h.rt.oneOffs)
		h.rt.mu.Unlock()
		if len(oneOffs) != 1 {
			t.Fatalf("one-off runs = %d, want 1", len(oneOffs))
		}
		o := oneOffs[0]
		if o.Image != "demoapp:v1" || o.Service != svc || o.Deployment != d.ID || o.Network != "deployd" ||
			!slices.Equal(o.Command, []string{"manage", "migrate"}) || !slices.Equal(o.Env, []string{"APP_MODE=production"}) {
			t.Errorf("one-off spec = %+v, want image demoapp:v1, deployment %s, command [manage migrate], env [APP_MODE=production]", o, d.ID)
		}
		calls := h.rt.callLog()
		iOne := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "RunOneOff") })
		iStart := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "StartContainer") })
		if iOne < 0 || iStart < 0 || iOne > iStart {
			t.Errorf("call log = %v, want RunOneOff before the first StartContainer", calls)
		}
	})
}

// Every failure before the switch must leave what serves traffic exactly
// as it was and remove what the failed deploy created.
func TestDeploy_FailureLeavesActiveColorAndTrafficUntouched(t *testing.T) {
	isGreen := func(name string) bool { return strings.HasPrefix(name, "web-green-") }
	tests := []struct {
		name   string
		mutate func(*controller.ServiceSpec)
		// setup runs after the first (successful) deploy of v1 to blue.
		setup          func(h *harness)
		image          string
		wantErr        []string
		wantFailedStep string
		// maxTook, when set, bounds how long the deploy may take.
		maxTook time.Duration
		check   func(t *testing.T, h *harness, d controller.Deployment)
	}{
		{
			name:           "missing image",
			image:          "v9",
			wantErr:        []string{"pull", "demoapp:v9", "not found"},
			wantFailedStep: controller.StepPull,
			check: func(t *testing.T, h *harness, d controller.Deployment) {
				if n := h.rt.countCalls("StartContainer"); n != 2 {
					t.Errorf("StartContainer calls = %d, want only the 2 of the first deploy", n)
				}
			},
		},
		{
			name: "pre-deploy exits non-zero",
			mutate: func(s *controller.ServiceSpec) {
				s.PreDeploy = controller.PreDeploySpec{Command: []string{"manage", "migrate"}, Timeout: time.Second}
			},
			setup: func(h *harness) {
				h.rt.set(func(rt *fakeRuntime) {
					rt.oneOff = func(context.Context, controller.OneOffSpec) (controller.OneOffResult, error) {
						return controller.OneOffResult{ExitCode: 3, Output: "Applying 0042_users...\nrelation \"users\" does not exist\n"}, nil
					}
				})
			},
			image:          "v2",
			wantErr:        []string{"pre_deploy", `"manage migrate"`, "exited with code 3"},
			wantFailedStep: controller.StepPreDeploy,
			check: func(t *testing.T, h *harness, d controller.Deployment) {
				s, _ := findStep(d, controller.StepPreDeploy)
				if want := "Applying 0042_users...\nrelation \"users\" does not exist\n"; s.Output != want {
					t.Errorf("pre_deploy output = %q, want %q", s.Output, want)
				}
				if n := h.rt.countCalls("StartContainer"); n != 2 {
					t.Errorf("StartContainer calls = %d, want only the 2 of the first deploy", n)
				}
			},
		},
		{
			name: "pre-deploy times out",
			mutate: func(s *controller.ServiceSpec) {
				s.PreDeploy = controller.PreDeploySpec{Command: []string{"manage", "migrate"}, Timeout: 30 * time.Millisecond}
			},
			setup: func(h *harness) {
				h.rt.set(func(rt *fakeRuntime) {
					rt.oneOff = func(ctx context.Context, _ controller.OneOffSpec) (controller.OneOffResult, error) {
						<-ctx.Done()
						return controller.OneOffResult{ExitCode: -1, Output: "Applying 0043_big_index..."}, ctx.Err()
					}
				})
			},
			image:          "v2",
			wantErr:        []string{"pre_deploy", "timed out after 30ms"},
			wantFailedStep: controller.StepPreDeploy,
			maxTook:        time.Second,
			check: func(t *testing.T, h *harness, d controller.Deployment) {
				if s, _ := findStep(d, controller.StepPreDeploy); s.Output != "" {
					t.Errorf("pre_deploy output = %q, want none: the runtime returns none for a killed command", s.Output)
				}
			},
		},
		{
			// A cluster's task that never runs (its HEALTHCHECK never
			// passes, no node pulls its image) ends the start at
			// start_timeout (1s here).
			name:           "second replica never runs",
			setup:          func(h *harness) { h.rt.hangStartAt(2) },
			image:          "v2",
			wantErr:        []string{"start", "not started within start_timeout 1s", "web-green-2", "task still starting"},
			wantFailedStep: controller.StepStart,
			maxTook:        2 * time.Second,
		},
		{
			name:           "second replica fails to start",
			setup:          func(h *harness) { h.rt.failStartAt(2) },
			image:          "v2",
			wantErr:        []string{"start", "web-green-2", "port is already allocated"},
			wantFailedStep: controller.StepStart,
		},
		{
			name:   "health never OK",
			mutate: func(s *controller.ServiceSpec) { s.Health.StartTimeout = 150 * time.Millisecond },
			setup: func(h *harness) {
				h.prober.failUntil("web-green-", errors.New("GET /health: status 503, want 2xx"), nil)
			},
			image:          "v2",
			wantErr:        []string{"health", "not healthy within 150ms", "web-green-1: GET /health: status 503, want 2xx", "web-green-2:"},
			wantFailedStep: controller.StepHealth,
			maxTook:        time.Second,
		},
		{
			name:   "container exits during health fails fast",
			mutate: func(s *controller.ServiceSpec) { s.Health.StartTimeout = 5 * time.Second },
			setup: func(h *harness) {
				h.prober.failUntil("web-green-", errors.New("connection refused"), nil)
				h.rt.set(func(rt *fakeRuntime) {
					rt.onInspect = func(c *controller.Container, n int) {
						if byReplica(c.Name) == "web-green-2" && n >= 2 {
							c.State, c.ExitCode, c.Address = "exited", 1, ""
						}
					}
				})
			},
			image:          "v2",
			wantErr:        []string{"health", "container web-green-2 exited (exit code 1"},
			wantFailedStep: controller.StepHealth,
			maxTook:        time.Second,
		},
		{
			name:   "container restarts during health fails fast",
			mutate: func(s *controller.ServiceSpec) { s.Health.StartTimeout = 5 * time.Second },
			setup: func(h *harness) {
				h.prober.failUntil("web-green-", errors.New("connection refused"), nil)
				h.rt.set(func(rt *fakeRuntime) {
					rt.deathCodes = map[string]int{"web-green-1": 2}
					rt.onInspect = func(c *controller.Container, n int) {
						if byReplica(c.Name) == "web-green-1" && n == 3 {
							c.Restarts = 1
						}
					}
				})
			},
			image: "v2",
			// The exit code is the death's, not the running new process's 0.
			wantErr:        []string{"health", "container web-green-1 restarted (exit code 2, 1 restart(s))"},
			wantFailedStep: controller.StepHealth,
			maxTook:        time.Second,
		},
		{
			name: "router switch fails",
			setup: func(h *harness) {
				h.router.setFail(func(_ string, addrs []string) error {
					if len(addrs) > 0 && isGreen(h.rt.nameAt(addrs[0])) {
						return errors.New("nginx -t: host not found in upstream")
					}
					return nil
				})
			},
			image:          "v2",
			wantErr:        []string{"switch", "nginx -t: host not found in upstream"},
			wantFailedStep: controller.StepSwitch,
		},
		{
			name:           "state cannot be recorded after the switch",
			setup:          func(h *harness) { h.store.set(func(s *memStore) { s.saveSwitchErr = errors.New("disk full") }) },
			image:          "v2",
			wantErr:        []string{"switch", "record new state (traffic moved back)", "disk full"},
			wantFailedStep: controller.StepSwitch,
			check: func(t *testing.T, h *harness, d controller.Deployment) {
				sw := h.router.switches()
				if len(sw) < 2 {
					t.Fatalf("router switches = %+v, want the move to green and the move back", sw)
				}
				blue := addrsOf(h.colorContainers(controller.Blue))
				to, back := sw[len(sw)-2], sw[len(sw)-1]
				if to.Err != nil || len(to.Addrs) == 0 || slices.Equal(to.Addrs, blue) {
					t.Errorf("second to last switch = %+v, want a successful switch to the new containers", to)
				}
				if back.Err != nil || !slices.Equal(back.Addrs, blue) {
					t.Errorf("last switch = %+v, want a successful switch back to blue %v", back, blue)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mutate := []func(*controller.ServiceSpec){}
				if tt.mutate != nil {
					mutate = append(mutate, tt.mutate)
				}
				h := newHarness(t, mutate...)
				h.deployOK("v1")
				before := h.snapshot()
				if tt.setup != nil {
					tt.setup(h)
				}

				d := h.deploy(tt.image)

				if d.Status != controller.StatusFailed {
					t.Fatalf("status = %s (error %q), want failed", d.Status, d.Error)
				}
				if missing := containsAll(byReplica(d.Error), tt.wantErr...); len(missing) > 0 {
					t.Errorf("error = %q, want it to contain %q", d.Error, missing)
				}
				if got, want := failedSteps(d), []string{tt.wantFailedStep}; !slices.Equal(got, want) {
					t.Errorf("failed steps = %v, want %v (steps %v)", got, want, stepStatuses(d))
				}
				if s := diff(h.snapshot(), before); s != "" {
					t.Errorf("active color, its containers or the upstream changed:%s", s)
				}
				if own := h.ownContainers(d.ID); len(own) > 0 {
					t.Errorf("containers of the failed deployment left behind: %v", namesOf(own))
				}
				if d.FinishedAt == nil {
					t.Fatalf("finished_at not set")
				}
				if took := d.FinishedAt.Sub(d.CreatedAt); tt.maxTook > 0 && took > tt.maxTook {
					t.Errorf("deploy took %s, want at most %s", took, tt.maxTook)
				}
				if tt.check != nil {
					tt.check(t, h, d)
				}

				// Nothing the failure left behind may stand in the way of the
				// next deploy.
				h.rt.set(func(rt *fakeRuntime) { rt.oneOff, rt.onInspect, rt.startFailAt = nil, nil, 0 })
				h.prober.setVerdict(nil)
				h.router.setFail(nil)
				h.store.set(func(s *memStore) { s.saveSwitchErr = nil })
				h.deployOK("v3")
			})
		})
	}
}

// A first deploy has no old color to move traffic back to: when its
// switch cannot be recorded, nginx must return to the placeholder rather
// than keep pointing at containers that are about to be removed.
func TestDeploy_FirstDeployUnrecordedSwitchReturnsToPlaceholder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		h.store.set(func(s *memStore) { s.saveSwitchErr = errors.New("disk full") })

		d := h.deploy("v1")

		if d.Status != controller.StatusFailed {
			t.Fatalf("status = %s, want failed", d.Status)
		}
		if got := h.router.current(svc); got != nil {
			t.Errorf("upstream = %v, want the placeholder (nil): its containers were removed", got)
		}
		if own := h.ownContainers(d.ID); len(own) > 0 {
			t.Errorf("containers of the failed deployment left behind: %v", namesOf(own))
		}
		if st := h.store.service(svc); st.ActiveColor != controller.NoColor {
			t.Errorf("active color = %q, want none", st.ActiveColor)
		}
	})
}

func TestDeploy_BadEnvFileFailsWithoutEchoingSecrets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		envFile := filepath.Join(t.TempDir(), "web.env")
		if err := os.WriteFile(envFile, []byte("API_KEY=s3cret-one\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, func(s *controller.ServiceSpec) { s.EnvFile = envFile })
		h.deployOK("v1")
		before := h.snapshot()
		if err := os.WriteFile(envFile, []byte("API_KEY=s3cret-one\nAPI KEY s3cret-two\n"), 0o600); err != nil {
			t.Fatal(err)
		}

		d := h.deploy("v2")

		if d.Status != controller.StatusFailed {
			t.Fatalf("status = %s, want failed", d.Status)
		}
		if missing := containsAll(d.Error, "env file", "line 2"); len(missing) > 0 {
			t.Errorf("error = %q, want it to contain %q", d.Error, missing)
		}
		if strings.Contains(d.Error, "s3cret") {
			t.Errorf("error = %q, want no value from the env file in it", d.Error)
		}
		for _, e := range h.logs.AllEntries() {
			if line, _ := e.String(); strings.Contains(line, "s3cret") {
				t.Errorf("log line %q contains a value from the env file", line)
			}
		}
		if s := diff(h.snapshot(), before); s != "" {
			t.Errorf("active color, its containers or the upstream changed:%s", s)
		}
	})
}

func TestDeploy_BusyServiceConflicts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		release := make(chan struct{})
		h.prober.failUntil("", errors.New("still booting"), release)
		first, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v1"})
		if err != nil {
			t.Fatalf("first Deploy: %v", err)
		}
		eventually(t, "first deploy in its health step", h.runningStep(first.ID, controller.StepHealth))

		for _, try := range []struct {
			name string
			call func() error
		}{
			{"deploy", func() error {
				_, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2"})
				return err
			}},
			{"rollback", func() error {
				_, err := h.c.Rollback(h.ctx(), svc, controller.RollbackRequest{Trigger: controller.Trigger{}})
				return err
			}},
		} {
			err := try.call()
			var e *controller.Error
			if !errors.As(err, &e) {
				t.Fatalf("%s while busy: err = %v, want a *controller.Error", try.name, err)
			}
			if e.Code != controller.ECONFLICT || e.DeploymentID != first.ID {
				t.Errorf("%s while busy: code/deployment = %s/%s, want %s/%s", try.name, e.Code, e.DeploymentID, controller.ECONFLICT, first.ID)
			}
		}

		close(release)
		if d := h.wait(first.ID); d.Status != controller.StatusSucceeded {
			t.Fatalf("first deploy status = %s (%s), want succeeded", d.Status, d.Error)
		}
		h.deployOK("v2")
	})
}

// The service is busy from the moment Deploy takes its lock, including
// while the queued record is being written; a concurrent request must
// then be told which deployment holds the service.
func TestDeploy_ConflictWhileRecordingNamesTheRunningDeployment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		entered := make(chan controller.Deployment, 1)
		release := make(chan struct{})
		h.store.set(func(s *memStore) {
			s.onPut = func(d controller.Deployment) {
				if d.Status == controller.StatusQueued {
					select {
					case entered <- d:
						<-release
					default:
					}
				}
			}
		})
		type result struct {
			d   controller.Deployment
			err error
		}
		firstDone := make(chan result, 1)
		go func() {
			d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v1"})
			firstDone <- result{d, err}
		}()
		var queued controller.Deployment
		select {
		case queued = <-entered:
		case <-time.After(testDeadline):
			t.Fatal("first deploy never recorded its queued state")
		}

		_, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2"})

		close(release)
		first := <-firstDone
		if first.err != nil {
			t.Fatalf("first Deploy: %v", first.err)
		}
		h.wait(first.d.ID)
		var e *controller.Error
		if !errors.As(err, &e) || e.Code != controller.ECONFLICT {
			t.Fatalf("second Deploy err = %v, want a conflict", err)
		}
		if e.DeploymentID != queued.ID {
			t.Errorf("conflict deployment id = %q, want %q (the deployment being recorded)", e.DeploymentID, queued.ID)
		}
	})
}

func TestDeploy_ErrorsForBadRequests(t *testing.T) {
	h := newHarness(t, func(s *controller.ServiceSpec) { s.AllowedTags = `v[0-9]+(\.[0-9]+)*` })
	tests := []struct {
		name     string
		service  string
		image    string
		wantCode string
	}{
		{"unknown service", "nope", "v1", controller.ENOTFOUND},
		{"invalid image", svc, "v1;rm -rf", controller.EINVALID},
		{"other repository", svc, "other:v1", controller.EFORBIDDEN},
		{"bare repository name", svc, "demoapp", controller.EINVALID},
		{"tag outside allowed_tags", svc, "latest", controller.EINVALID},
		{"full reference with a tag outside allowed_tags", svc, "demoapp:main", controller.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.c.Deploy(h.ctx(), tt.service, controller.DeployRequest{Image: tt.image})
			if got := controller.ErrorCode(err); got != tt.wantCode {
				t.Errorf("error code = %q (err %v), want %q", got, err, tt.wantCode)
			}
		})
	}
	if ds, _ := h.store.ListDeployments(h.ctx(), "", 0); len(ds) != 0 {
		t.Errorf("deployments recorded for rejected requests: %d, want 0", len(ds))
	}
}

func TestClose_DuringHealthInterruptsAndRemovesNewContainers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Health.StartTimeout = time.Minute })
		h.deployOK("v1")
		before := h.snapshot()
		h.prober.failUntil("web-green-", errors.New("still booting"), nil)
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		eventually(t, "deploy in its health step", h.runningStep(d.ID, controller.StepHealth))

		start := time.Now()
		if err := h.c.Close(h.ctx()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("Close took %s, want it to cut the health wait short", took)
		}

		got := h.wait(d.ID)
		if got.Status != controller.StatusInterrupted {
			t.Errorf("status = %s (%q), want interrupted", got.Status, got.Error)
		}
		if !strings.Contains(got.Error, "health") {
			t.Errorf("error = %q, want it to name the health step", got.Error)
		}
		if notes := h.notes.ofKind(controller.NotifyDeployInterrupted); len(notes) != 1 || notes[0].Deployment != d.ID {
			t.Errorf("deploy_interrupted notifications = %+v, want one for %s", notes, d.ID)
		}
		if notes := h.notes.ofKind(controller.NotifyDeployFailed); len(notes) != 0 {
			t.Errorf("deploy_failed notifications = %+v, want none for an interrupted deployment", notes)
		}
		if own := h.ownContainers(d.ID); len(own) > 0 {
			t.Errorf("containers of the interrupted deployment left behind: %v", namesOf(own))
		}
		if s := diff(h.snapshot(), before); s != "" {
			t.Errorf("active color, its containers or the upstream changed:%s", s)
		}

		_, err = h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v3"})
		if got := controller.ErrorCode(err); got != controller.EUNAVAILABLE {
			t.Errorf("Deploy after Close: code = %q (err %v), want %q", got, err, controller.EUNAVAILABLE)
		}
		_, err = h.c.Rollback(h.ctx(), svc, controller.RollbackRequest{Trigger: controller.Trigger{}})
		if got := controller.ErrorCode(err); got != controller.EUNAVAILABLE {
			t.Errorf("Rollback after Close: code = %q (err %v), want %q", got, err, controller.EUNAVAILABLE)
		}
	})
}

// A chatty migration must not bloat the deployment record; the end of its
// output, where the error is, is what is kept.
func TestDeploy_PreDeployOutputKeepsOnlyTheTail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) {
			s.PreDeploy = controller.PreDeploySpec{Command: []string{"migrate"}, Timeout: time.Second}
		})
		long := strings.Repeat("x", 20<<10) + "FATAL: the real error"
		h.rt.set(func(rt *fakeRuntime) {
			rt.oneOff = func(context.Context, controller.OneOffSpec) (controller.OneOffResult, error) {
				return controller.OneOffResult{ExitCode: 1, Output: long}, nil
			}
		})

		d := h.deploy("v1")

		s, _ := findStep(d, controller.StepPreDeploy)
		if len(s.Output) != 16<<10 || !strings.HasSuffix(s.Output, "FATAL: the real error") {
			t.Errorf("pre_deploy output is %d bytes ending %q, want the last %d bytes", len(s.Output), s.Output[max(0, len(s.Output)-30):], 16<<10)
		}
	})
}

// A client that sees a deployment's final status and asks for the next one
// at once must not be refused as busy while the first is still releasing
// the service.
func TestDeploy_NextDeployRightAfterTheFinalRecordIsAccepted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		type result struct {
			d   controller.Deployment
			err error
		}
		next := make(chan result, 1)
		var once sync.Once
		h.store.set(func(s *memStore) {
			s.onPut = func(d controller.Deployment) {
				if d.Image != "demoapp:v1" || d.Status != controller.StatusSucceeded {
					return
				}
				// The final record is being written and the service not yet
				// released: exactly the moment such a client would ask.
				once.Do(func() {
					go func() {
						d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v2"})
						next <- result{d, err}
					}()
					// Hold the final write until the request has been answered
					// (refused while the service is still held) or has waited a
					// while, which is what it should do until the release.
					select {
					case r := <-next:
						next <- r
					case <-time.After(200 * time.Millisecond):
					}
				})
			}
		})
		h.deployOK("v1")
		r := <-next
		if r.err != nil {
			t.Fatalf("Deploy right after the previous one ended: %v, want it accepted", r.err)
		}
		if d := h.wait(r.d.ID); d.Status != controller.StatusSucceeded {
			t.Fatalf("second deploy: status = %s (%q), want succeeded", d.Status, d.Error)
		}
	})
}

func TestDeploy_RouterIsToldTheColorAndDrainsTheOldOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Drain = 3 * time.Second })
		h.deployOK("v1")
		d := h.deployOK("v2")

		sw := h.router.switches()
		if last := sw[len(sw)-1]; last.Color != controller.Green {
			t.Errorf("last switch color = %q, want green", last.Color)
		}
		step, _ := findStep(d, controller.StepDrain)
		if want := "waited 3s for in-flight requests on blue"; step.Message != want {
			t.Errorf("drain message = %q, want %q (the router's)", step.Message, want)
		}
	})
}
