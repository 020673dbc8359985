package api

import (
	"errors"
	"net/http"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/deployd/deployd/pkg/controller"
)

func TestAudit_EveryMutatingRequestIsRecordedWithItsOutcome(t *testing.T) {
	tests := []struct {
		name         string
		method, path string
		secret, body string
		ctlErr       error
		want         controller.AuditEntry
	}{
		{"deploy ok", "POST", "/api/v1/services/web/deployments", deployerSecret, `{"image":"v2"}`, nil,
			controller.AuditEntry{Actor: "ci-deployer", Action: "deploy", Target: "web", Result: "ok", Status: 202, DeploymentID: "d-42"}},
		// No actor: the controller counts it instead of writing it.
		{"deploy without a token", "POST", "/api/v1/services/web/deployments", "", `{"image":"v2"}`, nil,
			controller.AuditEntry{Actor: "", Action: "deploy", Target: "web", Result: "unauthorized", Status: 401}},
		{"deploy by a viewer", "POST", "/api/v1/services/web/deployments", viewerSecret, `{"image":"v2"}`, nil,
			controller.AuditEntry{Actor: "ci-viewer", Action: "deploy", Target: "web", Result: "forbidden", Status: 403}},
		{"deploy with a bad body", "POST", "/api/v1/services/web/deployments", deployerSecret, `{"image":1}`, nil,
			controller.AuditEntry{Actor: "ci-deployer", Action: "deploy", Target: "web", Result: "invalid", Status: 400}},
		{"deploy to a busy service", "POST", "/api/v1/services/web/deployments", deployerSecret, `{"image":"v2"}`,
			&controller.Error{Code: controller.ECONFLICT, Message: "busy", DeploymentID: "d-41"},
			controller.AuditEntry{Actor: "ci-deployer", Action: "deploy", Target: "web", Result: "conflict", Status: 409, DeploymentID: "d-41"}},
		{"rollback ok", "POST", "/api/v1/services/web/rollback", operatorSecret, "", nil,
			controller.AuditEntry{Actor: "ops", Action: "rollback", Target: "web", Result: "ok", Status: 202, DeploymentID: "d-42"}},
		{"rollback fails inside", "POST", "/api/v1/services/web/rollback", operatorSecret, "", errors.New("disk on fire"),
			controller.AuditEntry{Actor: "ops", Action: "rollback", Target: "web", Result: "internal", Status: 500}},
		{"cancel ok", "POST", "/api/v1/deployments/d-42/cancel", operatorSecret, "", nil,
			controller.AuditEntry{Actor: "ops", Action: "cancel", Target: "d-42", Result: "ok", Status: 202, DeploymentID: "d-42"}},
		{"cancel unknown", "POST", "/api/v1/deployments/d-42/cancel", operatorSecret, "", controller.Errorf(controller.ENOTFOUND, "no deployment d-42"),
			controller.AuditEntry{Actor: "ops", Action: "cancel", Target: "d-42", Result: "not_found", Status: 404}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.ctl.err = tt.ctlErr
			resp := h.do(t, tt.method, tt.path, tt.secret, tt.body)
			wantStatus(t, resp, tt.want.Status)
			entries := h.ctl.AuditEntries()
			if len(entries) != 1 {
				t.Fatalf("audit entries = %+v, want one", entries)
			}
			got := entries[0]
			if got.Time.IsZero() || got.Address == "" {
				t.Errorf("entry = %+v, want a time and an address", got)
			}
			if got.RequestID != resp.Header.Get("X-Request-Id") {
				t.Errorf("request_id = %q, want the response's %q", got.RequestID, resp.Header.Get("X-Request-Id"))
			}
			got.Time, got.Address, got.RequestID = tt.want.Time, "", ""
			if got != tt.want {
				t.Errorf("entry = %+v\nwant    %+v", got, tt.want)
			}
		})
	}
}

func TestAudit_ReadsAreNotRecorded(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"/api/v1/services", "/api/v1/deployments/d-42", "/api/v1/audit", "/healthz"} {
		wantStatus(t, h.do(t, "GET", p, viewerSecret, ""), fiber.StatusOK)
	}
	if entries := h.ctl.AuditEntries(); len(entries) != 0 {
		t.Errorf("audit entries = %+v, want none for reads", entries)
	}
}

