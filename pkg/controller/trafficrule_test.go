package controller_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

var _ controller.TrafficReader = (*fakeWindows)(nil)

// fakeWindows is a controller.TrafficReader whose windows the test sets.
type fakeWindows struct {
	mu      sync.Mutex
	windows map[controller.Color][2]int // requests, errors
	asked   map[controller.Color]int
	err     error // every read fails with it while set
}

func newFakeWindows() *fakeWindows {
	return &fakeWindows{windows: map[controller.Color][2]int{}, asked: map[controller.Color]int{}}
}

func (f *fakeWindows) set(color controller.Color, requests, errors int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.windows[color] = [2]int{requests, errors}
}

func (f *fakeWindows) Window(_ context.Context, service string, color controller.Color) (requests, errors int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if service != svc {
		return 0, 0, nil
	}
	f.asked[color]++
	if f.err != nil {
		return 0, 0, f.err
	}
	w := f.windows[color]
	return w[0], w[1], nil
}

func (f *fakeWindows) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeWindows) Span() time.Duration { return time.Minute }

func (f *fakeWindows) reads(color controller.Color) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[color]
}

// bakeTrafficHarness has a bake of bake with a traffic rule of 2% over at
// least 20 requests, read from the returned fake.
func bakeTrafficHarness(t *testing.T, bake time.Duration) (*harness, *fakeWindows) {
	t.Helper()
	traffic := newFakeWindows()
	h := newHarnessWith(t, func(o *controller.Options) { o.TrafficReader = traffic }, func(s *controller.ServiceSpec) {
		s.Bake = bake
		s.BakeTraffic = controller.TrafficRule{MaxErrorRate: 0.02, MinRequests: 20}
	})
	return h, traffic
}

func TestBake_TrafficAboveMaxErrorRateSwitchesBackThoughHealthIsFine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, traffic := bakeTrafficHarness(t, time.Minute)
		v1 := h.deployOK("v1")
		blue := h.colorContainers(controller.Blue)
		// Every probe passes; green's real requests fail.
		traffic.set(controller.Green, 200, 15)
		start := time.Now()

		d := h.deploy("v2")

		if d.Status != controller.StatusRolledBack {
			t.Fatalf("status = %s (%q), want rolled_back", d.Status, d.Error)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("deploy took %s, want the first bake round to decide", took)
		}
		if missing := containsAll(d.Error, "bake", "5xx rate 7.5% (15 of 200 requests in the last", "above max 2%"); len(missing) > 0 {
			t.Errorf("error = %q, missing %q", d.Error, missing)
		}
		if s, _ := findStep(d, controller.StepBake); s.Status != controller.StepFailed ||
			!strings.Contains(s.Message, "7.5%") || !strings.Contains(s.Message, "traffic moved back to blue") {
			t.Errorf("bake step = %s %q, want failed with the rate and the switch back", s.Status, s.Message)
		}
		wantSwitchedBack(t, h, blue, v1)
		rolled := h.notes.ofKind(controller.NotifyRolledBack)
		if len(rolled) != 1 || rolled[0].Actor != "bake" || rolled[0].Deployment != d.ID || !strings.Contains(rolled[0].Message, "5xx rate 7.5%") {
			t.Errorf("rolled_back notifications = %+v, want one by bake for %s with the rate", rolled, d.ID)
		}
		if n := traffic.reads(controller.Blue); n != 0 {
			t.Errorf("blue's window read %d times, want only the new color judged", n)
		}
	})
}

func TestBake_TrafficBelowMinRequestsIsNotJudged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, traffic := bakeTrafficHarness(t, 50*time.Millisecond)
		h.deployOK("v1")
		traffic.set(controller.Green, 19, 19)

		d := h.deployOK("v2")

		s, _ := findStep(d, controller.StepBake)
		if want := "traffic rule not applied: 19 requests in the last 50ms, fewer than 20"; !strings.Contains(s.Message, want) {
			t.Errorf("bake step message = %q, want it to contain %q", s.Message, want)
		}
		if traffic.reads(controller.Green) < 2 {
			t.Errorf("green's window read %d times, want every bake round", traffic.reads(controller.Green))
		}
	})
}

func TestBake_TrafficExactlyAtMaxErrorRatePasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, traffic := bakeTrafficHarness(t, 50*time.Millisecond)
		h.deployOK("v1")
		traffic.set(controller.Green, 200, 4)

		d := h.deployOK("v2")

		s, _ := findStep(d, controller.StepBake)
		if want := "5xx rate 2% (4 of 200 requests in the last 50ms), max 2%"; !strings.Contains(s.Message, want) {
			t.Errorf("bake step message = %q, want it to contain %q", s.Message, want)
		}
	})
}

func TestBake_TrafficRuleIsOffWithoutAReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, withBake(50*time.Millisecond), func(s *controller.ServiceSpec) {
			s.BakeTraffic = controller.TrafficRule{MaxErrorRate: 0.02, MinRequests: 1}
		})
		h.deployOK("v1")
		d := h.deployOK("v2")
		if s, _ := findStep(d, controller.StepBake); strings.Contains(s.Message, "5xx") || strings.Contains(s.Message, "traffic rule") {
			t.Errorf("bake step message = %q, want no traffic verdict without a reader", s.Message)
		}
	})
}

