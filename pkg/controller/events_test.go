package controller_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// collectEvents follows deployment id's stream from after seq as a
// subscriber would: it reads, waits on the change channel, reads again,
// until the stream says it is complete.
func collectEvents(t *testing.T, c *controller.Controller, id string, seq int) []controller.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	var all []controller.Event
	for {
		evs, changed, done, err := c.Events(ctx, id, seq)
		if err != nil {
			t.Fatalf("Events(%s, %d): %v", id, seq, err)
		}
		all = append(all, evs...)
		if n := len(evs); n > 0 {
			seq = evs[n-1].Seq
		}
		if done {
			return all
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("stream of %s not complete within %s; got %d event(s), last seq %d", id, testDeadline, len(all), seq)
		}
	}
}

// checkSeqs fails unless evs are numbered first, first+1, ...
func checkSeqs(t *testing.T, evs []controller.Event, first int) {
	t.Helper()
	for i, e := range evs {
		if e.Seq != first+i {
			t.Fatalf("event %d has seq %d, want %d (%+v)", i, e.Seq, first+i, e)
		}
	}
}

// stepEvents renders the step events as "step=status".
func stepEvents(evs []controller.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == controller.EventStep {
			out = append(out, e.Step+"="+e.Status)
		}
	}
	return out
}

// wantStepEvents is the step events a deployment's record implies: each
// step's start, then its final status.
func wantStepEvents(d controller.Deployment) []string {
	var out []string
	for _, s := range d.Steps {
		out = append(out, s.Name+"=running", s.Name+"="+s.Status.String())
	}
	return out
}

// logLines returns the log events' messages, each prefixed by its step.
func logLines(evs []controller.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == controller.EventLog {
			out = append(out, e.Step+": "+e.Message)
		}
	}
	return out
}

func TestEvents_StreamCoversStepsLogsAndFinalStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) {
			s.PreDeploy = controller.PreDeploySpec{Command: []string{"manage", "migrate"}, Timeout: time.Second}
		})
		h.rt.set(func(rt *fakeRuntime) {
			rt.oneOff = func(context.Context, controller.OneOffSpec) (controller.OneOffResult, error) {
				return controller.OneOffResult{Output: "Applying shop.0001_initial... OK\nApplying shop.0002_price... OK\n"}, nil
			}
		})
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v1"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}

		evs := collectEvents(t, h.c, d.ID, 0)
		final := h.wait(d.ID)

		checkSeqs(t, evs, 1)
		if first := evs[0]; first.Type != controller.EventStatus || first.Status != "queued" {
			t.Errorf("first event = %+v, want status queued", first)
		}
		last := evs[len(evs)-1]
		if last.Type != controller.EventStatus || last.Status != "succeeded" {
			t.Errorf("last event = %+v, want status succeeded", last)
		}
		var statuses []string
		for _, e := range evs {
			if e.Type == controller.EventStatus {
				statuses = append(statuses, e.Status)
			}
		}
		if want := []string{"queued", "running", "succeeded"}; !slices.Equal(statuses, want) {
			t.Errorf("status events = %v, want %v", statuses, want)
		}
		if got, want := stepEvents(evs), wantStepEvents(final); !slices.Equal(got, want) {
			t.Errorf("step events = %v, want %v (from the record)", got, want)
		}
		wantSteps := []string{"pull", "cleanup", "backup", "pre_deploy", "start", "health", "switch"}
		if got := stepNames(final); !slices.Equal(got, wantSteps) {
			t.Errorf("recorded steps = %v, want %v", got, wantSteps)
		}

		// Every log line belongs to the step that is open when it arrives.
		open := ""
		for _, e := range evs {
			switch {
			case e.Type == controller.EventStep && e.Status == "running":
				open = e.Step
			case e.Type == controller.EventStep:
				open = ""
			case e.Type == controller.EventLog && e.Step != open:
				t.Errorf("log event %d %q names step %q while step %q is open", e.Seq, e.Message, e.Step, open)
			}
			if e.Time.IsZero() {
				t.Errorf("event %d has no time", e.Seq)
			}
		}

		lines := byReplicas(logLines(evs))
		for _, want := range []string{
			"pull: image demoapp:v1 is present",
			"pre_deploy: Applying shop.0001_initial... OK",
			"pre_deploy: Applying shop.0002_price... OK",
			"health: web-blue-1: healthy (1/2)",
			"health: web-blue-1: healthy (2/2)",
			"health: web-blue-2: healthy (1/2)",
			"health: web-blue-2: healthy (2/2)",
		} {
			if !slices.Contains(lines, want) {
				t.Errorf("log lines lack %q; got %q", want, lines)
			}
		}

		more, _, done, err := h.c.Events(h.ctx(), d.ID, last.Seq)
		if err != nil || len(more) != 0 || !done {
			t.Errorf("Events after the last seq = %d event(s), done %v, err %v; want none, done, nil", len(more), done, err)
		}
	})
}

