package web

import (
	"net/http"
	"testing"

	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
)

// A rollback across a schema change says so on the card and in the
// dialog; a breaking one asks the operator to acknowledge the standby's
// old schema before the dialog's yes button works.
func TestDashboard_RollbackAcrossASchemaChangeWarnsAndAsksForAcknowledgement(t *testing.T) {
	breaking := "web's active app:v2 applied notes.0003_drop_legacy; the standby app:v1 ran against the old schema and may fail. " +
		"Roll back with confirm_schema_change to do it anyway."
	compatible := "web's active app:v2 applied notes.0002_add_title, all compatible: the standby app:v1 runs against them."
	tests := []struct {
		name     string
		change   *controller.SchemaChange
		wantText string
		wantAck  string
	}{
		{name: "none"},
		{name: "compatible", change: &controller.SchemaChange{Migrations: []string{"notes.0002_add_title"}, Message: compatible},
			wantText: "Schema: " + compatible},
		{name: "breaking", change: &controller.SchemaChange{Breaking: true, Migrations: []string{"notes.0003_drop_legacy"}, Message: breaking},
			wantText: "Breaking schema change: " + breaking, wantAck: "I understand: app:v1 ran against the old schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.ctl.services[0].RollbackSchema = tt.change
			s := f.session(auth.RoleOperator)
			toks := tokenize(t, f.page(t, "/", &s, http.StatusOK))
			card := cardTokens(t, toks, "web")

			btn := one(t, card, "button", "rollback")
			if tt.change == nil {
				for _, attr := range []string{"data-schema", "data-schema-ack"} {
					if v, ok := btn.attrs[attr]; ok {
						t.Errorf("rollback %s = %q without a schema change, want none", attr, v)
					}
				}
				if n := len(elements(card, "p", "rollback-schema")); n != 0 {
					t.Errorf("card shows %d .rollback-schema without a schema change", n)
				}
			} else {
				if got := btn.attrs["data-schema"]; got != tt.change.Message {
					t.Errorf("data-schema = %q, want %q", got, tt.change.Message)
				}
				if got := oneText(t, card, "p", "rollback-schema"); got != tt.wantText {
					t.Errorf(".rollback-schema = %q, want %q", got, tt.wantText)
				}
			}
			if got, ok := btn.attrs["data-schema-ack"]; got != tt.wantAck || ok != (tt.wantAck != "") {
				t.Errorf("data-schema-ack = %q (present %v), want %q", got, ok, tt.wantAck)
			}
			// The dialog has room for both, hidden until a rollback opens it.
			for _, id := range []string{"confirm-schema", "confirm-ack-label", "confirm-ack", "confirm-yes", "confirm-message"} {
				if !hasID(toks, id) {
					t.Errorf("page has no #%s", id)
				}
			}
		})
	}
}

// A viewer is told nothing it could act on.
func TestDashboard_ViewerSeesNoSchemaAcknowledgement(t *testing.T) {
	f := newFixture(t)
	f.ctl.services[0].RollbackSchema = &controller.SchemaChange{Breaking: true, Migrations: []string{"x"}, Message: "m"}
	s := f.session(auth.RoleViewer)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
	if n := len(elements(card, "p", "rollback-schema")); n != 0 {
		t.Errorf("viewer's card shows %d .rollback-schema", n)
	}
}