func TestWatch_BadTrafficRoundsCountTowardTheThresholdAndRollBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		traffic := newFakeWindows()
		h := newHarnessWith(t, func(o *controller.Options) {
			o.TrafficReader = traffic
			o.Watch.Traffic = controller.TrafficRule{MaxErrorRate: 0.05, MinRequests: 10}
		}, func(s *controller.ServiceSpec) { s.AutoRollback = true })
		h.deployOK("v1")
		v2 := h.deployOK("v2")
		traffic.set(controller.Green, 40, 20)

		h.watchRounds(1) // threshold 2
		if got := h.notes.ofKind(controller.NotifyServiceUnhealthy); len(got) != 0 {
			t.Fatalf("after 1 bad round: %d unhealthy notifications, want 0", len(got))
		}
		if d := h.lastDeployment(); d.ID != v2.ID {
			t.Fatalf("after 1 bad round: last deployment %s (%s), want none started", d.ID, d.Kind)
		}

		h.watchRounds(1)

		got := h.notes.ofKind(controller.NotifyServiceUnhealthy)
		if len(got) != 1 || got[0].Color != controller.Green ||
			!strings.Contains(got[0].Message, "5xx rate 50% (20 of 40 requests in the last 60s) above max 5%") {
			t.Fatalf("unhealthy notifications = %+v, want one for green with the rate", got)
		}
		rb := h.lastDeployment()
		if rb.Kind != controller.KindRollback || rb.Trigger.Actor != "watchdog" {
			t.Fatalf("last deployment = %s by %+v, want a rollback by the watchdog", rb.Kind, rb.Trigger)
		}
		if rb = h.wait(rb.ID); rb.Status != controller.StatusSucceeded {
			t.Fatalf("rollback status = %s (%q), want succeeded", rb.Status, rb.Error)
		}
		wantRolledBack(t, h)
	})
}

func TestWatch_TrafficAtTheLimitOrTooThinPasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		traffic := newFakeWindows()
		h := newHarnessWith(t, func(o *controller.Options) {
			o.TrafficReader = traffic
			o.Watch.Traffic = controller.TrafficRule{MaxErrorRate: 0.05, MinRequests: 10}
		})
		h.deployOK("v1")
		for _, w := range [][2]int{{100, 5}, {9, 9}, {100, 5}, {9, 9}} {
			traffic.set(controller.Blue, w[0], w[1])
			h.watchRounds(1)
		}
		if got := h.notes.ofKind(controller.NotifyServiceUnhealthy); len(got) != 0 {
			t.Errorf("unhealthy notifications = %+v, want none", got)
		}
		if n := traffic.reads(controller.Blue); n != 4 {
			t.Errorf("blue's window read %d times, want once a round", n)
		}
	})
}

// A switch process that does not answer is no reading: the watchdog
// neither counts it as a bad round nor rolls back, and says so once.
func TestWatch_UnreadableTrafficWindowIsSkippedAndWarnedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		traffic := newFakeWindows()
		h := newHarnessWith(t, func(o *controller.Options) {
			o.TrafficReader = traffic
			o.Watch.Traffic = controller.TrafficRule{MaxErrorRate: 0.05, MinRequests: 10}
		}, func(s *controller.ServiceSpec) { s.AutoRollback = true })
		h.deployOK("v1")
		v2 := h.deployOK("v2")
		traffic.fail(controller.Errorf(controller.EUNAVAILABLE, "traffic switch unreachable"))

		h.watchRounds(4) // threshold 2

		if got := h.notes.ofKind(controller.NotifyServiceUnhealthy); len(got) != 0 {
			t.Fatalf("unhealthy notifications = %+v, want none for unreadable windows", got)
		}
		if d := h.lastDeployment(); d.ID != v2.ID {
			t.Fatalf("last deployment %s (%s), want no rollback", d.ID, d.Kind)
		}
		if n := traffic.reads(controller.Green); n != 4 {
			t.Errorf("green's window read %d times, want once a round", n)
		}
		if got := countLogs(h, logrus.WarnLevel, "cannot read the traffic window"); got != 1 {
			t.Errorf("warnings about the unreadable window = %d, want 1", got)
		}

		traffic.fail(nil)
		h.watchRounds(1)
		if got := countLogs(h, logrus.InfoLevel, "traffic window readable again"); got != 1 {
			t.Errorf("notes that the window is readable again = %d, want 1", got)
		}
	})
}

func TestBake_UnreadableTrafficWindowDoesNotRollBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, traffic := bakeTrafficHarness(t, 50*time.Millisecond)
		h.deployOK("v1")
		traffic.fail(controller.Errorf(controller.EUNAVAILABLE, "traffic switch unreachable"))

		d := h.deployOK("v2")

		if s, _ := findStep(d, controller.StepBake); strings.Contains(s.Message, "5xx") {
			t.Errorf("bake step message = %q, want no traffic verdict from an unreadable window", s.Message)
		}
	})
}

func countLogs(h *harness, level logrus.Level, msg string) int {
	n := 0
	for _, e := range h.logs.AllEntries() {
		if e.Level == level && strings.Contains(e.Message, msg) {
			n++
		}
	}
	return n
}
