package api

import (
	"encoding/json"
	"io"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/deployd/deployd/pkg/controller"
)

// TestDeploy_AcceptsAndPassesTheTrigger also proves that what a body says
// about who asked never becomes the actor: the token's name always does.
func TestDeploy_AcceptsAndPassesTheTrigger(t *testing.T) {
	tests := []struct {
		name, body string
		want       controller.DeployRequest
	}{
		{
			name: "on_behalf_of is kept beside the token's name",
			body: `{"image":"demoapp:v2","commit":"abc123","on_behalf_of":"alice"}`,
			want: controller.DeployRequest{Image: "demoapp:v2", Trigger: controller.Trigger{Source: "api", Actor: "ci-deployer", OnBehalfOf: "alice", Commit: "abc123"}},
		},
		{
			name: "the old actor field is only a claim",
			body: `{"image":"demoapp:v2","commit":"abc123","actor":"admin (alice)"}`,
			want: controller.DeployRequest{Image: "demoapp:v2", Trigger: controller.Trigger{Source: "api", Actor: "ci-deployer", OnBehalfOf: "admin (alice)", Commit: "abc123"}},
		},
		{
			name: "actor is the token name",
			body: `{"image":"v2"}`,
			want: controller.DeployRequest{Image: "v2", Trigger: controller.Trigger{Source: "api", Actor: "ci-deployer"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			resp := h.do(t, "POST", "/api/v1/services/web/deployments", deployerSecret, tt.body)
			wantStatus(t, resp, fiber.StatusAccepted)
			if got, want := resp.Header.Get("Location"), "/api/v1/deployments/d-42"; got != want {
				t.Errorf("Location = %q, want %q", got, want)
			}
			if got := decodeJSON[Deployment](t, resp); got.ID != "d-42" {
				t.Errorf("deployment id = %q, want d-42", got.ID)
			}
			calls := h.ctl.Calls()
			if len(calls) != 1 {
				t.Fatalf("calls = %+v, want one Deploy", calls)
			}
			if calls[0].service != "web" || calls[0].req != tt.want {
				t.Errorf("Deploy(%q, %+v), want Deploy(web, %+v)", calls[0].service, calls[0].req, tt.want)
			}
		})
	}
}

func TestDeploy_BadBodiesNeverReachTheController(t *testing.T) {
	tests := []struct {
		name, body string
	}{
		{"empty", ""},
		{"not json", "image=demoapp:v2"},
		{"truncated", `{"image":"demoapp:v2"`},
		{"array", `["demoapp:v2"]`},
		{"null", `null`},
		{"missing image", `{"commit":"abc"}`},
		{"empty image", `{"image":""}`},
		{"image not a string", `{"image":2}`},
		{"commit not a string", `{"image":"v2","commit":["a"]}`},
		{"unknown field", `{"image":"v2","force":true}`},
		{"two objects", `{"image":"v2"}{"image":"v3"}`},
		{"trailing garbage", `{"image":"v2"} x`},
		{"control character", `{"image":"v2","actor":"a\nlevel=error"}`},
		{"overlong actor", `{"image":"v2","actor":"` + strings.Repeat("a", 300) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			resp := h.do(t, "POST", "/api/v1/services/web/deployments", deployerSecret, tt.body)
			wantStatus(t, resp, fiber.StatusBadRequest)
			if body := decodeJSON[errorBody](t, resp); body.Code != "invalid" || body.Error == "" {
				t.Errorf("body = %+v, want code invalid and a message", body)
			}
			if calls := h.ctl.Calls(); len(calls) != 0 {
				t.Errorf("controller called: %+v", calls)
			}
		})
	}
}

func TestDeploy_InvalidServiceNameIsNotFoundWithoutAsking(t *testing.T) {
	h := newHarness(t)
	resp := h.do(t, "POST", "/api/v1/services/Web..x/deployments", deployerSecret, `{"image":"v2"}`)
	wantStatus(t, resp, fiber.StatusNotFound)
	if calls := h.ctl.Calls(); len(calls) != 0 {
		t.Errorf("controller called: %+v", calls)
	}
}

func TestRollback_UsesTheTokenNameAsActor(t *testing.T) {
	h := newHarness(t)
	h.ctl.deployment.Kind = controller.KindRollback
	resp := h.do(t, "POST", "/api/v1/services/web/rollback", operatorSecret, "")
	wantStatus(t, resp, fiber.StatusAccepted)
	if got, want := resp.Header.Get("Location"), "/api/v1/deployments/d-42"; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if got := decodeJSON[Deployment](t, resp); got.Kind != controller.KindRollback {
		t.Errorf("kind = %q, want rollback", got.Kind)
	}
	calls := h.ctl.Calls()
	want := controller.Trigger{Source: "api", Actor: "ops"}
	if len(calls) != 1 || calls[0].method != "Rollback" || calls[0].service != "web" || calls[0].trigger != want {
		t.Errorf("calls = %+v, want Rollback(web, %+v)", calls, want)
	}
}

