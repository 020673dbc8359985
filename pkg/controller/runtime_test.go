package controller_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// A service on the Swarm runtime is deployed, rolled back and reconciled
// through that runtime alone: the local engine's sees none of it.
func TestRuntime_SwarmServiceUsesOnlyTheSwarmRuntime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		local := newFakeRuntime()
		h := newHarnessWith(t, func(o *controller.Options) {
			o.Swarm, o.Runtime = o.Runtime, local
		}, func(s *controller.ServiceSpec) { s.Runtime = controller.RuntimeSwarm })
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatal(err)
		}
		h.deployOK("v1")
		h.deployOK("v2")
		if rb := h.wait(h.rollback().ID); rb.Status != controller.StatusSucceeded {
			t.Fatalf("rollback = %s (%s), want succeeded", rb.Status, rb.Error)
		}
		if _, err := h.c.Reconcile(h.ctx()); err != nil {
			t.Fatal(err)
		}
		if n := len(h.rt.list(svc)); n != 4 {
			t.Errorf("containers on the swarm runtime = %d, want 4 (both colors)", n)
		}
		local.mu.Lock()
		defer local.mu.Unlock()
		for _, call := range local.calls {
			if call != "Ping" { // the readiness of the local engine
				t.Errorf("local runtime was called: %s", call)
			}
		}
	})
}

func TestRuntime_StartRefusesASwarmServiceWithoutASwarm(t *testing.T) {
	h := newHarness(t, func(s *controller.ServiceSpec) { s.Runtime = controller.RuntimeSwarm })
	err := h.c.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "service web: runtime swarm is not available") {
		t.Fatalf("Start = %v, want it to refuse the swarm service", err)
	}
}

// pinningRuntime is a cluster runtime: it pins each tag to the digest the
// registry has for it at the moment (pins), and runs only pinned images.
type pinningRuntime struct {
	*fakeRuntime
	mu   sync.Mutex
	pins map[string]string // tag ref -> digest
}

func (p *pinningRuntime) PinImage(_ context.Context, ref string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name, _, _ := strings.Cut(ref, ":")
	d, ok := p.pins[ref]
	if !ok {
		return "", controller.ErrNotFound
	}
	return name + "@" + d, nil
}

func (p *pinningRuntime) move(ref, digest string) {
	p.mu.Lock()
	p.pins[ref] = digest
	p.mu.Unlock()
	p.fakeRuntime.mu.Lock()
	defer p.fakeRuntime.mu.Unlock()
	p.addImageLocked(digest, time.Now(), ref+"@"+digest)
}

// On a cluster runtime the pull step pins the tag; the deployment, the
// containers and the standby keep the digest, so a rollback runs the bytes
// that ran before even after the tag moved.
func TestRuntime_ClusterDeployRecordsAndRollsBackToThePinnedDigest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
			d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
			d3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
		)
		var pin *pinningRuntime
		h := newHarnessWith(t, func(o *controller.Options) {
			pin = &pinningRuntime{fakeRuntime: o.Runtime.(*fakeRuntime), pins: map[string]string{}}
			o.Swarm = pin
		}, func(s *controller.ServiceSpec) { s.Runtime = controller.RuntimeSwarm })
		pin.move("demoapp:v1", d1)
		pin.move("demoapp:v2", d2)
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatal(err)
		}
		v1 := h.deployOK("v1")
		if v1.Image != "demoapp:v1@"+d1 {
			t.Fatalf("v1 image = %q, want it pinned to %s", v1.Image, d1)
		}
		if msg := v1.Steps[0].Message; msg != "image demoapp:v1 pinned to demoapp:v1@"+d1 {
			t.Errorf("pull step = %q, want it to name the digest", msg)
		}
		for _, ct := range h.colorContainers(controller.Blue) {
			if ct.Image != v1.Image {
				t.Errorf("container %s runs %s, want %s", ct.Name, ct.Image, v1.Image)
			}
		}
		h.deployOK("v2")
		pin.move("demoapp:v1", d3) // v1 rebuilt and pushed again
		rb := h.wait(h.rollback().ID)
		if rb.Status != controller.StatusSucceeded || rb.Image != "demoapp:v1@"+d1 {
			t.Fatalf("rollback = %s %q (%s), want succeeded on the v1 that ran before", rb.Status, rb.Image, rb.Error)
		}
	})
}
