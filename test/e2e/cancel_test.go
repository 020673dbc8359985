package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

func TestCancel_RunningDeployStopsAndTrafficUntouched(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2-fail")
	cfg := defaultSvc()
	// Without the cancel the failing deploy would hold the service for a
	// minute.
	cfg.StartTimeout = 60 * time.Second
	d, v1, upstream := activeV1(e, cfg)

	slow := d.deploy("v2-fail")
	d.waitStep(slow.ID, controller.StepHealth)
	if n := len(e.ofDeployment(slow.ID)); n != 1 {
		t.Fatalf("containers of the running deploy = %d, want 1", n)
	}

	start := time.Now()
	status, b := d.request(http.MethodPost, "/api/v1/deployments/"+slow.ID+"/cancel", nil, e.token)
	if status != http.StatusAccepted {
		t.Fatalf("cancel: status = %d, want %d; body %s", status, http.StatusAccepted, b)
	}
	if got := decode[api.Deployment](t, b); got.ID != slow.ID {
		t.Fatalf("cancel answered deployment %q, want %q", got.ID, slow.ID)
	}
	dep := d.waitDeployment(slow.ID)
	took := time.Since(start)
	t.Logf("cancelled deploy ended %s after the request", took.Round(time.Millisecond))
	if dep.Status != controller.StatusCancelled {
		t.Fatalf("status = %s (%s), want cancelled; steps %s", dep.Status, dep.Error, stepSummary(dep))
	}
	elapsedUnder(t, "cancelling a deploy in its health check", took, 10*time.Second)
	if s := lastStep(dep); s == nil || s.Name != controller.StepHealth || s.Status == controller.StepSucceeded {
		t.Fatalf("steps = %s, want health last and not succeeded", stepSummary(dep))
	}
	assertUntouched(e, v1, upstream, slow.ID)
	if sv := d.service(); sv.ActiveColor != controller.Blue || sv.StandbyColor != controller.NoColor {
		t.Fatalf("service active/standby = %q/%q, want blue and no standby", sv.ActiveColor, sv.StandbyColor)
	}

	// Once ended, it cannot be cancelled again.
	status, b = d.request(http.MethodPost, "/api/v1/deployments/"+slow.ID+"/cancel", nil, e.token)
	if status != http.StatusConflict {
		t.Fatalf("second cancel: status = %d, want %d; body %s", status, http.StatusConflict, b)
	}
	var audited bool
	for _, a := range d.audit() {
		if a.Action == "cancel" && a.Target == slow.ID && a.Status == http.StatusAccepted && a.Result == "ok" && a.Actor == "e2e" {
			audited = true
		}
	}
	if !audited {
		t.Fatalf("audit trail has no accepted cancel of %s by e2e", slow.ID)
	}
}
