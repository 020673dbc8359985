package controller_test

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/pkg/controller"
)

const svc = "web"

// Tests that build a harness run inside synctest.Test: the controller's
// timers (health intervals, timeouts, bake rounds, drains) then run on the
// bubble's fake clock, which moves only when every goroutine of the test
// waits. Their outcome does not depend on how loaded the machine is, and
// no test waits in real time. The few that share one harness across
// subtests (t.Run is not allowed in a bubble) run on real time; they race
// no timer against another.

// testDeadline bounds every wait in this package's tests. In a bubble it
// is fake time: a test that hangs fails at once.
const testDeadline = 5 * time.Second

// baseSpec is a two-replica service with intervals small enough that a
// healthy deploy takes milliseconds.
func baseSpec() controller.ServiceSpec {
	return controller.ServiceSpec{
		Name:          svc,
		Image:         "demoapp",
		Replicas:      2,
		Port:          8000,
		Env:           map[string]string{"APP_MODE": "production"},
		Network:       "deployd",
		RestartPolicy: "unless-stopped",
		Pull:          controller.PullMissing,
		Health: controller.HealthSpec{
			Path:             "/health",
			Interval:         5 * time.Millisecond,
			Timeout:          100 * time.Millisecond,
			HealthyThreshold: 2,
			StartTimeout:     time.Second,
		},
		Standby: controller.StandbyRunning,
	}
}

// harness is a Controller wired to fresh fakes.
type harness struct {
	t      *testing.T
	spec   controller.ServiceSpec
	rt     *fakeRuntime
	router *fakeRouter
	prober *fakeProber
	store  *memStore
	logs   *test.Hook
	logger *logrus.Logger
	notes  *fakeNotifier
	obs    *fakeObserver
	hooks  *fakeHook
	c      *controller.Controller
}

// testWatch is the watchdog configuration tests run with: bake rounds a
// few milliseconds apart.
var testWatch = controller.WatchSpec{UnhealthyThreshold: 2, Interval: 5 * time.Millisecond}

// newHarness builds a Controller for baseSpec changed by mutate. Start is
// not called, so tests may seed the fakes first. The images demoapp:v1..v3
// exist.
func newHarness(t *testing.T, mutate ...func(*controller.ServiceSpec)) *harness {
	t.Helper()
	return newHarnessWith(t, nil, mutate...)
}

// newHarnessWith is newHarness with a chance to change the Options (the
// Watch spec, say) before the Controller is built.
func newHarnessWith(t *testing.T, opts func(*controller.Options), mutate ...func(*controller.ServiceSpec)) *harness {
	t.Helper()
	spec := baseSpec()
	for _, m := range mutate {
		m(&spec)
	}
	rt := newFakeRuntime("demoapp:v1", "demoapp:v2", "demoapp:v3")
	logger, hook := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	h := &harness{
		t:      t,
		spec:   spec,
		rt:     rt,
		router: newFakeRouter(),
		prober: newFakeProber(rt),
		store:  newMemStore(),
		logs:   hook,
		logger: logger,
		notes:  &fakeNotifier{},
		obs:    newFakeObserver(),
		hooks:  &fakeHook{},
	}
	o := controller.Options{
		Services: []controller.ServiceSpec{spec},
		Runtime:  h.rt,
		Router:   h.router,
		Prober:   h.prober,
		Store:    h.store,
		Logger:   logger,
		Notifier: h.notes,
		Observer: h.obs,
		Hook:     h.hooks.hook,
		Watch:    testWatch,
	}
	if opts != nil {
		opts(&o)
	}
	h.c = controller.New(o)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		if err := h.c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	h.t.Cleanup(cancel)
	return ctx
}

// deploy starts a deploy of image and waits for it to end.
func (h *harness) deploy(image string) controller.Deployment {
	h.t.Helper()
	d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: image, Trigger: controller.Trigger{Source: "test"}})
	if err != nil {
		h.t.Fatalf("Deploy(%q): %v", image, err)
	}
	return h.wait(d.ID)
}

// rollback starts a rollback and waits for it to end.
func (h *harness) rollback() controller.Deployment {
	h.t.Helper()
	d, err := h.c.Rollback(h.ctx(), svc, controller.RollbackRequest{Trigger: controller.Trigger{Source: "test"}})
	if err != nil {
		h.t.Fatalf("Rollback: %v", err)
	}
	return h.wait(d.ID)
}

func (h *harness) wait(id string) controller.Deployment {
	h.t.Helper()
	d, err := h.c.Wait(h.ctx(), id)
	if err != nil {
		h.t.Fatalf("Wait(%s): %v", id, err)
	}
	if !d.Status.Done() {
		h.t.Fatalf("deployment %s status = %s after Wait, want a final status", id, d.Status)
	}
	return d
}

