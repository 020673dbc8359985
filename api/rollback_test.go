package api

import (
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/deployd/deployd/pkg/controller"
)

func TestRollback_BreakingSchemaChangeIs409WithItsCodeAndMessage(t *testing.T) {
	h := newHarness(t)
	msg := breakingChange().Message
	h.ctl.err = controller.Errorf(controller.ESCHEMACHANGE, "%s", msg)

	resp := h.do(t, "POST", "/api/v1/services/web/rollback", operatorSecret, "")

	wantStatus(t, resp, fiber.StatusConflict)
	body := decodeJSON[errorBody](t, resp)
	if body.Code != "schema_change" || body.Error != msg {
		t.Errorf("body = %+v, want code schema_change and message %q", body, msg)
	}
}

func TestRollback_Body(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		wantStatus  int
		wantConfirm bool
	}{
		{name: "none", body: "", wantStatus: fiber.StatusAccepted},
		{name: "blanks", body: " \n", wantStatus: fiber.StatusAccepted},
		{name: "empty object", body: "{}", wantStatus: fiber.StatusAccepted},
		{name: "confirmed", body: `{"confirm_schema_change":true}`, wantStatus: fiber.StatusAccepted, wantConfirm: true},
		{name: "not confirmed", body: `{"confirm_schema_change":false}`, wantStatus: fiber.StatusAccepted},
		{name: "unknown field", body: `{"confirm":true}`, wantStatus: fiber.StatusBadRequest},
		{name: "string for a boolean", body: `{"confirm_schema_change":"yes"}`, wantStatus: fiber.StatusBadRequest},
		{name: "not an object", body: `[true]`, wantStatus: fiber.StatusBadRequest},
		{name: "two objects", body: `{} {}`, wantStatus: fiber.StatusBadRequest},
		{name: "not JSON", body: `confirm`, wantStatus: fiber.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.ctl.deployment.Kind = controller.KindRollback

			resp := h.do(t, "POST", "/api/v1/services/web/rollback", operatorSecret, tt.body)

			wantStatus(t, resp, tt.wantStatus)
			calls := h.ctl.Calls()
			if tt.wantStatus != fiber.StatusAccepted {
				if body := decodeJSON[errorBody](t, resp); body.Code != controller.EINVALID {
					t.Errorf("code = %q, want invalid", body.Code)
				}
				if len(calls) != 0 {
					t.Errorf("controller called on a bad body: %+v", calls)
				}
				return
			}
			want := controller.RollbackRequest{Trigger: controller.Trigger{Source: "api", Actor: "ops"}, ConfirmSchemaChange: tt.wantConfirm}
			if len(calls) != 1 || calls[0].method != "Rollback" || calls[0].rollback != want {
				t.Errorf("calls = %+v, want Rollback(web, %+v)", calls, want)
			}
		})
	}
}

func TestService_RollbackSchemaChangeIsShown(t *testing.T) {
	h := newHarness(t)
	h.ctl.service = warmService()
	ch := breakingChange()
	h.ctl.service.RollbackSchema = &ch

	resp := h.do(t, "GET", "/api/v1/services/web", viewerSecret, "")

	wantStatus(t, resp, fiber.StatusOK)
	got := decodeJSON[Service](t, resp).RollbackSchemaChange
	if got == nil || !got.Breaking || got.Message != ch.Message || len(got.Migrations) != 1 || got.Migrations[0] != "notes.0003_drop_legacy" {
		t.Errorf("rollback_schema_change = %+v, want %+v", got, ch)
	}
}

func TestRollback_AuditSaysWhenASchemaChangeWasConfirmed(t *testing.T) {
	confirmed := breakingChange()
	confirmed.Confirmed = true
	compatible := controller.SchemaChange{Migrations: []string{"notes.0002_add_title"}, Message: "compatible"}
	tests := []struct {
		name   string
		change *controller.SchemaChange
		err    error
		body   string
		want   controller.AuditEntry
	}{
		{name: "no schema change", want: controller.AuditEntry{Action: "rollback", Result: "ok", Status: 202}},
		{name: "compatible change", change: &compatible, want: controller.AuditEntry{Action: "rollback", Result: "ok", Status: 202}},
		{name: "confirmed breaking change", change: &confirmed, body: `{"confirm_schema_change":true}`,
			want: controller.AuditEntry{Action: "rollback_confirmed_schema_change", Result: "ok", Status: 202}},
		{name: "refused breaking change", err: controller.Errorf(controller.ESCHEMACHANGE, "%s", confirmed.Message),
			want: controller.AuditEntry{Action: "rollback", Result: "schema_change", Status: 409}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.ctl.err = tt.err
			h.ctl.deployment = controller.Deployment{ID: "d-rb", Service: "web", Kind: controller.KindRollback, SchemaChange: tt.change}

			resp := h.do(t, "POST", "/api/v1/services/web/rollback", operatorSecret, tt.body)

			wantStatus(t, resp, tt.want.Status)
			entries := h.ctl.AuditEntries()
			if len(entries) != 1 {
				t.Fatalf("audit entries = %+v, want one", entries)
			}
			got := entries[0]
			if got.Action != tt.want.Action || got.Result != tt.want.Result || got.Status != tt.want.Status || got.Actor != "ops" {
				t.Errorf("entry = %+v, want action %s, result %s, status %d by ops", got, tt.want.Action, tt.want.Result, tt.want.Status)
			}
		})
	}
}
