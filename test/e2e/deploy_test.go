package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

// loadResult counts a sequential client's answers.
type loadResult struct {
	ok, failed int
	firstErr   error
	versions   map[string]int
}

// runLoad sends sequential GETs through nginx until stop is closed.
func runLoad(e *env, stop <-chan struct{}) loadResult {
	res := loadResult{versions: map[string]int{}}
	for {
		select {
		case <-stop:
			return res
		default:
		}
		a, err := e.viaNginx()
		if err != nil {
			res.failed++
			if res.firstErr == nil {
				res.firstErr = err
			}
			continue
		}
		res.ok++
		res.versions[a.Version+"/"+a.Color]++
	}
}

// startLoad runs runLoad in a goroutine until the returned function is
// called (or the test ends), and returns its counts.
func startLoad(e *env) func() loadResult {
	stop := make(chan struct{})
	done := make(chan loadResult, 1)
	go func() { done <- runLoad(e, stop) }()
	var res loadResult
	finish := sync.OnceFunc(func() {
		close(stop)
		res = <-done
	})
	e.t.Cleanup(finish)
	return func() loadResult {
		finish()
		return res
	}
}

func TestDeploy_V1ThenV2MovesTrafficAndRollbackReturnsIt(t *testing.T) {
	t.Parallel()
	eachTrafficMode(t, testDeployV1ThenV2MovesTrafficAndRollbackReturnsIt)
}

func testDeployV1ThenV2MovesTrafficAndRollbackReturnsIt(t *testing.T, mode string) {
	e := newEnv(t, "v1", "v2")
	cfg := defaultSvc()
	cfg.Replicas = 2
	cfg.Traffic = mode
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))

	v1 := d.mustSucceed("v1")
	if v1.ToColor != controller.Blue {
		t.Fatalf("first deploy to_color = %q, want blue", v1.ToColor)
	}
	e.assertServes("v1", "blue")
	blue := e.assertRunning("blue", 2, v1.ID)
	e.assertUpstreamIs(blue)

	// Sequential requests through nginx for the whole v1 -> v2 deploy.
	stopLoad := startLoad(e)
	v2 := d.mustSucceed("v2")
	load := stopLoad()
	t.Logf("load during v1->v2: %d ok, %d failed, answers %v", load.ok, load.failed, load.versions)
	if load.failed != 0 {
		t.Errorf("requests failed during the switch: %d (first: %v), want 0", load.failed, load.firstErr)
	}

	e.assertServes("v2", "green")
	green := e.assertRunning("green", 2, v2.ID)
	e.assertRunning("blue", 2, v1.ID) // the warm standby
	e.assertUpstreamIs(green)

	sv := d.service()
	if sv.ActiveColor != controller.Green || !strings.HasSuffix(sv.ActiveImage, ":v2") {
		t.Fatalf("service active = %s %s, want green ...:v2", sv.ActiveColor, sv.ActiveImage)
	}
	if sv.StandbyColor != controller.Blue || !strings.HasSuffix(sv.StandbyImage, ":v1") {
		t.Fatalf("service standby = %s %s, want blue ...:v1", sv.StandbyColor, sv.StandbyImage)
	}

	// The same sequential load through the rollback.
	stopLoad = startLoad(e)
	start := time.Now()
	rb := d.rollback()
	rbDone := d.waitDeployment(rb.ID)
	took := time.Since(start)
	load = stopLoad()
	t.Logf("rollback to the warm standby took %s (API call to final status)", took.Round(time.Millisecond))
	t.Logf("load during rollback: %d ok, %d failed, answers %v", load.ok, load.failed, load.versions)
	if load.failed != 0 {
		t.Errorf("requests failed during the rollback: %d (first: %v), want 0", load.failed, load.firstErr)
	}
	if rbDone.Status != controller.StatusSucceeded {
		t.Fatalf("rollback status = %s (%s), want succeeded; steps %s", rbDone.Status, rbDone.Error, stepSummary(rbDone))
	}
	elapsedUnder(t, "rollback", took, 3*time.Second)
	e.assertServes("v1", "blue")
	e.assertUpstreamIs(blue)
	sv = d.service()
	if sv.ActiveColor != controller.Blue || sv.StandbyColor != controller.Green {
		t.Fatalf("after rollback active/standby = %s/%s, want blue/green", sv.ActiveColor, sv.StandbyColor)
	}
}

// activeV1 starts a daemon with cfg, deploys v1 and returns the daemon, the
// deployment and the upstream file's bytes.
func activeV1(e *env, cfg svcConfig) (*daemon, api.Deployment, []byte) {
	e.t.Helper()
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	v1 := d.mustSucceed("v1")
	e.assertServes("v1", "blue")
	return d, v1, e.upstream()
}

