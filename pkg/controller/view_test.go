package controller_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// fakeContainerFeed hands the controller's callback to the test, which
// reports changes through it, and can break the stream as an engine outage
// does.
type fakeContainerFeed struct {
	mu      sync.Mutex
	fn      func(service string)
	follows int
	broken  chan struct{}
}

func newFakeContainerFeed() *fakeContainerFeed {
	return &fakeContainerFeed{broken: make(chan struct{})}
}

func (f *fakeContainerFeed) FollowContainers(ctx context.Context, since time.Time, fn func(service string)) error {
	f.mu.Lock()
	f.follows++
	f.fn = fn
	broken := f.broken
	f.mu.Unlock()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-broken:
		f.mu.Lock()
		f.fn = nil
		f.broken = make(chan struct{})
		f.mu.Unlock()
		return fmt.Errorf("follow container events: %w", controller.ErrUnavailable)
	}
}

func (f *fakeContainerFeed) followCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.follows
}

func (f *fakeContainerFeed) change(service string) {
	f.mu.Lock()
	fn := f.fn
	f.mu.Unlock()
	fn(service)
}

// breakStream ends the current follow with an error.
func (f *fakeContainerFeed) breakStream() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.broken)
}

const viewResync = 30 * time.Second

func viewHarness(t *testing.T, feed *fakeContainerFeed) *harness {
	return newHarnessWith(t, func(o *controller.Options) {
		o.Containers = feed
		o.ViewResync = viewResync
	})
}

// followContainers runs FollowContainers until the test ends and returns
// once the first full resync is in the view.
func (h *harness) followContainers(feed *fakeContainerFeed) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.c.FollowContainers(ctx)
	}()
	h.t.Cleanup(func() {
		cancel()
		<-done
	})
	synctest.Wait()
}

// stateOf returns the state of the service's container named name as
// Service reports it, "" when it shows none.
func (h *harness) stateOf(name string) string {
	h.t.Helper()
	v, err := h.c.Service(h.ctx(), svc)
	if err != nil {
		h.t.Fatalf("Service: %v", err)
	}
	for _, cv := range v.Colors {
		for _, c := range append(cv.Containers, cv.Others...) {
			if c.Name == name {
				return c.State
			}
		}
	}
	return ""
}

// killFirst makes the service's first replica of color exit behind deployd's back.
func (h *harness) killFirst(color controller.Color) string {
	h.t.Helper()
	cs := h.colorContainers(color)
	if len(cs) == 0 {
		h.t.Fatalf("no %s containers", color)
	}
	h.rt.set(func(rt *fakeRuntime) {
		c := rt.containers[cs[0].ID]
		c.State, c.Address, c.ExitCode = "exited", "", 137
	})
	return cs[0].Name
}

func TestServiceView_AnswersFromMemoryWithoutARuntimeCallPerRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		feed := newFakeContainerFeed()
		h := viewHarness(t, feed)
		h.deployOK("v1")
		h.followContainers(feed)

		before := h.rt.lists.Load()
		for range 100 {
			if _, err := h.c.Service(h.ctx(), svc); err != nil {
				t.Fatalf("Service: %v", err)
			}
			if _, err := h.c.Services(h.ctx()); err != nil {
				t.Fatalf("Services: %v", err)
			}
		}
		if got := h.rt.lists.Load() - before; got != 0 {
			t.Fatalf("Containers calls for 200 views = %d, want 0", got)
		}
	})
}

func TestServiceView_AKilledContainerShowsAfterItsEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		feed := newFakeContainerFeed()
		h := viewHarness(t, feed)
		d := h.deployOK("v1")
		h.followContainers(feed)

		name := h.killFirst(d.ToColor)
		before := h.rt.lists.Load()
		feed.change(svc)
		synctest.Wait()
		if got, want := h.stateOf(name), "exited"; got != want {
			t.Fatalf("state of %s after its event = %q, want %q", name, got, want)
		}
		if got := h.rt.lists.Load() - before; got != 1 {
			t.Fatalf("Containers calls for one event = %d, want 1", got)
		}
	})
}

func TestServiceView_AMissedEventIsCaughtByTheResync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		feed := newFakeContainerFeed()
		h := viewHarness(t, feed)
		d := h.deployOK("v1")
		h.followContainers(feed)

		name := h.killFirst(d.ToColor)
		if got, want := h.stateOf(name), "running"; got != want {
			t.Fatalf("state of %s with no event yet = %q, want %q (from memory)", name, got, want)
		}
		time.Sleep(viewResync)
		synctest.Wait()
		if got, want := h.stateOf(name), "exited"; got != want {
			t.Fatalf("state of %s after a resync = %q, want %q", name, got, want)
		}
	})
}

func TestServiceView_AnOutageAsksTheRuntimeThenResyncsOnReconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		feed := newFakeContainerFeed()
		h := viewHarness(t, feed)
		d := h.deployOK("v1")
		h.followContainers(feed)

		outage := fmt.Errorf("dial unix docker.sock: %w", controller.ErrUnavailable)
		h.rt.set(func(rt *fakeRuntime) { rt.containersErr = outage })
		feed.breakStream()
		synctest.Wait()
		// The view was dropped: a request says the engine is unreachable
		// instead of showing what was there before the outage.
		_, err := h.c.Service(h.ctx(), svc)
		var ce *controller.Error
		if !errors.As(err, &ce) || ce.Code != controller.EUNAVAILABLE {
			t.Fatalf("Service during the outage: err = %v, want EUNAVAILABLE", err)
		}

		// A container dies while nobody listens; the engine comes back.
		name := h.killFirst(d.ToColor)
		h.rt.set(func(rt *fakeRuntime) { rt.containersErr = nil })
		time.Sleep(2 * time.Second) // past the first retry's backoff
		synctest.Wait()
		if got, want := feed.followCount(), 2; got != want {
			t.Fatalf("follows = %d, want %d", got, want)
		}
		before := h.rt.lists.Load()
		if got, want := h.stateOf(name), "exited"; got != want {
			t.Fatalf("state of %s after the reconnect = %q, want %q", name, got, want)
		}
		if got := h.rt.lists.Load() - before; got != 0 {
			t.Fatalf("Containers calls for a view after the reconnect = %d, want 0", got)
		}
	})
}