// deployOK deploys image and fails the test unless it succeeded.
func (h *harness) deployOK(image string) controller.Deployment {
	h.t.Helper()
	d := h.deploy(image)
	if d.Status != controller.StatusSucceeded {
		h.t.Fatalf("deploy %s: status = %s (error %q), want succeeded", image, d.Status, d.Error)
	}
	return d
}

// colorContainers returns the service's containers of color, sorted by name.
func (h *harness) colorContainers(color controller.Color) []controller.Container {
	var cs []controller.Container
	for _, c := range h.rt.list(svc) {
		if c.Color == color {
			cs = append(cs, c)
		}
	}
	return cs
}

// duringSwitch starts a deploy of image, holds it inside the router's
// Switch while fn runs, then lets it go on and waits for its end.
func (h *harness) duringSwitch(image string, fn func()) controller.Deployment {
	h.t.Helper()
	entered, release := make(chan struct{}), make(chan struct{})
	h.router.setBeforeSwitch(func(string) {
		close(entered)
		<-release
	})
	d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: image})
	if err != nil {
		h.t.Fatalf("Deploy(%q): %v", image, err)
	}
	<-entered
	fn()
	h.router.setBeforeSwitch(nil)
	close(release)
	return h.wait(d.ID)
}

// deploymentInName matches the deployment's part of a replica's name.
var deploymentInName = regexp.MustCompile(`-(blue|green)-[0-9a-f]{6}-([0-9]+)`)

// byReplica drops the deployments from the replica names in s
// ("web-green-3f2a1b-2" becomes "web-green-2"), for checks written before
// the deployment's id is known.
func byReplica(s string) string { return deploymentInName.ReplaceAllString(s, "-$1-$2") }

// byReplicas is byReplica of each of ss.
func byReplicas(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = byReplica(s)
	}
	return out
}

// replicaNames returns the names replicas 1..n of color get from
// deployment id.
func replicaNames(color controller.Color, id string, n int) []string {
	short := id[strings.LastIndexByte(id, '-')+1:]
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%s-%s-%d", svc, color, short, i+1)
	}
	return names
}

// activeSnapshot is everything a failed deploy must leave exactly as it
// found it: the stored state, the active color's and the standby's
// containers and where traffic goes.
type activeSnapshot struct {
	State     controller.ServiceState
	Active    []controller.Container
	Standby   []controller.Container
	Upstream  []string
	Placehold bool
}

func (h *harness) snapshot() activeSnapshot {
	st := h.store.service(svc)
	up := h.router.current(svc)
	snap := activeSnapshot{
		State:     st,
		Active:    h.colorContainers(st.ActiveColor),
		Upstream:  up,
		Placehold: up == nil,
	}
	if st.StandbyColor.Valid() {
		snap.Standby = h.colorContainers(st.StandbyColor)
	}
	return snap
}

// ownContainers returns the containers labelled with deployment id.
func (h *harness) ownContainers(id string) []controller.Container {
	var cs []controller.Container
	for _, c := range h.rt.list(svc) {
		if c.Deployment == id {
			cs = append(cs, c)
		}
	}
	return cs
}

func addrsOf(cs []controller.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Address)
	}
	return out
}

func namesOf(cs []controller.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func stepNames(d controller.Deployment) []string {
	var out []string
	for _, s := range d.Steps {
		out = append(out, s.Name)
	}
	return out
}

func stepStatuses(d controller.Deployment) []string {
	var out []string
	for _, s := range d.Steps {
		out = append(out, s.Name+"="+s.Status.String())
	}
	return out
}

func findStep(d controller.Deployment, name string) (controller.Step, bool) {
	for _, s := range d.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return controller.Step{}, false
}

// failedSteps names the steps recorded as failed.
func failedSteps(d controller.Deployment) []string {
	var out []string
	for _, s := range d.Steps {
		if s.Status == controller.StepFailed {
			out = append(out, s.Name)
		}
	}
	return out
}

// eventually polls cond until it holds or the test deadline passes. In a
// bubble, each sleep lets every other goroutine run until it waits.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// runningStep returns a condition that holds once deployment id records
// step as running.
func (h *harness) runningStep(id, step string) func() bool {
	return func() bool {
		d, err := h.store.GetDeployment(context.Background(), id)
		if err != nil {
			return false
		}
		n := len(d.Steps)
		return n > 0 && d.Steps[n-1].Name == step && d.Steps[n-1].Status == controller.StepRunning
	}
}

func diff(got, want any) string {
	if reflect.DeepEqual(got, want) {
		return ""
	}
	return fmt.Sprintf("\n got: %+v\nwant: %+v", got, want)
}

func containsAll(s string, subs ...string) []string {
	var missing []string
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			missing = append(missing, sub)
		}
	}
	return missing
}