// assertUntouched checks that v1 on blue still serves from the same
// containers and the same upstream bytes, and that deployment dep left no
// containers behind.
func assertUntouched(e *env, v1 api.Deployment, upstream []byte, dep string) {
	e.t.Helper()
	e.assertServes("v1", "blue")
	e.assertRunning("blue", 1, v1.ID)
	if got := e.upstream(); !bytes.Equal(got, upstream) {
		e.t.Fatalf("upstream changed:\n%s\nwant:\n%s", got, upstream)
	}
	if left := e.ofDeployment(dep); len(left) != 0 {
		e.t.Fatalf("containers of deployment %s left: %v", dep, left)
	}
}

func TestDeploy_FailingHealthLeavesActiveColor(t *testing.T) {
	t.Parallel()
	eachTrafficMode(t, testDeployFailingHealthLeavesActiveColor)
}

func testDeployFailingHealthLeavesActiveColor(t *testing.T, mode string) {
	e := newEnv(t, "v1", "v2-fail")
	cfg := defaultSvc()
	cfg.StartTimeout = failFastStartTimeout
	cfg.Traffic = mode
	d, v1, upstream := activeV1(e, cfg)

	dep := d.waitDeployment(d.deploy("v2-fail").ID)
	if dep.Status != controller.StatusFailed {
		t.Fatalf("status = %s, want failed", dep.Status)
	}
	if s := lastStep(dep); s == nil || s.Name != controller.StepHealth || s.Status != controller.StepFailed {
		t.Fatalf("steps = %s, want the health step last and failed", stepSummary(dep))
	}
	if !strings.Contains(dep.Error, "health") || !strings.Contains(dep.Error, fmt.Sprintf("not healthy within %s", failFastStartTimeout)) {
		t.Fatalf("error = %q, want it to name the health check and its timeout", dep.Error)
	}
	assertUntouched(e, v1, upstream, dep.ID)
}

func TestDeploy_CrashAtStartFailsFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2-crash")
	cfg := defaultSvc()
	cfg.StartTimeout = 30 * time.Second
	cfg.Restart = "no"
	d, v1, upstream := activeV1(e, cfg)

	start := time.Now()
	dep := d.waitDeployment(d.deploy("v2-crash").ID)
	took := time.Since(start)
	t.Logf("crashing deploy failed after %s", took.Round(time.Millisecond))
	if dep.Status != controller.StatusFailed {
		t.Fatalf("status = %s, want failed", dep.Status)
	}
	elapsedUnder(t, "failing a crashing deploy", took, 5*time.Second)
	if name := e.replicaName("green", dep.ID, 1); !strings.Contains(dep.Error, "exited") || !strings.Contains(dep.Error, name) {
		t.Fatalf("error = %q, want it to say %s exited", dep.Error, name)
	}
	assertUntouched(e, v1, upstream, dep.ID)
}