func TestListDeployments_Limit(t *testing.T) {
	tests := []struct {
		query      string
		wantStatus int
		wantLimit  int
		wantSvc    string
	}{
		{"", 200, defaultListLimit, ""},
		{"?limit=1", 200, 1, ""},
		{"?limit=500&service=web", 200, 500, "web"},
		{"?limit=0", 400, 0, ""},
		{"?limit=501", 400, 0, ""},
		{"?limit=-3", 400, 0, ""},
		{"?limit=ten", 400, 0, ""},
		{"?limit=1.5", 400, 0, ""},
		{"?limit=99999999999999999999", 400, 0, ""},
		{"?service=Bad%20Name", 400, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			h := newHarness(t)
			resp := h.do(t, "GET", "/api/v1/deployments"+tt.query, viewerSecret, "")
			wantStatus(t, resp, tt.wantStatus)
			calls := h.ctl.Calls()
			if tt.wantStatus != 200 {
				if body := decodeJSON[errorBody](t, resp); body.Code != "invalid" {
					t.Errorf("code = %q, want invalid", body.Code)
				}
				if len(calls) != 0 {
					t.Errorf("controller called: %+v", calls)
				}
				return
			}
			if len(calls) != 1 || calls[0].limit != tt.wantLimit || calls[0].service != tt.wantSvc {
				t.Errorf("calls = %+v, want Deployments(%q, %d)", calls, tt.wantSvc, tt.wantLimit)
			}
			body := decodeJSON[map[string]json.RawMessage](t, resp)
			if string(body["deployments"]) != "[]" {
				t.Errorf("deployments = %s, want [] for none", body["deployments"])
			}
		})
	}
}

func TestGetDeployment_PassesTheID(t *testing.T) {
	h := newHarness(t)
	resp := h.do(t, "GET", "/api/v1/deployments/d-42", viewerSecret, "")
	wantStatus(t, resp, 200)
	if calls := h.ctl.Calls(); len(calls) != 1 || calls[0].id != "d-42" {
		t.Errorf("calls = %+v, want Deployment(d-42)", calls)
	}
}

// keysOf returns the sorted keys of a JSON object.
func keysOf(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s is not a JSON object: %v", raw, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func wantKeys(t *testing.T, what string, raw json.RawMessage, want ...string) map[string]json.RawMessage {
	t.Helper()
	sort.Strings(want)
	if got := keysOf(t, raw); !reflect.DeepEqual(got, want) {
		t.Errorf("%s keys = %v, want %v", what, got, want)
	}
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	return m
}

func firstOf(t *testing.T, raw json.RawMessage) json.RawMessage {
	t.Helper()
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
		t.Fatalf("%s is not a non-empty list: %v", raw, err)
	}
	return list[0]
}

func checkDeploymentShape(t *testing.T, raw json.RawMessage) {
	t.Helper()
	d := wantKeys(t, "deployment", raw, "id", "service", "kind", "image", "from_color", "to_color",
		"status", "error", "steps", "trigger", "created_at", "finished_at")
	wantKeys(t, "step", firstOf(t, d["steps"]), "name", "status", "started_at", "finished_at", "message")
	wantKeys(t, "trigger", d["trigger"], "source", "actor", "commit")
	if got := string(d["status"]); got != `"queued"` {
		t.Errorf("status = %s, want \"queued\"", got)
	}
	if got := string(d["kind"]); got != `"deploy"` {
		t.Errorf("kind = %s, want \"deploy\"", got)
	}
	step := wantKeys(t, "step", firstOf(t, d["steps"]), "name", "status", "started_at", "finished_at", "message")
	if got := string(step["status"]); got != `"running"` {
		t.Errorf("step status = %s, want \"running\"", got)
	}
}

func TestShape_DeploymentHasExactlyTheDocumentedKeys(t *testing.T) {
	h := newHarness(t)
	resp := h.do(t, "POST", "/api/v1/services/web/deployments", deployerSecret, `{"image":"demoapp:v2"}`)
	wantStatus(t, resp, fiber.StatusAccepted)
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	checkDeploymentShape(t, raw)
}

func TestShape_DeploymentWithoutStepsHasEmptyList(t *testing.T) {
	h := newHarness(t)
	h.ctl.deployment.Steps = nil
	resp := h.do(t, "GET", "/api/v1/deployments/d-42", viewerSecret, "")
	wantStatus(t, resp, 200)
	d := decodeJSON[map[string]json.RawMessage](t, resp)
	if got := string(d["steps"]); got != "[]" {
		t.Errorf("steps = %s, want []", got)
	}
}

