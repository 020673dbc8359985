package controller_test

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// TestServiceView_ReadsTheStoreOnlyAfterAWrite proves the status view's
// store part is kept between writes, and that every kind of write a deploy
// makes shows in the next view: the running deployment, the switch, the
// failure that stays on the card.
func TestServiceView_ReadsTheStoreOnlyAfterAWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Health.StartTimeout = 150 * time.Millisecond })
		v1 := h.deployOK("v1")
		view := func() controller.ServiceView {
			t.Helper()
			v, err := h.c.Service(h.ctx(), svc)
			if err != nil {
				t.Fatalf("Service: %v", err)
			}
			return v
		}
		view()
		before, _ := h.store.accesses()
		for range 100 {
			view()
		}
		if after, _ := h.store.accesses(); after != before {
			t.Fatalf("store reads for 100 views without a write = %d, want 0", after-before)
		}

		v2 := h.deployOK("v2")
		v := view()
		if v.ActiveImage != v2.Image || v.Deployment == nil || v.Deployment.ID != v2.ID || v.LastSwitch == nil || v.LastSwitch.ID != v2.ID {
			t.Fatalf("after deploying v2: active %s, deployment %v, last switch %v; want %s and %s", v.ActiveImage, v.Deployment, v.LastSwitch, v2.Image, v2.ID)
		}
		if v.ActiveDeployment == nil || v.ActiveDeployment.ID != v2.ID || v.StandbyDeployment == nil || v.StandbyImage != v1.Image {
			t.Fatalf("after deploying v2: active deployment %v, standby %s %v", v.ActiveDeployment, v.StandbyImage, v.StandbyDeployment)
		}

		h.prober.failUntil("web-blue-", errors.New("GET /health: status 503, want 2xx"), nil)
		v3 := h.deploy("v3")
		if v3.Status != controller.StatusFailed {
			t.Fatalf("deploy v3: %s, want failed", v3.Status)
		}
		v = view()
		if v.LastFailure == nil || v.LastFailure.ID != v3.ID || v.Deployment == nil || v.Deployment.ID != v3.ID || v.ActiveImage != v2.Image {
			t.Fatalf("after the failed v3: last failure %v, deployment %v, active %s; want %s and v2 active", v.LastFailure, v.Deployment, v.ActiveImage, v3.ID)
		}

		// A view's deployments are the caller's to keep: changing one
		// changes no later view.
		v.Deployment.Status = controller.StatusSucceeded
		if again := view(); again.Deployment.Status != controller.StatusFailed {
			t.Fatalf("a caller's change to its view leaked into the next: status %s", again.Deployment.Status)
		}
	})
}

func TestServiceView_StandbyNamesWhatARollbackReturnsTo(t *testing.T) {
	tests := []struct {
		name string
		view controller.ServiceView
		want string
	}{
		{"first deploy, nothing before", controller.ServiceView{ActiveColor: controller.Blue, ActiveImage: "app:v1"}, controller.StandbyNone},
		{"containers running", controller.ServiceView{StandbyColor: controller.Blue, StandbyImage: "app:v1", StandbyWarm: true}, controller.StandbyWarm},
		{"image recorded, containers gone", controller.ServiceView{StandbyColor: controller.Blue, StandbyImage: "app:v1"}, controller.StandbyCold},
		{"color without an image", controller.ServiceView{StandbyColor: controller.Green}, controller.StandbyNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.view.Standby(); got != tt.want {
				t.Fatalf("Standby() = %q, want %q", got, tt.want)
			}
		})
	}
}
