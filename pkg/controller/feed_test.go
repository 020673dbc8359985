package controller_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/deployd/deployd/pkg/controller"
)

// feedSince reads the system feed after cursor and fails the test on an
// error.
func (h *harness) feedSince(cursor controller.FeedCursor, service string) controller.FeedPage {
	h.t.Helper()
	page, err := h.c.Feed(cursor, service)
	if err != nil {
		h.t.Fatalf("Feed(%s, %q): %v", cursor, service, err)
	}
	return page
}

// feedHead is the cursor of the feed's newest event.
func (h *harness) feedHead() controller.FeedCursor {
	h.t.Helper()
	return h.feedSince(controller.FeedCursor{}, "").Next
}

func ofType(evs []controller.FeedEvent, types ...string) []controller.FeedEvent {
	var out []controller.FeedEvent
	for _, e := range evs {
		if slices.Contains(types, e.Type) {
			out = append(out, e)
		}
	}
	return out
}

func TestFeed_ADeployPublishesItsProgressInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		start := h.feedHead()
		d := h.deployOK("v1")

		page := h.feedSince(start, "")
		for i, e := range page.Events {
			if want := start.Seq + uint64(i) + 1; e.Seq != want {
				t.Fatalf("event %d has seq %d, want %d: seqs grow by one", i, e.Seq, want)
			}
			if e.Service != svc || e.Time.IsZero() || e.Time.Location().String() != "UTC" {
				t.Errorf("event %+v: want service %s and a UTC time", e, svc)
			}
		}
		if page.Next.Seq != start.Seq+uint64(len(page.Events)) {
			t.Errorf("next = %s after %d events from %s", page.Next, len(page.Events), start)
		}

		var statuses []string
		for _, e := range ofType(page.Events, controller.FeedDeployment) {
			statuses = append(statuses, e.Status)
			if e.Deployment != d.ID || e.Kind != "deploy" || e.Image != "demoapp:v1" || e.Actor != d.Trigger.Actor {
				t.Errorf("deployment event %+v, want deployment %s kind deploy image demoapp:v1", e, d.ID)
			}
		}
		if want := []string{"queued", "running", "succeeded"}; !slices.Equal(statuses, want) {
			t.Fatalf("deployment statuses = %v, want %v", statuses, want)
		}

		// Steps and logs come between running and the final status, in the
		// order of the deployment's own stream.
		progress := ofType(page.Events, controller.FeedDeployment, controller.FeedStep, controller.FeedLog)
		evs, _, _, err := h.c.Events(h.ctx(), d.ID, 0)
		if err != nil {
			t.Fatalf("Events: %v", err)
		}
		if len(progress) != len(evs) {
			t.Fatalf("feed has %d progress events, the deployment's stream %d", len(progress), len(evs))
		}
		types := map[string]string{controller.EventStatus: controller.FeedDeployment,
			controller.EventStep: controller.FeedStep, controller.EventLog: controller.FeedLog}
		var steps, logs int
		for i, e := range progress {
			want := evs[i]
			if e.Type != types[want.Type] || e.Step != want.Step || e.Status != want.Status || e.Message != want.Message || e.Deployment != d.ID {
				t.Fatalf("progress event %d = %+v, want %+v", i, e, want)
			}
			switch e.Type {
			case controller.FeedStep:
				steps++
			case controller.FeedLog:
				logs++
			}
		}
		if steps == 0 || logs == 0 {
			t.Errorf("%d step and %d log events, want some of each", steps, logs)
		}

		// The finished deploy moved the active color.
		svcEvents := ofType(page.Events, controller.FeedService)
		if len(svcEvents) == 0 || !strings.Contains(svcEvents[len(svcEvents)-1].Message, "active "+string(d.ToColor)) {
			t.Errorf("service events = %+v, want the last to say active %s", svcEvents, d.ToColor)
		}
	})
}

func TestFeed_EveryNotificationIsANotice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		start := h.feedHead()
		h.deployOK("v1")
		h.prober.setVerdict(func(name string, n int) error { return errors.New("boom") })
		failed := h.deploy("v2")
		if failed.Status != controller.StatusFailed {
			t.Fatalf("deploy v2 status = %s, want failed", failed.Status)
		}

		notes := h.notes.all()
		notices := ofType(h.feedSince(start, "").Events, controller.FeedNotice)
		if len(notices) != len(notes) || len(notes) == 0 {
			t.Fatalf("%d notices for %d notifications", len(notices), len(notes))
		}
		for i, n := range notes {
			e := notices[i]
			if e.Kind != n.Kind || e.Service != n.Service || e.Deployment != n.Deployment || e.Actor != n.Actor || e.Message != n.Message {
				t.Errorf("notice %d = %+v, want notification %+v", i, e, n)
			}
		}
		if got := notices[len(notices)-1]; got.Kind != controller.NotifyDeployFailed || got.Deployment != failed.ID {
			t.Errorf("last notice = %+v, want deploy_failed of %s", got, failed.ID)
		}
	})
}

func TestFeed_ACursorItCannotResumeIsLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 8
		h := newHarnessWith(t, func(o *controller.Options) { o.FeedSize = size })
		start := h.feedHead()
		h.deployOK("v1")
		head := h.feedHead()
		if head.Seq-start.Seq <= size {
			t.Fatalf("a deploy published %d events; the test needs more than %d", head.Seq-start.Seq, size)
		}

		tests := []struct {
			name   string
			cursor controller.FeedCursor
		}{
			{"evicted", start},
			{"one before the oldest kept", controller.FeedCursor{Epoch: head.Epoch, Seq: head.Seq - size - 1}},
			{"another process", controller.FeedCursor{Epoch: "zz" + head.Epoch, Seq: head.Seq}},
			{"ahead of the feed", controller.FeedCursor{Epoch: head.Epoch, Seq: head.Seq + 1}},
		}
		for _, tt := range tests {
			page, err := h.c.Feed(tt.cursor, "")
			if !errors.Is(err, controller.ErrFeedLost) {
				t.Errorf("%s: Feed(%s) error = %v, want ErrFeedLost", tt.name, tt.cursor, err)
			}
			if page.Next != head || len(page.Events) != 0 || page.Changed == nil {
				t.Errorf("%s: page = %+v, want no events and next at the head %s", tt.name, page, head)
			}
		}

		// The oldest kept cursor still resumes, with every kept event.
		oldest := controller.FeedCursor{Epoch: head.Epoch, Seq: head.Seq - size}
		if got := h.feedSince(oldest, "").Events; len(got) != size || got[0].Seq != oldest.Seq+1 {
			t.Errorf("resume from %s: %d events, want the %d kept", oldest, len(got), size)
		}
	})
}

func TestFeed_FiltersByService(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		other := baseSpec()
		other.Name = "api"
		h := newHarnessWith(t, func(o *controller.Options) { o.Services = append(o.Services, other) })
		start := h.feedHead()
		h.deployOK("v1")

		page := h.feedSince(start, "api")
		if len(page.Events) != 0 {
			t.Errorf("api's events = %+v, want none: only web was deployed", page.Events)
		}
		if page.Next != h.feedHead() {
			t.Errorf("next = %s, want the head %s: the skipped events are read", page.Next, h.feedHead())
		}
		web := h.feedSince(start, svc).Events
		if len(web) == 0 || len(web) != len(h.feedSince(start, "").Events) {
			t.Errorf("web's events = %d, want all of them", len(web))
		}
		if _, err := h.c.Feed(start, "nope"); controller.ErrorCode(err) != controller.ENOTFOUND {
			t.Errorf("Feed of an unknown service: %v, want ENOTFOUND", err)
		}
	})
}

func TestFeed_ChangedClosesOnTheNextEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarnessWith(t, func(o *controller.Options) { o.TrafficControl = &fakeTraffic{} })
		page := h.feedSince(controller.FeedCursor{}, "")
		select {
		case <-page.Changed:
			t.Fatal("changed closed before any event")
		default:
		}
		if _, err := h.c.Maintenance(h.ctx(), svc, true, "back soon"); err != nil {
			t.Fatalf("Maintenance: %v", err)
		}
		select {
		case <-page.Changed:
		default:
			t.Fatal("changed still open after maintenance went on")
		}
		got := h.feedSince(page.Next, "").Events
		if len(got) != 1 || got[0].Type != controller.FeedService || got[0].Message != "maintenance on: back soon" {
			t.Fatalf("events = %+v, want one service event saying maintenance is on", got)
		}
	})
}

func TestFeed_ContainersEventOnlyWhenTheListChanged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		feed := newFakeContainerFeed()
		h := viewHarness(t, feed)
		d := h.deployOK("v1")
		h.followContainers(feed)
		containers := func(from controller.FeedCursor) int {
			return len(ofType(h.feedSince(from, "").Events, controller.FeedContainers))
		}

		start := h.feedHead()
		feed.change(svc)
		synctest.Wait()
		if got := containers(start); got != 0 {
			t.Fatalf("%d containers events for a list that did not change, want 0", got)
		}

		h.killFirst(d.ToColor)
		feed.change(svc)
		feed.change(svc)
		synctest.Wait()
		if got := containers(start); got != 1 {
			t.Fatalf("%d containers events for one change, want 1", got)
		}
	})
}

func TestFeedCursor_RoundTripsAndRejectsGarbage(t *testing.T) {
	tests := []struct {
		in   string
		want controller.FeedCursor
		ok   bool
	}{
		{"lz3k9-42", controller.FeedCursor{Epoch: "lz3k9", Seq: 42}, true},
		{"a-0", controller.FeedCursor{Epoch: "a", Seq: 0}, true},
		{"", controller.FeedCursor{}, false},
		{"42", controller.FeedCursor{}, false},
		{"-42", controller.FeedCursor{}, false},
		{"ab-", controller.FeedCursor{}, false},
		{"ab--1", controller.FeedCursor{}, false},
		{"AB-1", controller.FeedCursor{}, false},
		{"ab-1-2", controller.FeedCursor{}, false},
	}
	for _, tt := range tests {
		got, err := controller.ParseFeedCursor(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseFeedCursor(%q) = %+v, %v; want %+v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}