func TestDeploy_MissingImageFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2-slow")
	cfg := defaultSvc()
	// "nope" passes, so that its deploy fails at the pull below.
	cfg.AllowedTags = `v[0-9].*|nope`
	d, v1, upstream := activeV1(e, cfg)

	dep := d.waitDeployment(d.deploy("nope").ID)
	if dep.Status != controller.StatusFailed {
		t.Fatalf("status = %s, want failed", dep.Status)
	}
	if len(dep.Steps) != 1 || dep.Steps[0].Name != controller.StepPull || dep.Steps[0].Status != controller.StepFailed {
		t.Fatalf("steps = %s, want only pull, failed", stepSummary(dep))
	}
	if !strings.Contains(dep.Error, repository+":nope") {
		t.Fatalf("error = %q, want it to name the image %s:nope", dep.Error, repository)
	}
	t.Logf("missing image error: %s", dep.Error)
	assertUntouched(e, v1, upstream, dep.ID)

	deployments := "/api/v1/services/" + e.svc + "/deployments"
	tests := []struct {
		name       string
		path       string
		body       any
		token      string
		wantStatus int
		wantCode   string
	}{
		{"invalid reference", deployments, map[string]string{"image": "Bad Image!"}, e.token, http.StatusBadRequest, controller.EINVALID},
		{"other repository", deployments, map[string]string{"image": "someone-else/app:v1"}, e.token, http.StatusForbidden, controller.EFORBIDDEN},
		{"bare repository name", deployments, map[string]string{"image": repository}, e.token, http.StatusBadRequest, controller.EINVALID},
		{"tag outside allowed_tags", deployments, map[string]string{"image": "latest"}, e.token, http.StatusBadRequest, controller.EINVALID},
		{"full reference outside allowed_tags", deployments, map[string]string{"image": repository + ":main"}, e.token, http.StatusBadRequest, controller.EINVALID},
		{"unknown service", "/api/v1/services/nosuchsvc/deployments", map[string]string{"image": "v1"}, e.token, http.StatusNotFound, controller.ENOTFOUND},
		{"no token", deployments, map[string]string{"image": "v1"}, "", http.StatusUnauthorized, controller.EUNAUTHORIZED},
		{"wrong token", deployments, map[string]string{"image": "v1"}, strings.Repeat("x", 48), http.StatusUnauthorized, controller.EUNAUTHORIZED},
		{"rollback without a standby", "/api/v1/services/" + e.svc + "/rollback", nil, e.token, http.StatusConflict, controller.ECONFLICT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := d.request(http.MethodPost, tt.path, tt.body, tt.token)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", status, tt.wantStatus, b)
			}
			if got := decode[apiError](t, b); got.Code != tt.wantCode {
				t.Fatalf("code = %q, want %q (error %q)", got.Code, tt.wantCode, got.Error)
			}
		})
	}

	running := d.deploy("v2-slow")
	status, b := d.request(http.MethodPost, deployments, map[string]string{"image": "v1"}, e.token)
	if status != http.StatusConflict {
		t.Fatalf("second deploy: status = %d, want %d; body %s", status, http.StatusConflict, b)
	}
	if got := decode[apiError](t, b); got.Code != controller.ECONFLICT || got.DeploymentID != running.ID {
		t.Fatalf("second deploy: code %q deployment_id %q, want %q %q", got.Code, got.DeploymentID, controller.ECONFLICT, running.ID)
	}
	if dep := d.waitDeployment(running.ID); dep.Status != controller.StatusSucceeded {
		t.Fatalf("slow deploy: status = %s (%s), want succeeded", dep.Status, dep.Error)
	}
	e.assertServes("v2", "green")
	if all := e.containers(); len(all) != 2 {
		t.Fatalf("containers = %v, want blue-1 and green-1 only", all)
	}
}

func TestDeploy_PreDeployFailureKeepsOutput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2-mig3")
	cfg := defaultSvc()
	cfg.PreDeploy = []string{"migrate"}
	d, v1, upstream := activeV1(e, cfg)

	dep := d.waitDeployment(d.deploy("v2-mig3").ID)
	if dep.Status != controller.StatusFailed {
		t.Fatalf("status = %s, want failed", dep.Status)
	}
	s := findStep(dep, controller.StepPreDeploy)
	if s == nil || s.Status != controller.StepFailed || lastStep(dep).Name != controller.StepPreDeploy {
		t.Fatalf("steps = %s, want pre_deploy last and failed", stepSummary(dep))
	}
	for _, want := range []string{"Applying app.0001_initial... OK", "Applying app.0002_add_email... FAILED", "simulated failure (exit 3)"} {
		if !strings.Contains(s.Output, want) {
			t.Errorf("pre_deploy output lacks %q; output:\n%s", want, s.Output)
		}
	}
	if !strings.Contains(dep.Error, "exited with code 3") {
		t.Errorf("error = %q, want the exit code 3", dep.Error)
	}
	if green := e.colorContainers("green"); len(green) != 0 {
		t.Fatalf("green containers = %v, want none started", green)
	}
	assertUntouched(e, v1, upstream, dep.ID)
}

func TestDeploy_NginxConfigTestFailureTouchesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2")
	d, v1, upstream := activeV1(e, defaultSvc())
	d.stop()

	// The same nginx binary and prefix, testing a copy of the config with a
	// directive nginx rejects: the switch's config test must fail with
	// nginx's own message, while the running nginx keeps its config.
	conf, err := os.ReadFile(e.ng.ConfPath)
	if err != nil {
		t.Fatalf("read nginx.conf: %v", err)
	}
	bad := filepath.Join(e.ng.Prefix, "broken.conf")
	if err := os.WriteFile(bad, append(conf, []byte("\ne2e_bogus_directive on;\n")...), 0o644); err != nil {
		t.Fatalf("write broken config: %v", err)
	}
	cfg := defaultSvc()
	testCmd := slices.Clone(e.ng.TestCommand)
	testCmd[slices.Index(testCmd, e.ng.ConfPath)] = bad
	cfg.TestCommand = testCmd
	d = e.startDaemon("failing-test", e.writeConfig("deployd-badtest.yml", cfg))

	workers := e.nginxWorkers()
	if len(workers) == 0 {
		t.Fatal("nginx master has no workers")
	}
	dep := d.waitDeployment(d.deploy("v2").ID)
	if dep.Status != controller.StatusFailed {
		t.Fatalf("status = %s, want failed", dep.Status)
	}
	if s := lastStep(dep); s.Name != controller.StepSwitch || s.Status != controller.StepFailed {
		t.Fatalf("steps = %s, want switch last and failed", stepSummary(dep))
	}
	if !strings.Contains(dep.Error, `unknown directive "e2e_bogus_directive"`) {
		t.Fatalf("error = %q, want nginx's message about the bogus directive", dep.Error)
	}
	if got := e.nginxWorkers(); !slices.Equal(got, workers) {
		t.Fatalf("nginx workers = %v, want %v unchanged (no reload)", got, workers)
	}
	assertUntouched(e, v1, upstream, dep.ID)
}

