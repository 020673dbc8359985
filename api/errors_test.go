package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

func TestErrors_EachCodeMapsToItsStatusAndShape(t *testing.T) {
	tests := []struct {
		err        error
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{controller.Errorf(controller.EINVALID, "bad image"), 400, "invalid", "bad image"},
		{controller.Errorf(controller.EUNAUTHORIZED, "who"), 401, "unauthorized", "who"},
		{controller.Errorf(controller.EFORBIDDEN, "image outside repository"), 403, "forbidden", "image outside repository"},
		{controller.Errorf(controller.ENOTFOUND, "no service web"), 404, "not_found", "no service web"},
		{controller.Errorf(controller.ECONFLICT, "no standby"), 409, "conflict", "no standby"},
		{controller.Errorf(controller.EUNAVAILABLE, "docker down"), 503, "unavailable", "docker down"},
		{controller.Errorf(controller.EINTERNAL, "disk on fire"), 500, "internal", "internal error"},
		{fmt.Errorf("wrapped: %w", controller.Errorf(controller.ENOTFOUND, "gone")), 404, "not_found", "gone"},
		{errors.New("bolt: database not open"), 500, "internal", "internal error"},
		{controller.Errorf("made_up", "?"), 500, "internal", "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			h := newHarness(t)
			h.ctl.err = tt.err
			resp := h.do(t, "GET", "/api/v1/services/web", viewerSecret, "")
			wantStatus(t, resp, tt.wantStatus)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			got := decodeJSON[map[string]any](t, resp)
			want := map[string]any{"error": tt.wantMsg, "code": tt.wantCode}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("body = %v, want %v", got, want)
			}
		})
	}
}

func TestErrors_InternalErrorIsLoggedInFullWithRequestID(t *testing.T) {
	h := newHarness(t)
	h.ctl.err = errors.New("bolt: page 7 corrupt")
	req := httptest.NewRequest(http.MethodGet, "/api/v1/services", nil)
	req.Header.Set("Authorization", "Bearer "+viewerSecret)
	req.Header.Set("X-Request-Id", "req-abc.1")
	resp, err := h.srv.App().Test(req, 5000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wantStatus(t, resp, 500)
	if got := resp.Header.Get("X-Request-Id"); got != "req-abc.1" {
		t.Errorf("X-Request-Id = %q, want the client's req-abc.1", got)
	}
	body := decodeJSON[errorBody](t, resp)
	if strings.Contains(body.Error, "corrupt") {
		t.Errorf("response leaks the internal error: %q", body.Error)
	}
	var logged bool
	for _, e := range h.hook.AllEntries() {
		if e.Level == logrus.ErrorLevel && e.Data["request_id"] == "req-abc.1" {
			if err, _ := e.Data[logrus.ErrorKey].(error); err != nil && strings.Contains(err.Error(), "page 7 corrupt") {
				logged = true
			}
		}
	}
	if !logged {
		t.Error("internal error not logged with its text and the request id")
	}
}

func TestErrors_BusyServiceConflictCarriesDeploymentID(t *testing.T) {
	h := newHarness(t)
	h.ctl.err = &controller.Error{Code: controller.ECONFLICT, Message: "web is busy with d-7", DeploymentID: "d-7"}
	resp := h.do(t, "POST", "/api/v1/services/web/deployments", deployerSecret, `{"image":"demoapp:v3"}`)
	wantStatus(t, resp, fiber.StatusConflict)
	got := decodeJSON[map[string]any](t, resp)
	want := map[string]any{"error": "web is busy with d-7", "code": "conflict", "deployment_id": "d-7"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("body = %v, want %v", got, want)
	}
}

func TestErrors_ConflictWithoutDeploymentOmitsTheKey(t *testing.T) {
	h := newHarness(t)
	h.ctl.err = controller.Errorf(controller.ECONFLICT, "web has no standby color")
	resp := h.do(t, "POST", "/api/v1/services/web/rollback", operatorSecret, "")
	wantStatus(t, resp, fiber.StatusConflict)
	got := decodeJSON[map[string]any](t, resp)
	if _, ok := got["deployment_id"]; ok {
		t.Errorf("body = %v, want no deployment_id", got)
	}
}

func TestErrors_UnknownRouteAndWrongMethodAreJSON(t *testing.T) {
	tests := []struct {
		method, path string
		wantStatus   int
		wantCode     string
	}{
		{"GET", "/nope", 404, "not_found"},
		{"GET", "/api/v1/nope", 404, "not_found"},
		{"GET", "/api/v2/services", 404, "not_found"},
		{"DELETE", "/api/v1/services", 405, "method_not_allowed"},
		{"PUT", "/api/v1/services/web/deployments", 405, "method_not_allowed"},
		{"POST", "/healthz", 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			h := newHarness(t)
			resp := h.do(t, tt.method, tt.path, operatorSecret, "")
			wantStatus(t, resp, tt.wantStatus)
			body := decodeJSON[errorBody](t, resp)
			if body.Code != tt.wantCode || body.Error == "" {
				t.Errorf("body = %+v, want code %s and a message", body, tt.wantCode)
			}
		})
	}
}

// panicky is a controller whose every call is a bug.
type panicky struct{ fakeController }

func (p *panicky) Services(ctx context.Context) ([]controller.ServiceView, error) {
	panic(controller.Errorf(controller.ENOTFOUND, "a panic value that looks like a user error"))
}

func TestErrors_PanicIsRecoveredAsInternal(t *testing.T) {
	h := newHarness(t)
	h.srv = New(Options{Controller: &panicky{}, Tokens: testTokens, Logger: h.srv.log})
	resp := h.do(t, "GET", "/api/v1/services", viewerSecret, "")
	wantStatus(t, resp, 500)
	if got := decodeJSON[errorBody](t, resp); got.Code != "internal" || got.Error != "internal error" {
		t.Errorf("body = %+v, want internal error", got)
	}
	var stackLogged, requestLogged bool
	for _, e := range h.hook.AllEntries() {
		if s, _ := e.Data["stack"].(string); strings.Contains(s, "panicky") {
			stackLogged = true
		}
		if e.Message == "request" && e.Data["status"] == 500 {
			requestLogged = true
		}
	}
	if !stackLogged || !requestLogged {
		t.Errorf("stack logged = %v, request logged with 500 = %v; want both", stackLogged, requestLogged)
	}
	// The server keeps serving after a panic.
	resp = h.do(t, "GET", "/healthz", "", "")
	wantStatus(t, resp, 200)
}

func TestRequestID_GeneratedWhenAbsentOrUnsafe(t *testing.T) {
	tests := []struct {
		name, sent string
		keep       bool
	}{
		{"absent", "", false},
		{"safe", "abc-123_x.y", true},
		{"log injection", "x\" level=error msg=forged", false},
		{"too long", strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
			if tt.sent != "" {
				req.Header.Set("X-Request-Id", tt.sent)
			}
			got := h.send(t, req).Header.Get("X-Request-Id")
			if tt.keep && got != tt.sent {
				t.Errorf("X-Request-Id = %q, want %q", got, tt.sent)
			}
			if !tt.keep && (got == tt.sent || !validRequestID(got)) {
				t.Errorf("X-Request-Id = %q, want a fresh id", got)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	h := newHarness(t)
	resp := h.do(t, "GET", "/healthz", "", "")
	wantStatus(t, resp, 200)
	if got := decodeJSON[map[string]string](t, resp); got["status"] != "ok" || len(got) != 1 {
		t.Errorf("body = %v, want {status: ok}", got)
	}
}
