package swarm

import (
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

// deployd loses its manager and its disk; started again with an empty
// store it rebuilds its state from the labels on the Swarm services,
// points traffic at the active set and can roll back.
func TestSwarm_DeploydRescheduledWithAnEmptyStoreRebuildsFromTheCluster(t *testing.T) {
	started := time.Now()
	s := newStack(t, "")
	t.Logf("stack up in %s", time.Since(started).Round(time.Millisecond))

	v1 := s.deploy("v1")
	v2 := s.deploy("v2")
	if v1.Status != controller.StatusSucceeded || v2.Status != controller.StatusSucceeded {
		t.Fatalf("deploy v1: %s (%s); v2: %s (%s)", v1.Status, v1.Error, v2.Status, v2.Error)
	}
	s.assertServes("v2", "green")

	lost := time.Now()
	s.loseDeployd()
	t.Logf("deployd and its data volume removed in %s", time.Since(lost).Round(time.Millisecond))
	s.rescheduleDeployd("data-rescheduled")
	t.Logf("new deployd answers %s after the loss", time.Since(lost).Round(time.Millisecond))

	if log := s.deploydLogs(); !strings.Contains(log, "state of "+s.svc+" rebuilt from the cluster") {
		t.Errorf("deployd's log does not say the state was rebuilt from the cluster:\n%s", log)
	}
	v := s.service()
	if v.ActiveColor != controller.Green || v.ActiveImage != v2.Image ||
		v.StandbyColor != controller.Blue || v.StandbyImage != v1.Image {
		t.Fatalf("rebuilt service = active %s %s, standby %s %s; want green %s, blue %s",
			v.ActiveColor, v.ActiveImage, v.StandbyColor, v.StandbyImage, v2.Image, v1.Image)
	}
	// A color lists as its own only the replicas of the deployment the
	// state names: the rebuilt state kept both deployments.
	wantSet(t, "active green", v.Colors.Green, v2.ID)
	wantSet(t, "standby blue", v.Colors.Blue, v1.ID)

	deadline := time.Now().Add(30 * time.Second)
	for {
		ver, color, err := s.appVersion()
		if err == nil && ver == "v2" && color == "green" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not serve v2 on green after the rebuild: %s %s %v", ver, color, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("nginx serves v2 again %s after the loss", time.Since(lost).Round(time.Millisecond))
	s.assertServes("v2", "green")

	rb := s.deploy("")
	if rb.Status != controller.StatusSucceeded || rb.Image != v1.Image {
		t.Fatalf("rollback after the rebuild = %s %s (%s), want succeeded to %s", rb.Status, rb.Image, rb.Error, v1.Image)
	}
	t.Logf("rolled back to v1 in %s", rb.FinishedAt.Sub(rb.CreatedAt).Round(time.Millisecond))
	s.assertServes("v1", "blue")
	if v := s.service(); v.ActiveColor != controller.Blue || v.StandbyImage != v2.Image {
		t.Errorf("after the rollback: active %s, standby %s; want blue, standby %s", v.ActiveColor, v.StandbyImage, v2.Image)
	}
	t.Logf("whole test %s", time.Since(started).Round(time.Millisecond))
}

// wantSet checks that a color shows its running replicas of deployment
// (named after its last 6 characters) and nothing else.
func wantSet(t *testing.T, what string, cv api.ColorView, deployment string) {
	t.Helper()
	short := deployment[len(deployment)-6:]
	if len(cv.Containers) != 2 || len(cv.Others) != 0 {
		t.Fatalf("%s: %d replicas and %d others, want 2 and none", what, len(cv.Containers), len(cv.Others))
	}
	for _, ct := range cv.Containers {
		if ct.State != "running" || !strings.Contains(ct.Name, "-"+short+"-") {
			t.Errorf("%s: replica %s is %s, want running, of deployment %s", what, ct.Name, ct.State, deployment)
		}
	}
}
