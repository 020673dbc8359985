package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func TestPause_PassesTheAskedLimitsAndAnswersTheTraffic(t *testing.T) {
	h := newHarness(t)
	h.ctl.traffic = pausedTraffic()
	resp := h.do(t, "POST", "/api/v1/services/web/pause", operatorSecret, `{"max_hold":"1m30s","max_held":5}`)
	wantStatus(t, resp, http.StatusOK)
	got := decodeJSON[Traffic](t, resp)
	if !got.Paused || got.Held != 3 || got.MaxHeld != 1000 || got.MaxHoldSeconds != 30 || got.PausedSince == nil ||
		!got.PausedSince.Equal(contractTime) || got.Mode != "switch" || got.InFlight != 2 {
		t.Errorf("answer = %+v, want the controller's traffic view", got)
	}
	calls := h.ctl.Calls()
	want := controller.PauseRequest{MaxHold: 90 * time.Second, MaxHeld: 5}
	if len(calls) != 1 || calls[0].method != "Pause" || calls[0].service != "web" || calls[0].pause != want {
		t.Errorf("calls = %+v, want Pause(web, %+v)", calls, want)
	}
}

func TestPause_WithoutABodyTakesTheConfiguredLimits(t *testing.T) {
	h := newHarness(t)
	wantStatus(t, h.do(t, "POST", "/api/v1/services/web/pause", operatorSecret, ""), http.StatusOK)
	if calls := h.ctl.Calls(); len(calls) != 1 || calls[0].pause != (controller.PauseRequest{}) {
		t.Errorf("calls = %+v, want Pause with no limits of its own", calls)
	}
}

func TestTraffic_BadInputIsRefusedBeforeTheController(t *testing.T) {
	tests := []struct {
		name, path, body, want string
	}{
		{"hold limit of 0", "pause", `{"max_held":0}`, "max_held must be at least 1"},
		{"negative hold limit", "pause", `{"max_held":-3}`, "max_held must be at least 1"},
		{"hold time of 0", "pause", `{"max_hold":"0s"}`, "max_hold must be a positive duration"},
		{"hold time not a duration", "pause", `{"max_hold":"soon"}`, "max_hold must be a positive duration"},
		{"unknown field", "pause", `{"max_wait":"1s"}`, "unknown field"},
		{"two objects", "pause", `{}{}`, "single JSON object"},
		{"maintenance without on", "maintenance", `{"message":"x"}`, "on is required"},
		{"maintenance with an empty body", "maintenance", ``, "request body is empty"},
		{"maintenance on as a string", "maintenance", `{"on":"yes"}`, "on must be a bool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			resp := h.do(t, "POST", "/api/v1/services/web/"+tt.path, operatorSecret, tt.body)
			wantStatus(t, resp, http.StatusBadRequest)
			body := decodeJSON[errorBody](t, resp)
			if body.Code != controller.EINVALID || !strings.Contains(body.Error, tt.want) {
				t.Errorf("error = %+v, want invalid saying %q", body, tt.want)
			}
			if calls := h.ctl.Calls(); len(calls) != 0 {
				t.Errorf("calls = %+v, want none", calls)
			}
			if e := h.ctl.AuditEntries(); len(e) != 1 || e[0].Result != controller.EINVALID || e[0].Status != 400 {
				t.Errorf("audit = %+v, want one invalid entry", e)
			}
		})
	}
}

func TestMaintenance_PassesOnAndTheMessage(t *testing.T) {
	h := newHarness(t)
	resp := h.do(t, "POST", "/api/v1/services/web/maintenance", operatorSecret, `{"on":true,"message":"Back at 18:00 UTC"}`)
	wantStatus(t, resp, http.StatusOK)
	calls := h.ctl.Calls()
	if len(calls) != 1 || calls[0].method != "Maintenance" || !calls[0].on || calls[0].message != "Back at 18:00 UTC" {
		t.Errorf("calls = %+v, want Maintenance(web, on, message)", calls)
	}
}

