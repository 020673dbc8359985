package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/controller"
)

// The demo app's showmigrations prints what its version ships: v2 adds
// app.0002_add_field2 (expand-only), v3 adds app.0003_drop_field3
// (breaking). Going back from v2 to v1 would need no confirmation; from v3
// to v2 the API refuses without it, and the status page asks for it.
func TestSchema_RollbackAcrossBreakingMigrationNeedsConfirmation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2", "v3")
	cfg := defaultSvc()
	cfg.PreDeploy = []string{"migrate"}
	cfg.Schema = &config.Schema{Command: []string{"showmigrations"}, Timeout: 30 * time.Second, Compatible: `^[a-z_]+\.\d{4}_add_`}
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))

	d.mustSucceed("v1")
	v2 := d.mustSucceed("v2")
	for _, name := range []string{controller.StepSchemaBefore, controller.StepPreDeploy, controller.StepSchemaAfter} {
		if s := findStep(v2, name); s == nil || s.Status != controller.StepSucceeded {
			t.Fatalf("steps = %s, want %s succeeded", stepSummary(v2), name)
		}
	}
	if want := []string{"app.0001_initial", "app.0002_add_field2"}; v2.Schema == nil || !slices.Equal(v2.Schema.Applied, want) {
		t.Fatalf("v2 schema = %+v, want %v applied", v2.Schema, want)
	}
	if ch := d.service().RollbackSchemaChange; ch == nil || ch.Breaking || !slices.Equal(ch.Migrations, []string{"app.0002_add_field2"}) {
		t.Fatalf("rollback_schema_change on v2 = %+v, want app.0002_add_field2, compatible", ch)
	}

	d.mustSucceed("v3")
	svc := d.service()
	ch := svc.RollbackSchemaChange
	if ch == nil || !ch.Breaking || !slices.Equal(ch.Migrations, []string{"app.0003_drop_field3"}) {
		t.Fatalf("rollback_schema_change on v3 = %+v, want app.0003_drop_field3, breaking", ch)
	}

	// Refused without the confirmation: nothing moves.
	status, b := d.request(http.MethodPost, "/api/v1/services/"+e.svc+"/rollback", nil, e.token)
	if status != http.StatusConflict {
		t.Fatalf("rollback without confirmation: status = %d, want 409; body %s", status, b)
	}
	refusal := decode[apiError](t, b)
	want := e.svc + "'s active " + repository + ":v3 applied app.0003_drop_field3; the standby " + repository +
		":v2 ran against the old schema and may fail. Roll back with confirm_schema_change to do it anyway."
	if refusal.Code != controller.ESCHEMACHANGE || refusal.Error != want {
		t.Fatalf("refusal = %+v, want code schema_change and %q", refusal, want)
	}
	e.assertServes("v3", string(svc.ActiveColor))

	// The CLI names the change before a rollback is asked for, and refuses
	// one without --confirm-schema-change, saying how to go on.
	st := d.cli("status", "--service", e.svc)
	if wantLine := e.svc + ": rollback crosses app.0003_drop_field3 (breaking: a rollback needs --confirm-schema-change)\n"; st.code != 0 || !strings.Contains(st.stdout, wantLine) {
		t.Fatalf("deployd status: exit %d, stdout %q, want the line %q", st.code, st.stdout, wantLine)
	}
	rbCLI := d.cli("rollback", "--service", e.svc)
	if rbCLI.code != 1 || !strings.Contains(rbCLI.stderr, "applied app.0003_drop_field3") || !strings.Contains(rbCLI.stderr, "--confirm-schema-change") {
		t.Fatalf("deployd rollback without confirmation: exit %d, stderr %q; want 1, naming the migration and the flag", rbCLI.code, rbCLI.stderr)
	}
	e.assertServes("v3", string(svc.ActiveColor))

	// Confirmed in the status page's dialog: the yes button works only
	// once the operator ticked that the standby ran against the old schema.
	br := newBrowser(t)
	br.login(d, e.token)
	rollback := fmt.Sprintf(`button.rollback[data-service="%s"]`, e.svc)
	if got := br.text(card(e.svc, ".rollback-schema")); got != "Breaking schema change: "+want {
		t.Errorf(".rollback-schema = %q, want the breaking change", got)
	}
	br.click("click Rollback", rollback)
	br.do("wait for the dialog", chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")))
	if got := br.text("#confirm-schema"); got != want {
		t.Errorf("#confirm-schema = %q, want %q", got, want)
	}
	ack := "I understand: " + repository + ":v2 ran against the old schema"
	if got := br.text("#confirm-ack-text"); got != ack {
		t.Errorf("#confirm-ack-text = %q, want %q", got, ack)
	}
	if !eval[bool](br, `document.getElementById('confirm-yes').disabled`) {
		t.Fatalf("#confirm-yes is enabled before the acknowledgement")
	}
	br.do("tick the acknowledgement", chromedp.Click(chromedp.CSS("#confirm-ack")))
	br.waitTrue("#confirm-yes enabled", `!document.getElementById('confirm-yes').disabled`, pageTimeout)
	br.do("confirm", chromedp.Click(chromedp.CSS("#confirm-yes")), chromedp.WaitNotVisible(chromedp.CSS("#confirm-dialog")))
	br.waitTrue("the rollback's flash", `!!document.querySelector('#flash .flash-msg.ok[data-deployment]')`, pageTimeout)
	rb := d.waitDeployment(eval[string](br, `document.querySelector('#flash .flash-msg.ok[data-deployment]').dataset.deployment`))
	if rb.Kind != controller.KindRollback || rb.Status != controller.StatusSucceeded {
		t.Fatalf("the page's rollback: %s %s (%s), steps %s", rb.Kind, rb.Status, rb.Error, stepSummary(rb))
	}
	if rb.SchemaChange == nil || !rb.SchemaChange.Confirmed || !rb.SchemaChange.Breaking {
		t.Errorf("rollback's schema_change = %+v, want breaking and confirmed", rb.SchemaChange)
	}
	e.assertServes("v2", string(svc.StandbyColor))

	status, b = d.request(http.MethodGet, "/api/v1/audit", nil, e.viewer)
	if status != http.StatusOK {
		t.Fatalf("audit: status = %d; body %s", status, b)
	}
	var actions []string
	for _, entry := range decode[api.AuditList](t, b).Entries {
		if strings.HasPrefix(entry.Action, "rollback") {
			actions = append(actions, entry.Action+"="+entry.Result)
		}
	}
	// Refused twice (the API call, then the CLI), then confirmed.
	if wantActions := []string{"rollback_confirmed_schema_change=ok", "rollback=schema_change", "rollback=schema_change"}; !slices.Equal(actions, wantActions) {
		t.Errorf("rollback audit entries, newest first = %v, want %v", actions, wantActions)
	}
}