func TestEvents_FailedDeployEndsWithFailedStatusAndError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Health.StartTimeout = 50 * time.Millisecond })
		h.prober.setVerdict(func(string, int) error { return errors.New("502 Bad Gateway") })
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v1"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		evs := collectEvents(t, h.c, d.ID, 0)
		final := h.wait(d.ID)

		last := evs[len(evs)-1]
		if last.Type != controller.EventStatus || last.Status != "failed" || last.Message != final.Error || final.Error == "" {
			t.Errorf("last event = %+v, want status failed with the record's error %q", last, final.Error)
		}
		if got, want := stepEvents(evs), wantStepEvents(final); !slices.Equal(got, want) {
			t.Errorf("step events = %v, want %v", got, want)
		}
		if lines := byReplicas(logLines(evs)); !slices.Contains(lines, "health: web-blue-1: not healthy: 502 Bad Gateway") {
			t.Errorf("log lines lack the failing probe; got %q", lines)
		}
	})
}

func TestEvents_LateSubscriberGetsHistoryFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) { s.Health.StartTimeout = time.Minute })
		release := make(chan struct{})
		h.prober.failUntil("", errors.New("still booting"), release)
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v1"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		eventually(t, "deploy in its health step", h.runningStep(d.ID, controller.StepHealth))

		history, _, done, err := h.c.Events(h.ctx(), d.ID, 0)
		if err != nil {
			t.Fatalf("Events: %v", err)
		}
		if done {
			t.Fatal("stream of a deploy waiting for health is done, want it open")
		}
		checkSeqs(t, history, 1)
		want := []string{"pull=running", "pull=succeeded", "cleanup=running", "cleanup=succeeded", "backup=running", "backup=skipped",
			"pre_deploy=running", "pre_deploy=skipped", "start=running", "start=succeeded", "health=running"}
		if got := stepEvents(history); !slices.Equal(got, want) {
			t.Errorf("history's step events = %v, want %v", got, want)
		}
		if history[0].Status != "queued" {
			t.Errorf("history starts with %+v, want status queued", history[0])
		}

		close(release)
		rest := collectEvents(t, h.c, d.ID, history[len(history)-1].Seq)
		checkSeqs(t, rest, len(history)+1)
		if last := rest[len(rest)-1]; last.Status != "succeeded" {
			t.Errorf("last event = %+v, want status succeeded", last)
		}

		// A subscriber arriving after the end gets the same stream at once.
		whole, _, done, err := h.c.Events(h.ctx(), d.ID, 0)
		if err != nil || !done {
			t.Fatalf("Events after the end: done %v, err %v; want done, nil", done, err)
		}
		if s := diff(whole, append(history, rest...)); s != "" {
			t.Errorf("stream read after the end differs from the one followed live:%s", s)
		}
	})
}

