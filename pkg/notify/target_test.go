package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// numbered is the i-th test notification; its Deployment names it.
func numbered(i int) controller.Notification {
	return controller.Notification{Kind: controller.NotifyDeploySucceeded, Service: "web",
		Deployment: fmt.Sprintf("d-%02d", i), Image: "demoapp:v2", Message: "switched"}
}

// arrivals maps each delivered notification's Deployment to when it
// arrived.
func arrivals(t *testing.T, r *receiver) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	for _, d := range r.deliveries() {
		var n Payload
		if err := json.Unmarshal(d.body, &n); err != nil {
			t.Fatalf("body is not a notification: %v", err)
		}
		out[n.Deployment] = d.at
	}
	return out
}

// With production retry waits (1 s, 2 s, 4 s) the failing target is
// retrying or waiting the whole time; the healthy one must not notice.
func TestNotify_FailingTargetDoesNotDelayTheHealthyOne(t *testing.T) {
	failing := newReceiver(t, func(int32) int { return http.StatusInternalServerError })
	healthy := newReceiver(t, nil)
	s := defaultSettings()
	n, f, _ := newTestNotifier(t, []Target{
		{Name: "failing", Type: TypeWebhook, URL: failing.srv.URL},
		{Name: "healthy", Type: TypeWebhook, URL: healthy.srv.URL},
	}, s)

	const events = 12
	sent := map[string]time.Time{}
	for i := range events {
		note := numbered(i)
		sent[note.Deployment] = time.Now()
		n.Notify(note)
		if i%3 == 2 {
			// Some in bursts, some after the failing target has begun
			// its retries.
			time.Sleep(600 * time.Millisecond)
		}
	}
	eventually(t, 5*time.Second, "the healthy target has every event", func() error {
		if got := len(healthy.deliveries()); got != events {
			return fmt.Errorf("healthy got %d of %d", got, events)
		}
		return nil
	})
	var worst time.Duration
	for id, at := range arrivals(t, healthy) {
		took := at.Sub(sent[id])
		worst = max(worst, took)
		if took > time.Second {
			t.Errorf("%s reached the healthy target %s after Notify, want within 1s", id, took)
		}
	}
	t.Logf("healthy target: %d events, slowest %s after Notify, while the failing one had %d calls", events, worst, failing.calls.Load())
	if c := f.count("healthy"); c != 0 {
		t.Fatalf("healthy failures = %d, want 0", c)
	}

	// The failing target is waiting to retry; Close must not wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := n.Close(ctx)
	took := time.Since(start)
	t.Logf("Close with a failing target retrying: %s", took)
	if took > 500*time.Millisecond {
		t.Fatalf("Close took %s, want it not to wait for the failing target's retries", took)
	}
	// No outbox: what the failing target did not get is dropped, counted.
	if err == nil {
		t.Fatal("Close = nil, want an error: the failing target's notifications were dropped")
	}
	if got := f.count("failing"); got != events {
		t.Fatalf("failing failures = %d, want %d (every event given up or dropped, none silently)", got, events)
	}
}

// A failing target's retries wait longer each time.
func TestNotify_RetriesBackOffExponentially(t *testing.T) {
	var mu sync.Mutex
	var calls []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, time.Now())
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	s := fastSettings()
	s.retryWaitMin = 40 * time.Millisecond
	s.retryWaitMax = time.Second
	n, f, _ := newTestNotifier(t, []Target{{Name: "down", Type: TypeWebhook, URL: srv.URL}}, s)
	n.Notify(sample)
	eventually(t, 5*time.Second, "given up", func() error {
		if c := f.count("down"); c != 1 {
			return fmt.Errorf("failures = %d, want 1", c)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != s.retryMax+1 {
		t.Fatalf("calls = %d, want %d", len(calls), s.retryMax+1)
	}
	for i := 1; i < len(calls); i++ {
		gap, want := calls[i].Sub(calls[i-1]), s.retryWaitMin<<(i-1)
		if gap < want {
			t.Errorf("wait before retry %d = %s, want at least %s", i, gap, want)
		}
	}
}

// A healthy target's queue is still sent at Close, while a failing target
// does not hold Close up.
func TestClose_SendsTheHealthyTargetsQueueWithoutWaitingForTheFailingOne(t *testing.T) {
	failing := newReceiver(t, func(int32) int { return http.StatusBadGateway })
	healthy := newReceiver(t, nil)
	out := newMemOutbox()
	n, f, _ := newTestNotifierWith(t, Options{Targets: []Target{
		{Name: "failing", Type: TypeWebhook, URL: failing.srv.URL},
		{Name: "healthy", Type: TypeWebhook, URL: healthy.srv.URL},
	}, Outbox: out}, defaultSettings())

	const events = 20
	for i := range events {
		n.Notify(numbered(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	took := time.Since(start)
	t.Logf("Close right after %d events: %s", events, took)
	if took > time.Second {
		t.Fatalf("Close took %s, want well under a second", took)
	}
	if got := len(healthy.deliveries()); got != events {
		t.Fatalf("healthy got %d of %d queued before Close", got, events)
	}
	if got := len(out.pending("failing")); got != events {
		t.Fatalf("failing target's notifications kept = %d, want %d", got, events)
	}
	if got := len(out.pending("healthy")); got != 0 {
		t.Fatalf("healthy target's notifications kept = %d, want 0 (all delivered)", got)
	}
	if a, b := f.count("failing"), f.count("healthy"); a != 0 || b != 0 {
		t.Fatalf("failures = %d failing, %d healthy; want none: kept is not lost", a, b)
	}
}

// A target that accepts the connection and never answers holds Close only
// until Close's own deadline; what it did not get is kept.
func TestClose_HangingTargetHoldsCloseOnlyUntilItsDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	out := newMemOutbox()
	n, f, _ := newTestNotifierWith(t, Options{Targets: []Target{{Name: "hangs", Type: TypeWebhook, URL: srv.URL}}, Outbox: out}, defaultSettings())
	for i := range 3 {
		n.Notify(numbered(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close = %v, want nil: everything is kept", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Close took %s, want it cut at its 300ms deadline", took)
	}
	if got := len(out.pending("hangs")); got != 3 {
		t.Fatalf("kept = %d, want 3", got)
	}
	if got := f.count("hangs"); got != 0 {
		t.Fatalf("failures = %d, want 0", got)
	}
}