func TestRollback_ToStoppedStandbyStartsItFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2")
	cfg := defaultSvc()
	cfg.Standby = "stopped"
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	v1 := d.mustSucceed("v1")
	d.mustSucceed("v2")
	e.assertServes("v2", "green")
	blue := e.colorContainers("blue")
	if len(blue) != 1 || blue[0].State != "exited" {
		t.Fatalf("blue after v2 = %v, want one stopped (exited) container kept as a cold standby", blue)
	}

	rb := d.waitDeployment(d.rollback().ID)
	if rb.Status != controller.StatusSucceeded {
		t.Fatalf("rollback: status = %s (%s), want succeeded; steps %s", rb.Status, rb.Error, stepSummary(rb))
	}
	e.assertServes("v1", "blue")
	// Started again, not recreated: the same deployment's container.
	e.assertUpstreamIs(e.assertRunning("blue", 1, v1.ID))
	if green := e.colorContainers("green"); len(green) != 1 || green[0].State != "exited" {
		t.Fatalf("green after rollback = %v, want one stopped container", green)
	}
}

func TestRollback_AfterFailedDeployIsStillWarm(t *testing.T) {
	t.Parallel()
	eachTrafficMode(t, testRollbackAfterFailedDeployIsStillWarm)
}

// A deploy that fails leaves the standby it targeted running: the next
// rollback takes a warm standby's time and serves the old version.
func testRollbackAfterFailedDeployIsStillWarm(t *testing.T, mode string) {
	e := newEnv(t, "v1", "v2", "v2-fail")
	cfg := defaultSvc()
	cfg.StartTimeout = failFastStartTimeout
	cfg.Traffic = mode
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	v1 := d.mustSucceed("v1")
	d.mustSucceed("v2")
	e.assertServes("v2", "green")
	standby := e.assertRunning("blue", 1, v1.ID)

	// The failing deploy targets blue, the standby's color: its container
	// runs beside the standby's until it fails.
	fail := d.deploy("v2-fail")
	d.waitStep(fail.ID, controller.StepHealth)
	blue := e.colorContainers("blue")
	if len(blue) != 2 || len(e.ofDeployment(fail.ID)) != 1 {
		t.Fatalf("blue during the failing deploy = %v, want the standby and the new container side by side", blue)
	}
	dep := d.waitDeployment(fail.ID)
	if dep.Status != controller.StatusFailed {
		t.Fatalf("status = %s (%s), want failed", dep.Status, dep.Error)
	}
	if left := e.ofDeployment(fail.ID); len(left) != 0 {
		t.Fatalf("containers of the failed deployment left: %v", left)
	}
	after := e.assertRunning("blue", 1, v1.ID)
	if after[0].Name != standby[0].Name || after[0].Address != standby[0].Address {
		t.Fatalf("standby after the failed deploy = %+v, want %+v untouched", after[0], standby[0])
	}
	e.assertServes("v2", "green")

	start := time.Now()
	rb := d.rollback()
	rbDone := d.waitDeployment(rb.ID)
	took := time.Since(start)
	if rbDone.Status != controller.StatusSucceeded {
		t.Fatalf("rollback status = %s (%s), want succeeded; steps %s", rbDone.Status, rbDone.Error, stepSummary(rbDone))
	}
	var server time.Duration
	if rbDone.FinishedAt != nil {
		server = rbDone.FinishedAt.Sub(rbDone.CreatedAt)
	}
	t.Logf("rollback after a failed deploy took %s (API call to final status; %s in the record)",
		took.Round(time.Millisecond), server.Round(time.Millisecond))
	if s := rbDone.Steps[0]; s.Name != controller.StepStart || !strings.Contains(s.Message, "warm") {
		t.Errorf("rollback's first step = %s %q, want start with the standby warm", s.Name, s.Message)
	}
	elapsedUnder(t, "rollback to the standby a failed deploy left", took, time.Second)
	e.assertServes("v1", "blue")
	e.assertUpstreamIs(after)
}
