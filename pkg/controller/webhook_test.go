package controller_test

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func webhookRequest(image, ref string) controller.DeployRequest {
	return controller.DeployRequest{Image: image, Trigger: controller.Trigger{Source: "webhook", Actor: "ci", Ref: ref, Commit: "9fceb02"}}
}

// deploymentCount returns how many deployments the store holds.
func (h *harness) deploymentCount() int {
	h.t.Helper()
	ds, err := h.store.ListDeployments(h.ctx(), "", 0)
	if err != nil {
		h.t.Fatalf("ListDeployments: %v", err)
	}
	return len(ds)
}

func TestDeployDelivery_ReplayReturnsSameDeploymentAndStartsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		first, replayed, err := h.c.DeployDelivery(h.ctx(), "72d3162e-cc78", svc, webhookRequest("v1", "refs/heads/main"))
		if err != nil {
			t.Fatalf("DeployDelivery: %v", err)
		}
		if replayed {
			t.Error("first delivery reported as replayed")
		}
		if first.Trigger.Delivery != "72d3162e-cc78" || first.Trigger.Ref != "refs/heads/main" {
			t.Errorf("trigger delivery/ref = %q/%q, want 72d3162e-cc78/refs/heads/main", first.Trigger.Delivery, first.Trigger.Ref)
		}
		h.wait(first.ID)
		calls := len(h.rt.callLog())
		deployments := h.deploymentCount()

		again, replayed, err := h.c.DeployDelivery(h.ctx(), "72d3162e-cc78", svc, webhookRequest("v2", "refs/heads/main"))
		if err != nil {
			t.Fatalf("DeployDelivery replay: %v", err)
		}
		if !replayed {
			t.Error("second copy of the delivery not reported as replayed")
		}
		if again.ID != first.ID || again.Image != "demoapp:v1" || again.Status != controller.StatusSucceeded {
			t.Errorf("replay returned %s %s %s, want the first deployment %s demoapp:v1 succeeded", again.ID, again.Image, again.Status, first.ID)
		}
		if n := h.deploymentCount(); n != deployments {
			t.Errorf("deployments after the replay = %d, want %d", n, deployments)
		}
		if n := len(h.rt.callLog()); n != calls {
			t.Errorf("runtime calls after the replay = %v, want none new", h.rt.callLog()[calls:])
		}

		other, replayed, err := h.c.DeployDelivery(h.ctx(), "a-new-delivery", svc, webhookRequest("v2", "refs/heads/main"))
		if err != nil || replayed || other.ID == first.ID {
			t.Fatalf("new delivery = %s, replayed %v, err %v; want a new deployment", other.ID, replayed, err)
		}
		h.wait(other.ID)
	})
}

func TestDeployDelivery_WithoutKeyDeploysAndRemembersNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		d, replayed, err := h.c.DeployDelivery(h.ctx(), "", svc, webhookRequest("v1", "refs/heads/main"))
		if err != nil || replayed {
			t.Fatalf("DeployDelivery without key: replayed %v, err %v; want a plain deploy", replayed, err)
		}
		h.wait(d.ID)
		h.store.set(func(s *memStore) {
			if len(s.deliveries) != 0 {
				t.Errorf("deliveries remembered = %v, want none", s.deliveries)
			}
		})
	})
}

func TestDeployDelivery_RefusalsTouchNoStore(t *testing.T) {
	h := newHarness(t, func(s *controller.ServiceSpec) {
		s.AllowedRefs = []string{"refs/heads/main", "refs/tags/release"}
		s.AllowedTags = `v[0-9]+`
	})
	tests := []struct {
		name     string
		service  string
		image    string
		ref      string
		wantCode string
	}{
		{"ref not allowed", svc, "v1", "refs/heads/feature", controller.EFORBIDDEN},
		{"no ref while refs are restricted", svc, "v1", "", controller.EFORBIDDEN},
		{"ref prefix is not the ref", svc, "v1", "refs/heads/main-old", controller.EFORBIDDEN},
		{"invalid image", svc, "v1;rm -rf", "refs/heads/main", controller.EINVALID},
		{"image of another repository", svc, "other:v1", "refs/heads/main", controller.EFORBIDDEN},
		{"tag outside allowed_tags", svc, "latest", "refs/heads/main", controller.EINVALID},
		{"unknown service", "nope", "v1", "refs/heads/main", controller.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads, writes := h.store.accesses()
			_, _, err := h.c.DeployDelivery(h.ctx(), "delivery-"+tt.name, tt.service, webhookRequest(tt.image, tt.ref))
			if got := controller.ErrorCode(err); got != tt.wantCode {
				t.Fatalf("error code = %q (err %v), want %q", got, err, tt.wantCode)
			}
			r, w := h.store.accesses()
			if r != reads || w != writes {
				t.Errorf("store reads/writes during a refused delivery = %d/%d, want 0/0", r-reads, w-writes)
			}
		})
	}
	if n := h.deploymentCount(); n != 0 {
		t.Errorf("deployments after refused deliveries = %d, want 0", n)
	}
	if n := len(h.rt.callLog()); n != 0 {
		t.Errorf("runtime calls after refused deliveries = %v, want none", h.rt.callLog())
	}

	// The refusals remembered nothing: the allowed ref goes through.
	d, replayed, err := h.c.DeployDelivery(h.ctx(), "delivery-ref not allowed", svc, webhookRequest("v1", "refs/tags/release"))
	if err != nil || replayed {
		t.Fatalf("allowed delivery: replayed %v, err %v; want a new deploy", replayed, err)
	}
	if end := h.wait(d.ID); end.Status != controller.StatusSucceeded {
		t.Errorf("allowed delivery's deploy status = %s (%q), want succeeded", end.Status, end.Error)
	}
}

