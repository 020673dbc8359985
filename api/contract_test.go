package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/deployd/deployd/internal/apicheck"
	"github.com/deployd/deployd/pkg/controller"
)

// contractTime is when the sample states happened.
var contractTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) *time.Time {
	t := contractTime.Add(d)
	return &t
}

// rolledBackDeployment is a webhook deploy whose new color failed its bake,
// so traffic went back: every step finished, the bake failed.
func rolledBackDeployment() controller.Deployment {
	steps := []controller.Step{}
	for i, name := range []string{controller.StepPull, controller.StepCleanup, controller.StepPreDeploy, controller.StepStart, controller.StepHealth, controller.StepSwitch} {
		steps = append(steps, controller.Step{Name: name, Status: controller.StepSucceeded, StartedAt: contractTime.Add(time.Duration(i) * time.Second), FinishedAt: at(time.Duration(i+1) * time.Second), Message: name + " done"})
	}
	steps[2].Status, steps[2].Output = controller.StepSkipped, "no pre-deploy command\n"
	steps = append(steps, controller.Step{Name: controller.StepBake, Status: controller.StepFailed, StartedAt: contractTime.Add(6 * time.Second), FinishedAt: at(20 * time.Second),
		Message: "container web-green-1 exited (exit code 2, 0 restart(s)) during bake; traffic moved back to blue"})
	return controller.Deployment{
		ID: "d-rolled", Service: "web", Kind: controller.KindDeploy, Image: "demoapp:v3",
		FromColor: controller.Blue, ToColor: controller.Green, Status: controller.StatusRolledBack,
		Error: steps[len(steps)-1].Message, Steps: steps,
		Trigger:   controller.Trigger{Source: "webhook", Actor: "octocat", Commit: "def456", Ref: "refs/heads/main", Delivery: "build-18"},
		CreatedAt: contractTime, FinishedAt: at(21 * time.Second),
	}
}

// watchdogRollback is the watchdog's automatic rollback, still running.
func watchdogRollback() controller.Deployment {
	return controller.Deployment{
		ID: "d-watchdog", Service: "web", Kind: controller.KindRollback, Image: "demoapp:v1",
		FromColor: controller.Green, ToColor: controller.Blue, Status: controller.StatusRunning,
		Steps:     []controller.Step{{Name: controller.StepStart, Status: controller.StepRunning, StartedAt: contractTime, Message: ""}},
		Trigger:   controller.Trigger{Source: "watchdog", Actor: "watchdog"},
		CreatedAt: contractTime,
	}
}

// warmService is a service on green with blue as a warm standby, the
// deploy that put green there and the rolled-back deploy after it.
func warmService() controller.ServiceView {
	ct := func(color string, restarts int) controller.Container {
		return controller.Container{ID: "c-" + color, Name: "web-" + color + "-1", State: "running", Health: "healthy",
			Address: "127.0.0.1:32768", Restarts: restarts, StartedAt: contractTime}
	}
	// As a store might hand it over: no steps slice.
	active := sampleDeployment()
	active.ID, active.Status, active.Steps, active.FinishedAt = "d-green", controller.StatusSucceeded, nil, at(time.Minute)
	rolled := rolledBackDeployment()
	return controller.ServiceView{
		Name: "web", ActiveColor: controller.Green, ActiveImage: "demoapp:v2",
		StandbyColor: controller.Blue, StandbyImage: "demoapp:v1",
		Colors: map[controller.Color]controller.ColorView{
			controller.Blue:  {Image: "demoapp:v1", Containers: []controller.Container{ct("blue", 0)}},
			controller.Green: {Image: "demoapp:v2", Containers: []controller.Container{ct("green", 2)}},
		},
		StandbyWarm:      true,
		ActiveDeployment: &active,
		Deployment:       &rolled,
		RepositoryURL:    "https://git.example.com/web",
	}
}

// swarmService is warmService on a Swarm: each replica names its node.
func swarmService() controller.ServiceView {
	v := warmService()
	for col, node := range map[controller.Color]string{controller.Blue: "node-a", controller.Green: "node-b"} {
		cv := v.Colors[col]
		cv.Containers[0].Node = node
		v.Colors[col] = cv
	}
	return v
}