func TestAudit_FailureToRecordIsLoggedAndTheAnswerStands(t *testing.T) {
	h := newHarness(t)
	h.ctl.auditErr = errors.New("store closed")
	resp := h.do(t, "POST", "/api/v1/services/web/rollback", operatorSecret, "")
	wantStatus(t, resp, fiber.StatusAccepted)
	var logged bool
	for _, e := range h.hook.AllEntries() {
		if e.Message == "record audit entry" && e.Data["action"] == "rollback" {
			logged = true
		}
	}
	if !logged {
		t.Error("the lost audit entry was not logged")
	}
}

func TestListAudit_Limit(t *testing.T) {
	tests := []struct {
		query     string
		wantLimit int
		want      int
	}{
		{"", 100, 200},
		{"?limit=1", 1, 200},
		{"?limit=1000", 1000, 200},
		{"?limit=0", 0, 400},
		{"?limit=1001", 0, 400},
		{"?limit=ten", 0, 400},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			h := newHarness(t)
			resp := h.do(t, "GET", "/api/v1/audit"+tt.query, viewerSecret, "")
			wantStatus(t, resp, tt.want)
			calls := h.ctl.Calls()
			if tt.want != 200 {
				if len(calls) != 0 {
					t.Errorf("calls = %+v, want none", calls)
				}
				return
			}
			if len(calls) != 1 || calls[0].limit != tt.wantLimit {
				t.Errorf("calls = %+v, want Audit(%d)", calls, tt.wantLimit)
			}
			got := decodeJSON[map[string][]AuditEntry](t, resp)
			if entries, ok := got["entries"]; !ok || entries == nil {
				t.Errorf("body = %v, want an entries array", got)
			}
		})
	}
}

func TestCancel_AnswersWithTheDeploymentOrItsError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"running", nil, 202},
		{"finished or switching", controller.Errorf(controller.ECONFLICT, "deployment d-42 has already ended (succeeded)"), 409},
		{"unknown", controller.Errorf(controller.ENOTFOUND, "no deployment d-42"), 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.ctl.err = tt.err
			resp := h.do(t, "POST", "/api/v1/deployments/d-42/cancel", operatorSecret, "")
			wantStatus(t, resp, tt.want)
			if calls := h.ctl.Calls(); len(calls) != 1 || calls[0].method != "Cancel" || calls[0].id != "d-42" {
				t.Errorf("calls = %+v, want Cancel(d-42)", calls)
			}
			if tt.want == 202 {
				if got, want := resp.Header.Get("Location"), "/api/v1/deployments/d-42"; got != want {
					t.Errorf("Location = %q, want %q", got, want)
				}
				if got := decodeJSON[Deployment](t, resp); got.ID != "d-42" {
					t.Errorf("deployment = %q, want d-42", got.ID)
				}
			}
		})
	}
}

func TestSecurityHeaders_OnEveryResponse(t *testing.T) {
	tests := []struct {
		method, path, secret string
		want                 int
		noStore              bool
	}{
		{"GET", "/healthz", "", 200, true},
		{"GET", "/nope", "", 404, true},
		{"GET", "/api/v1/services", viewerSecret, 200, true},
		{"GET", "/api/v1/services", "", 401, true},
		{"GET", "/api/v1/openapi.yaml", viewerSecret, 200, true},
		{"POST", "/hooks/deploy", "", 401, true},
		{"GET", "/", "", 303, true},
		{"GET", "/login", "", 200, true},
		{"GET", "/static/app.css", "", 200, false},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			h := newHarness(t)
			resp := h.do(t, tt.method, tt.path, tt.secret, "")
			wantStatus(t, resp, tt.want)
			wantSecurityHeaders(t, resp, tt.noStore)
			if !tt.noStore && resp.Header.Get("Cache-Control") == "no-store" {
				t.Errorf("Cache-Control = no-store on %s, want the handler's caching", tt.path)
			}
		})
	}
}

func wantSecurityHeaders(t *testing.T, resp *http.Response, noStore bool) {
	t.Helper()
	want := map[string]string{
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
		"Referrer-Policy":        "no-referrer",
		"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
			"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	}
	if noStore {
		want["Cache-Control"] = "no-store"
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestOpenAPI_ServedAsYAML(t *testing.T) {
	h := newHarness(t)
	resp := h.do(t, "GET", "/api/v1/openapi.yaml", viewerSecret, "")
	wantStatus(t, resp, fiber.StatusOK)
	if got := resp.Header.Get("Content-Type"); got != "application/yaml" {
		t.Errorf("Content-Type = %q, want application/yaml", got)
	}
}
