package controller_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func retentionHarness(t *testing.T, keep int) *harness {
	t.Helper()
	h := newHarnessWith(t, func(o *controller.Options) { o.Retention = controller.RetentionSpec{Images: keep} })
	if err := h.c.Start(h.ctx()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return h
}

func (h *harness) retain() int {
	h.t.Helper()
	n, err := h.c.Retain(h.ctx())
	if err != nil {
		h.t.Fatalf("Retain: %v", err)
	}
	return n
}

// addOldImages adds demoapp:old1..oldN, each older than the last and all
// older than v1..v3.
func (h *harness) addOldImages(n int) {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 1; i <= n; i++ {
		h.rt.addImage(fmt.Sprintf("sha256:old%d", i), base.Add(-time.Duration(i)*time.Hour), fmt.Sprintf("demoapp:old%d", i))
	}
}

func TestRetain_KeepsNewestImagesBesidesActiveAndStandby(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := retentionHarness(t, 2)
		h.addOldImages(3)
		h.rt.addImage("sha256:other", time.Now(), "otherapp:v1")
		h.deployOK("v1") // becomes standby
		h.deployOK("v2") // active
		// Neither active nor standby: v3 (newest), old1..old3.

		if n := h.retain(); n != 2 {
			t.Fatalf("removed = %d, want 2", n)
		}
		want := []string{"sha256:demoapp:v1", "sha256:demoapp:v2", "sha256:demoapp:v3", "sha256:old1", "sha256:other"}
		if got := h.rt.imageIDs(); !slices.Equal(got, want) {
			t.Errorf("images left = %v, want %v", got, want)
		}
	})
}

func TestRetain_NeverRemovesActiveOrStandbyImageEvenWhenOldest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := retentionHarness(t, 1)
		h.deployOK("v1")
		h.deployOK("v2")
		// Their containers are gone, so only the store protects their images.
		h.rt.set(func(rt *fakeRuntime) { clear(rt.containers) })
		h.addOldImages(2)

		h.retain()
		for _, id := range []string{"sha256:demoapp:v1", "sha256:demoapp:v2"} {
			if !slices.Contains(h.rt.imageIDs(), id) {
				t.Errorf("image %s of the active or standby color was removed", id)
			}
		}
		if got := h.rt.countCalls("RemoveImage sha256:demoapp:v"); got != 0 {
			t.Errorf("RemoveImage called %d times on active/standby images, want 0", got)
		}
	})
}

func TestRetain_SkipsImagesInUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := retentionHarness(t, 1)
		h.addOldImages(2)
		h.deployOK("v1")
		h.rt.set(func(rt *fakeRuntime) {
			rt.removeImageErr = func(id string) error {
				if id == "sha256:old2" {
					return fmt.Errorf("used by a container outside deployd: %w", controller.ErrConflict)
				}
				return nil
			}
		})
		// Kept: v3 (newest besides active v1). Removable: v2, old1, old2 (in use).
		n, err := h.c.Retain(h.ctx())
		if err != nil {
			t.Fatalf("Retain = %v, want a conflict skipped quietly", err)
		}
		if n != 2 {
			t.Errorf("removed = %d, want 2", n)
		}
		if !slices.Contains(h.rt.imageIDs(), "sha256:old2") {
			t.Errorf("image in use was removed")
		}
	})
}

func TestRetain_RemovesStoppedContainersOfNeitherColorOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := retentionHarness(t, 0)
		h.deployOK("v1")
		h.deployOK("v2")
		// A third color slot does not exist, so make blue the old one: with
		// standby cleared, blue's stopped containers are debris.
		h.store.set(func(s *memStore) {
			st := s.services[svc]
			st.StandbyColor, st.StandbyImage = controller.NoColor, ""
			s.services[svc] = st
		})
		h.rt.set(func(rt *fakeRuntime) {
			for _, c := range rt.containers {
				c.State, c.Address = "exited", ""
			}
		})
		before := h.imagesAndActive()

		if n := h.retain(); n != 2 {
			t.Fatalf("removed = %d, want 2 (blue's stopped replicas)", n)
		}
		if got := h.colorContainers(controller.Blue); len(got) != 0 {
			t.Errorf("blue containers left = %v, want none", namesOf(got))
		}
		if got := h.colorContainers(controller.Green); len(got) != 2 {
			t.Errorf("green (active) containers = %v, want both kept though stopped", namesOf(got))
		}
		if got := h.imagesAndActive(); diff(got, before) != "" {
			t.Errorf("Retention.Images 0 must keep every image:%s", diff(got, before))
		}
	})
}

func TestRetain_SkipsServiceWhileDeploying(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := retentionHarness(t, 0)
		h.addOldImages(1)
		h.deployOK("v1")
		var n int
		var rerr error
		h.duringSwitch("v2", func() { n, rerr = h.c.Retain(h.ctx()) })
		if rerr != nil || n != 0 {
			t.Fatalf("Retain during a deploy = %d, %v; want 0, nil", n, rerr)
		}
	})
}

func TestRetain_EngineErrorsAreReturned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := retentionHarness(t, 1)
		h.deployOK("v1")
		h.rt.set(func(rt *fakeRuntime) { rt.containersErr = controller.ErrUnavailable })
		if _, err := h.c.Retain(h.ctx()); !errors.Is(err, controller.ErrUnavailable) {
			t.Fatalf("Retain = %v, want ErrUnavailable", err)
		}
	})
}

func (h *harness) imagesAndActive() []string {
	return append(h.rt.imageIDs(), string(h.store.service(svc).ActiveColor))
}