// breakingChange is a rollback across a migration old code cannot run
// against.
func breakingChange() controller.SchemaChange {
	return controller.SchemaChange{Breaking: true, Migrations: []string{"notes.0003_drop_legacy"},
		Message: "web's active demoapp:v2 applied notes.0003_drop_legacy; the standby demoapp:v1 ran against the old schema " +
			"and may fail. Roll back with confirm_schema_change to do it anyway."}
}

// pausedTraffic is a service in switch mode, paused with requests held
// and its maintenance page on.
func pausedTraffic() controller.TrafficView {
	return controller.TrafficView{Mode: controller.TrafficModeSwitch, TrafficStatus: controller.TrafficStatus{
		Paused: true, PausedSince: contractTime, Held: 3, MaxHeld: 1000, MaxHold: 30 * time.Second,
		Maintenance: true, MaintenanceSince: contractTime, Message: "Back at 18:00 UTC", InFlight: 2,
	}}
}

// newService has never been deployed: no colors, no deployments.
func newService() controller.ServiceView { return controller.ServiceView{Name: "fresh"} }

func TestOpenAPI_ResponsesMatchTheDocument(t *testing.T) {
	checker, err := apicheck.Load(context.Background(), OpenAPI())
	if err != nil {
		t.Fatalf("load the served document: %v", err)
	}
	unavailable := controller.Errorf(controller.EUNAVAILABLE, "docker: engine not answering")
	busy := &controller.Error{Code: controller.ECONFLICT, Message: "web is busy", DeploymentID: "d-watchdog"}
	tests := []struct {
		name   string
		setup  func(h *harness)
		req    func() *http.Request
		status int
	}{
		{name: "healthz", req: get("/healthz", ""), status: 200},
		{name: "ready", req: get("/readyz", ""), status: 200},
		{name: "unready", setup: func(h *harness) { h.ctl.setReadyErr(errors.New("docker: engine not answering")) }, req: get("/readyz", ""), status: 503},
		{name: "metrics", req: get("/metrics", viewerSecret), status: 200},
		{name: "the document", req: get("/api/v1/openapi.yaml", viewerSecret), status: 200},

		{name: "services, warm and new", setup: func(h *harness) { h.ctl.services = []controller.ServiceView{warmService(), newService()} },
			req: get("/api/v1/services", viewerSecret), status: 200},
		{name: "service with a warm standby", setup: func(h *harness) { h.ctl.service = warmService() },
			req: get("/api/v1/services/web", viewerSecret), status: 200},
		{name: "service paused in switch mode", setup: func(h *harness) {
			h.ctl.service = warmService()
			tv := pausedTraffic()
			h.ctl.service.Traffic = &tv
		}, req: get("/api/v1/services/web", viewerSecret), status: 200},
		{name: "service whose rollback crosses a schema change", setup: func(h *harness) {
			h.ctl.service = warmService()
			ch := breakingChange()
			h.ctl.service.RollbackSchema = &ch
			h.ctl.service.ActiveDeployment.Schema = &controller.SchemaRecord{Version: "5d41402abc4b",
				Applied: []string{"app.0001_initial", "notes.0003_drop_legacy"}, Migrated: []string{"notes.0003_drop_legacy"}}
		}, req: get("/api/v1/services/web", viewerSecret), status: 200},
		{name: "service on a swarm, replicas on nodes", setup: func(h *harness) { h.ctl.service = swarmService() },
			req: get("/api/v1/services/web", viewerSecret), status: 200},
		{name: "service never deployed", setup: func(h *harness) { h.ctl.service = newService() },
			req: get("/api/v1/services/fresh", viewerSecret), status: 200},
		{name: "service while docker is away", setup: func(h *harness) { h.ctl.err = unavailable },
			req: get("/api/v1/services/web", viewerSecret), status: 503},
		{name: "unknown service", req: get("/api/v1/services/NOPE", viewerSecret), status: 404},
		{name: "no token", req: get("/api/v1/services", ""), status: 401},

		{name: "deployments, rolled back and watchdog", setup: func(h *harness) {
			h.ctl.deployments = []controller.Deployment{watchdogRollback(), rolledBackDeployment()}
		}, req: get("/api/v1/deployments?service=web&limit=2", viewerSecret), status: 200},
		{name: "deployments, bad limit", req: get("/api/v1/deployments?limit=0", viewerSecret), status: 400},
		{name: "deployments, store broken", setup: func(h *harness) { h.ctl.err = errors.New("bbolt: disk on fire") },
			req: get("/api/v1/deployments", viewerSecret), status: 500},
		{name: "rolled back deployment", setup: func(h *harness) { h.ctl.deployment = rolledBackDeployment() },
			req: get("/api/v1/deployments/d-rolled", viewerSecret), status: 200},
		{name: "event stream", setup: func(h *harness) {
			h.ctl.events = newFakeEvents()
			h.ctl.events.add(controller.EventStatus, "rolled_back", "bake failed", true)
		}, req: get("/api/v1/deployments/d-rolled/events", viewerSecret), status: 200},
		{name: "event stream, bad Last-Event-ID", req: func() *http.Request {
			r := get("/api/v1/deployments/d-rolled/events", viewerSecret)()
			r.Header.Set("Last-Event-ID", "x")
			return r
		}, status: 400},

		{name: "system events of an unknown service", setup: func(h *harness) {
			h.ctl.err = controller.Errorf(controller.ENOTFOUND, "unknown service %q", "nope")
		}, req: get("/api/v1/events?service=nope", viewerSecret), status: 404},
		{name: "system events without a token", req: get("/api/v1/events", ""), status: 401},

		{name: "deploy", req: post("/api/v1/services/web/deployments", deployerSecret, `{"image":"v2"}`), status: 202},
		{name: "deploy, bad body", req: post("/api/v1/services/web/deployments", deployerSecret, `{"image":""}`), status: 400},
		{name: "deploy as a viewer", req: post("/api/v1/services/web/deployments", viewerSecret, `{"image":"v2"}`), status: 403},
		{name: "deploy while busy", setup: func(h *harness) { h.ctl.err = busy },
			req: post("/api/v1/services/web/deployments", deployerSecret, `{"image":"v2"}`), status: 409},
		{name: "rollback", setup: func(h *harness) { h.ctl.deployment = watchdogRollback() },
			req: post("/api/v1/services/web/rollback", operatorSecret, ""), status: 202},
		{name: "rollback across a breaking schema change", setup: func(h *harness) {
			h.ctl.err = controller.Errorf(controller.ESCHEMACHANGE, "%s", breakingChange().Message)
		}, req: post("/api/v1/services/web/rollback", operatorSecret, ""), status: 409},
		{name: "rollback confirmed across a schema change", setup: func(h *harness) {
			d := watchdogRollback()
			d.Trigger = controller.Trigger{Source: "api", Actor: "ops"}
			ch := breakingChange()
			ch.Confirmed = true
			d.SchemaChange = &ch
			h.ctl.deployment = d
		}, req: post("/api/v1/services/web/rollback", operatorSecret, `{"confirm_schema_change":true}`), status: 202},
		{name: "rollback, bad body", req: post("/api/v1/services/web/rollback", operatorSecret, `{"confirm":true}`), status: 400},
		{name: "rollback while docker is away", setup: func(h *harness) { h.ctl.err = unavailable },
			req: post("/api/v1/services/web/rollback", operatorSecret, ""), status: 503},
		{name: "cancel", req: post("/api/v1/deployments/d-42/cancel", operatorSecret, ""), status: 202},
		{name: "cancel after the switch", setup: func(h *harness) {
			h.ctl.err = controller.Errorf(controller.ECONFLICT, "deployment d-42 has switched traffic; roll back instead")
		}, req: post("/api/v1/deployments/d-42/cancel", operatorSecret, ""), status: 409},

		{name: "pause", setup: func(h *harness) { h.ctl.traffic = pausedTraffic() },
			req: post("/api/v1/services/web/pause", operatorSecret, `{"max_hold":"10s","max_held":5}`), status: 200},
		{name: "pause with a hold limit of 0", req: post("/api/v1/services/web/pause", operatorSecret, `{"max_held":0}`), status: 400},
		{name: "pause when paused", setup: func(h *harness) {
			h.ctl.err = controller.Errorf(controller.ECONFLICT, "pause web: conflict: already paused")
		}, req: post("/api/v1/services/web/pause", operatorSecret, ""), status: 409},
		{name: "pause as a deployer", req: post("/api/v1/services/web/pause", deployerSecret, ""), status: 403},
		{name: "resume", setup: func(h *harness) { h.ctl.traffic = controller.TrafficView{Mode: controller.TrafficModeSwitch} },
			req: post("/api/v1/services/web/resume", operatorSecret, ""), status: 200},
		{name: "resume of an unknown service", setup: func(h *harness) { h.ctl.err = controller.Errorf(controller.ENOTFOUND, "unknown service") },
			req: post("/api/v1/services/nope/resume", operatorSecret, ""), status: 404},
		{name: "maintenance on", setup: func(h *harness) { h.ctl.traffic = pausedTraffic() },
			req: post("/api/v1/services/web/maintenance", operatorSecret, `{"on":true,"message":"Back at 18:00 UTC"}`), status: 200},
		{name: "maintenance without on", req: post("/api/v1/services/web/maintenance", operatorSecret, `{"message":"x"}`), status: 400},
		{name: "maintenance in reload mode", setup: func(h *harness) {
			h.ctl.err = controller.Errorf(controller.ECONFLICT, "traffic control needs traffic.mode: switch")
		}, req: post("/api/v1/services/web/maintenance", operatorSecret, `{"on":false}`), status: 409},

		{name: "audit with the watchdog's entry", setup: func(h *harness) {
			h.ctl.audit = []controller.AuditEntry{
				{ID: "a-2", Time: contractTime, Actor: "watchdog", Action: "rollback", Target: "web", Result: "ok", DeploymentID: "d-watchdog"},
				{ID: "a-1", Time: contractTime, Actor: "ops", Action: "cancel", Target: "d-42", Address: "10.0.0.1", Result: "conflict", Status: 409, RequestID: "r-1"},
				{ID: "a-0", Time: contractTime, Actor: "ops", Action: "maintenance_on", Target: "web", Address: "10.0.0.1", Result: "ok", Status: 200, RequestID: "r-0"},
			}
		}, req: get("/api/v1/audit", viewerSecret), status: 200},

		{name: "webhook", setup: func(h *harness) { h.ctl.deployment = rolledBackDeployment() },
			req: func() *http.Request { return signedHook(hookBody, "build-18") }, status: 202},
		{name: "webhook, wrong signature", req: func() *http.Request {
			return hookRequest(hookBody, map[string]string{"X-Hub-Signature-256": sign("not-the-secret", hookBody), "X-GitHub-Delivery": "build-19"})
		}, status: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.setup != nil {
				tt.setup(h)
			}
			resp := h.send(t, tt.req())
			wantStatus(t, resp, tt.status)
			if err := checker.Check(resp); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestOpenAPI_ReplayedWebhookMatchesTheDocument(t *testing.T) {
	checker, err := apicheck.Load(context.Background(), OpenAPI())
	if err != nil {
		t.Fatalf("load the served document: %v", err)
	}
	h := newHarness(t)
	wantStatus(t, h.send(t, signedHook(hookBody, "build-20")), fiber.StatusAccepted)
	resp := h.send(t, signedHook(hookBody, "build-20"))
	wantStatus(t, resp, fiber.StatusOK)
	if err := checker.Check(resp); err != nil {
		t.Error(err)
	}
}

func get(target, secret string) func() *http.Request {
	return func() *http.Request { return apiRequest(http.MethodGet, target, secret, "") }
}

func post(target, secret, body string) func() *http.Request {
	return func() *http.Request { return apiRequest(http.MethodPost, target, secret, body) }
}

func apiRequest(method, target, secret, body string) *http.Request {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	return req
}