func TestEvents_FromRecordAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) {
			s.PreDeploy = controller.PreDeploySpec{Command: []string{"manage", "migrate"}, Timeout: time.Second}
		})
		h.rt.set(func(rt *fakeRuntime) {
			rt.oneOff = func(context.Context, controller.OneOffSpec) (controller.OneOffResult, error) {
				return controller.OneOffResult{Output: "Applying shop.0001_initial... OK\n"}, nil
			}
		})
		d := h.deployOK("v1")

		// A new process on the same store: its memory holds no stream.
		c2 := controller.New(controller.Options{
			Services: []controller.ServiceSpec{h.spec}, Runtime: h.rt, Router: h.router, Prober: h.prober, Store: h.store,
		})
		t.Cleanup(func() {
			if err := c2.Close(context.Background()); err != nil {
				t.Errorf("Close: %v", err)
			}
		})

		evs, changed, done, err := c2.Events(h.ctx(), d.ID, 0)
		if err != nil {
			t.Fatalf("Events: %v", err)
		}
		if !done {
			t.Error("rebuilt stream is not done, want done")
		}
		select {
		case <-changed:
		default:
			t.Error("change channel of a rebuilt stream is open, want it closed so a follower does not wait")
		}
		checkSeqs(t, evs, 1)
		if first, last := evs[0], evs[len(evs)-1]; first.Status != "queued" || last.Type != controller.EventStatus || last.Status != "succeeded" {
			t.Errorf("rebuilt stream runs from %+v to %+v, want status queued to status succeeded", first, last)
		}
		if got, want := stepEvents(evs), wantStepEvents(d); !slices.Equal(got, want) {
			t.Errorf("rebuilt step events = %v, want %v", got, want)
		}
		if lines := logLines(evs); !slices.Contains(lines, "pre_deploy: Applying shop.0001_initial... OK") {
			t.Errorf("rebuilt log lines lack the stored pre-deploy output; got %q", lines)
		}

		tail, _, _, err := c2.Events(h.ctx(), d.ID, 3)
		if err != nil {
			t.Fatalf("Events from seq 3: %v", err)
		}
		if s := diff(tail, evs[3:]); s != "" {
			t.Errorf("rebuilt stream after seq 3:%s", s)
		}
		if all := collectEvents(t, c2, d.ID, 0); len(all) != len(evs) {
			t.Errorf("following a rebuilt stream got %d event(s), want %d", len(all), len(evs))
		}
	})
}

func TestEvents_UnknownDeploymentIsNotFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		_, _, _, err := h.c.Events(h.ctx(), "nope", 0)
		if got := controller.ErrorCode(err); got != controller.ENOTFOUND {
			t.Fatalf("error code = %q (err %v), want %q", got, err, controller.ENOTFOUND)
		}
		if !strings.Contains(controller.ErrorMessage(err), "nope") {
			t.Errorf("message = %q, want it to name the id", controller.ErrorMessage(err))
		}
	})
}

// A health check that fails for a long time must not grow the stream
// without bound, and must not cost the stream its end.
func TestEvents_RunawayLogKeepsFirstLinesAndFinalEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(s *controller.ServiceSpec) {
			s.Health.Interval = time.Microsecond
			s.Health.StartTimeout = testDeadline
		})
		const failures = 3000 // per replica: 6000 log lines, more than a stream keeps
		h.prober.setVerdict(func(_ string, n int) error {
			if n <= failures {
				return errors.New("502 Bad Gateway")
			}
			return nil
		})
		d, err := h.c.Deploy(h.ctx(), svc, controller.DeployRequest{Image: "v1"})
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		evs := collectEvents(t, h.c, d.ID, 0)
		final := h.wait(d.ID)
		if final.Status != controller.StatusSucceeded {
			t.Fatalf("status = %s (%q), want succeeded", final.Status, final.Error)
		}

		checkSeqs(t, evs, 1)
		const limit = 5000
		if len(evs) > limit+10 {
			t.Errorf("stream has %d events, want it capped near %d", len(evs), limit)
		}
		if len(evs) < limit {
			t.Errorf("stream has %d events, want the cap of %d reached (the test produces more)", len(evs), limit)
		}
		if got, want := stepEvents(evs), wantStepEvents(final); !slices.Equal(got, want) {
			t.Errorf("step events = %v, want %v: the cap drops only log lines", got, want)
		}
		if last := evs[len(evs)-1]; last.Type != controller.EventStatus || last.Status != "succeeded" {
			t.Errorf("last event = %+v, want status succeeded", last)
		}
		if lines := byReplicas(logLines(evs)); !slices.Contains(lines, "health: web-blue-1: not healthy: 502 Bad Gateway") {
			t.Errorf("first failing probes missing from the kept lines")
		}
	})
}