func TestTraffic_OperatorsOnlyAndEveryCallAudited(t *testing.T) {
	conflict := controller.Errorf(controller.ECONFLICT, "pause web: conflict: already paused")
	bad := controller.Errorf(controller.EINVALID, "maintenance message has a control character")
	tests := []struct {
		name, path, secret, body string
		ctlErr                   error
		want                     controller.AuditEntry
	}{
		{"pause", "pause", operatorSecret, "", nil,
			controller.AuditEntry{Actor: "ops", Action: "pause", Target: "web", Result: "ok", Status: 200}},
		{"pause by a deployer", "pause", deployerSecret, "", nil,
			controller.AuditEntry{Actor: "ci-deployer", Action: "pause", Target: "web", Result: "forbidden", Status: 403}},
		{"pause when paused", "pause", operatorSecret, "", conflict,
			controller.AuditEntry{Actor: "ops", Action: "pause", Target: "web", Result: "conflict", Status: 409}},
		{"resume", "resume", operatorSecret, "", nil,
			controller.AuditEntry{Actor: "ops", Action: "resume", Target: "web", Result: "ok", Status: 200}},
		{"resume by a viewer", "resume", viewerSecret, "", nil,
			controller.AuditEntry{Actor: "ci-viewer", Action: "resume", Target: "web", Result: "forbidden", Status: 403}},
		{"maintenance on", "maintenance", operatorSecret, `{"on":true}`, nil,
			controller.AuditEntry{Actor: "ops", Action: "maintenance_on", Target: "web", Result: "ok", Status: 200}},
		{"maintenance off", "maintenance", operatorSecret, `{"on":false}`, nil,
			controller.AuditEntry{Actor: "ops", Action: "maintenance_off", Target: "web", Result: "ok", Status: 200}},
		{"maintenance with a bad message", "maintenance", operatorSecret, `{"on":true,"message":"a\u0007b"}`, bad,
			controller.AuditEntry{Actor: "ops", Action: "maintenance_on", Target: "web", Result: "invalid", Status: 400}},
		{"maintenance by a deployer", "maintenance", deployerSecret, `{"on":true}`, nil,
			controller.AuditEntry{Actor: "ci-deployer", Action: "maintenance", Target: "web", Result: "forbidden", Status: 403}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.ctl.err = tt.ctlErr
			resp := h.do(t, "POST", "/api/v1/services/web/"+tt.path, tt.secret, tt.body)
			wantStatus(t, resp, tt.want.Status)
			if tt.want.Status == http.StatusForbidden {
				if calls := h.ctl.Calls(); len(calls) != 0 {
					t.Errorf("calls = %+v, want none for a refused role", calls)
				}
			}
			entries := h.ctl.AuditEntries()
			if len(entries) != 1 {
				t.Fatalf("audit entries = %+v, want one", entries)
			}
			got := entries[0]
			got.Time, got.Address, got.RequestID = time.Time{}, "", ""
			if got != tt.want {
				t.Errorf("entry = %+v\nwant    %+v", got, tt.want)
			}
		})
	}
}

func TestTraffic_UnknownServiceNameIsNotFound(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"pause", "resume", "maintenance"} {
		resp := h.do(t, "POST", "/api/v1/services/NOPE/"+p, operatorSecret, `{"on":true}`)
		wantStatus(t, resp, http.StatusNotFound)
	}
	if calls := h.ctl.Calls(); len(calls) != 0 {
		t.Errorf("calls = %+v, want none", calls)
	}
}

func TestService_ShowsTheTrafficView(t *testing.T) {
	h := newHarness(t)
	h.ctl.service = warmService()
	tv := pausedTraffic()
	h.ctl.service.Traffic = &tv
	resp := h.do(t, "GET", "/api/v1/services/web", viewerSecret, "")
	wantStatus(t, resp, http.StatusOK)
	got := decodeJSON[Service](t, resp)
	if got.Traffic == nil || !got.Traffic.Paused || !got.Traffic.Maintenance || got.Traffic.Message != "Back at 18:00 UTC" {
		t.Errorf("traffic = %+v, want paused and in maintenance", got.Traffic)
	}

	tv = controller.TrafficView{Mode: controller.TrafficModeSwitch}
	resp = h.do(t, "GET", "/api/v1/services/web", viewerSecret, "")
	got = decodeJSON[Service](t, resp)
	if tr := got.Traffic; tr == nil || tr.Paused || tr.PausedSince != nil || tr.MaintenanceSince != nil || tr.MaxHeld != 0 {
		t.Errorf("traffic = %+v, want neither paused nor in maintenance, no times or limits", tr)
	}
}
