package controller_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// fakeExitFeed hands the controller's callback to the test, which reports
// exits through it. Its first follow may fail, as a broken stream does.
type fakeExitFeed struct {
	mu        sync.Mutex
	fn        func(service string)
	follows   int
	failFirst error
}

func (f *fakeExitFeed) FollowExits(ctx context.Context, fn func(service string)) error {
	f.mu.Lock()
	f.follows++
	first := f.follows == 1
	f.mu.Unlock()
	if first && f.failFirst != nil {
		return f.failFirst
	}
	f.mu.Lock()
	f.fn = fn
	f.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}

func (f *fakeExitFeed) following() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fn != nil
}

func (f *fakeExitFeed) exit(service string) {
	f.mu.Lock()
	fn := f.fn
	f.mu.Unlock()
	fn(service)
}

// followExits runs FollowExits until the test ends.
func (h *harness) followExits(feed *fakeExitFeed) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.c.FollowExits(ctx)
	}()
	h.t.Cleanup(func() {
		cancel()
		<-done
	})
}

func exitHarness(t *testing.T, feed *fakeExitFeed, mutate ...func(*controller.ServiceSpec)) *harness {
	return newHarnessWith(t, func(o *controller.Options) {
		o.Exits = feed
		o.ExitSettle = 20 * time.Millisecond
	}, mutate...)
}

func TestFollowExits_DeadActiveColorRolledBackWithoutWaitingForARound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		feed := &fakeExitFeed{}
		h := exitHarness(t, feed, func(s *controller.ServiceSpec) { s.AutoRollback = true })
		h.deployOK("v1")
		h.deployOK("v2")
		h.followExits(feed)
		eventually(t, "the feed to be followed", feed.following)

		h.killColor(controller.Green)
		// One exit per replica, and one of a service deployd does not manage.
		feed.exit(svc)
		feed.exit(svc)
		feed.exit("someone-else")

		eventually(t, "a rollback", func() bool { return len(h.rollbacks()) > 0 })
		wantOneAutoRollback(t, h, "reconciler")
	})
}

func TestFollowExits_DeadActiveColorRestartedWithoutStandby(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		feed := &fakeExitFeed{}
		h := exitHarness(t, feed)
		h.deployOK("v1")
		h.followExits(feed)
		eventually(t, "the feed to be followed", feed.following)

		h.killColor(controller.Blue)
		feed.exit(svc)

		eventually(t, "blue running again", func() bool {
			return len(running(h.colorContainers(controller.Blue))) == h.spec.Replicas
		})
		// The repair is announced after the containers run again.
		synctest.Wait()
		if got := h.notes.ofKind(controller.NotifyRepair); len(got) != 1 {
			t.Errorf("repair notifications = %+v, want 1", got)
		}
	})
}

func TestFollowExits_BrokenFeedIsFollowedAgainAndEveryServiceChecked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		feed := &fakeExitFeed{failFirst: errors.New("follow container events: unexpected EOF")}
		h := exitHarness(t, feed, func(s *controller.ServiceSpec) { s.AutoRollback = true })
		h.deployOK("v1")
		h.deployOK("v2")
		// Green died while nobody was listening.
		h.killColor(controller.Green)

		h.followExits(feed)

		eventually(t, "a rollback after the feed came back", func() bool { return len(h.rollbacks()) > 0 })
		wantOneAutoRollback(t, h, "reconciler")
		if !feed.following() {
			t.Error("the feed is not followed again after it broke")
		}
	})
}

func TestFollowExits_WithoutFeedReturnsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.c.FollowExits(context.Background())
		}()
		select {
		case <-done:
		case <-time.After(testDeadline):
			t.Fatal("FollowExits without a feed did not return")
		}
	})
}