func TestDeployDelivery_ConcurrentCopiesStartOneDeployment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		const copies = 8
		type result struct {
			id       string
			replayed bool
			err      error
		}
		results := make([]result, copies)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range copies {
			wg.Go(func() {
				<-start
				d, replayed, err := h.c.DeployDelivery(h.ctx(), "same-delivery", svc, webhookRequest("v1", "refs/heads/main"))
				results[i] = result{d.ID, replayed, err}
			})
		}
		close(start)
		wg.Wait()

		fresh := 0
		for i, r := range results {
			if r.err != nil {
				t.Fatalf("copy %d: %v", i, r.err)
			}
			if r.id != results[0].id {
				t.Errorf("copy %d got deployment %s, copy 0 got %s; want one deployment for all", i, r.id, results[0].id)
			}
			if !r.replayed {
				fresh++
			}
		}
		if fresh != 1 {
			t.Errorf("copies that were not replays = %d, want exactly 1", fresh)
		}
		h.wait(results[0].id)
		if n := h.deploymentCount(); n != 1 {
			t.Errorf("deployments = %d, want 1", n)
		}
		if n := h.rt.countCalls("StartContainer"); n != h.spec.Replicas {
			t.Errorf("StartContainer calls = %d, want %d (one deploy)", n, h.spec.Replicas)
		}
	})
}

func TestDeployDelivery_SlowDeliveryHoldsUpNoOtherService(t *testing.T) {
	// Real time, not a bubble: a regression to one sync.Mutex for every
	// delivery would hang a bubble (a goroutine waiting on a mutex never
	// lets its fake time move) instead of failing.
	api := baseSpec()
	api.Name = "api"
	h := newHarnessWith(t, func(o *controller.Options) { o.Services = append(o.Services, api) })
	inLookup := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	releaseSlow := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseSlow)
	h.store.set(func(s *memStore) {
		s.onGetDelivery = func(key string) {
			if key == "slow-web" {
				close(inLookup)
				<-release
			}
		}
	})
	ctx := h.ctx()

	slow := make(chan error, 1)
	go func() {
		_, _, err := h.c.DeployDelivery(ctx, "slow-web", svc, webhookRequest("v1", "refs/heads/main"))
		slow <- err
	}()
	select {
	case <-inLookup:
	case <-time.After(testDeadline):
		t.Fatal("the web delivery never looked up its key")
	}

	type result struct {
		d   controller.Deployment
		err error
	}
	fast := make(chan result, 1)
	go func() {
		d, _, err := h.c.DeployDelivery(ctx, "fast-api", api.Name, webhookRequest("v1", "refs/heads/main"))
		fast <- result{d, err}
	}()
	select {
	case r := <-fast:
		if r.err != nil {
			t.Fatalf("api delivery: %v", r.err)
		}
		if end := h.wait(r.d.ID); end.Service != api.Name || end.Status != controller.StatusSucceeded {
			t.Errorf("api delivery's deploy = %s %s (%q), want api succeeded", end.Service, end.Status, end.Error)
		}
	case <-time.After(testDeadline):
		t.Fatal("the api delivery waited for web's slow one")
	}

	releaseSlow()
	select {
	case err := <-slow:
		if err != nil {
			t.Fatalf("web delivery: %v", err)
		}
	case <-time.After(testDeadline):
		t.Fatal("the web delivery did not finish once released")
	}
	if n := h.deploymentCount(); n != 2 {
		t.Errorf("deployments = %d, want 2 (one per service)", n)
	}
}