func sampleService() controller.ServiceView {
	d := sampleDeployment()
	finished := d.CreatedAt.Add(time.Minute)
	d.FinishedAt = &finished
	return controller.ServiceView{
		Name:         "web",
		ActiveColor:  controller.Blue,
		ActiveImage:  "demoapp:v1",
		StandbyColor: controller.Green,
		StandbyImage: "demoapp:v0",
		Colors: map[controller.Color]controller.ColorView{
			controller.Blue: {Image: "demoapp:v1", Containers: []controller.Container{{
				ID: "c1", Name: "web-blue-1", Service: "web", Color: controller.Blue, Image: "demoapp:v1",
				State: "running", Health: "healthy", Address: "172.18.0.5:8000", Restarts: 2,
			}}},
		},
		Deployment: &d,
	}
}

func checkServiceShape(t *testing.T, raw json.RawMessage) {
	t.Helper()
	// The keys, plus what the status page needs.
	s := wantKeys(t, "service", raw, "name", "active_color", "active_image", "standby_color", "standby_image", "colors", "deployment",
		"standby_warm", "standby_state", "active_deployment", "standby_deployment", "last_failure", "last_switch", "traffic", "rollback_schema_change")
	if got := string(s["traffic"]); got != "null" {
		t.Errorf("traffic in reload mode = %s, want null", got)
	}
	if got := string(s["standby_state"]); got != `"warm"` && got != `"cold"` && got != `"none"` {
		t.Errorf("standby_state = %s, want warm, cold or none", got)
	}
	colors := wantKeys(t, "colors", s["colors"], "blue", "green")
	blue := wantKeys(t, "blue", colors["blue"], "image", "containers", "others")
	wantKeys(t, "container", firstOf(t, blue["containers"]), "id", "name", "state", "health", "address", "restarts", "started_at")
	green := wantKeys(t, "green", colors["green"], "image", "containers", "others")
	if got := string(green["containers"]); got != "[]" {
		t.Errorf("green containers = %s, want []", got)
	}
	checkDeploymentShape(t, s["deployment"])
}

func TestShape_ServiceHasExactlyTheDocumentedKeys(t *testing.T) {
	h := newHarness(t)
	h.ctl.service = sampleService()
	resp := h.do(t, "GET", "/api/v1/services/web", viewerSecret, "")
	wantStatus(t, resp, 200)
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	checkServiceShape(t, raw)
	if calls := h.ctl.Calls(); len(calls) != 1 || calls[0].service != "web" {
		t.Errorf("calls = %+v, want Service(web)", calls)
	}
}

// A replica's node is in its container only where the runtime has nodes:
// a single host's answer keeps the keys it always had.
func TestShape_ContainerNamesItsNodeOnlyOnACluster(t *testing.T) {
	tests := []struct {
		name, node string
		want       []string
	}{
		{"single host", "", []string{"id", "name", "state", "health", "address", "restarts", "started_at"}},
		{"swarm", "node-a", []string{"id", "name", "state", "health", "address", "restarts", "started_at", "node"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.ctl.service = sampleService()
			h.ctl.service.Colors[controller.Blue].Containers[0].Node = tt.node
			resp := h.do(t, "GET", "/api/v1/services/web", viewerSecret, "")
			wantStatus(t, resp, 200)
			s := decodeJSON[map[string]json.RawMessage](t, resp)
			colors := wantKeys(t, "colors", s["colors"], "blue", "green")
			blue := wantKeys(t, "blue", colors["blue"], "image", "containers", "others")
			c := wantKeys(t, "container", firstOf(t, blue["containers"]), tt.want...)
			if tt.node == "" {
				return
			}
			if got, want := string(c["node"]), `"`+tt.node+`"`; got != want {
				t.Errorf("node = %s, want %s", got, want)
			}
		})
	}
}

func TestShape_ServicesListWrapsServices(t *testing.T) {
	h := newHarness(t)
	h.ctl.services = []controller.ServiceView{sampleService()}
	resp := h.do(t, "GET", "/api/v1/services", viewerSecret, "")
	wantStatus(t, resp, 200)
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := wantKeys(t, "list", raw, "services")
	checkServiceShape(t, firstOf(t, body["services"]))
}

func TestShape_EmptyServicesListIsEmptyArray(t *testing.T) {
	h := newHarness(t)
	resp := h.do(t, "GET", "/api/v1/services", viewerSecret, "")
	wantStatus(t, resp, 200)
	if body := decodeJSON[map[string]json.RawMessage](t, resp); string(body["services"]) != "[]" {
		t.Errorf("services = %s, want []", body["services"])
	}
}

func TestShape_PresentingDoesNotChangeTheControllersValues(t *testing.T) {
	v := sampleService()
	v.Deployment.Steps = nil
	_ = serviceOf(v)
	if _, ok := v.Colors[controller.Green]; ok {
		t.Error("serviceOf added green to the controller's map")
	}
	if v.Deployment.Steps != nil {
		t.Error("serviceOf changed the controller's deployment")
	}
}
