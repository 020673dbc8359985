package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// memOutbox is an Outbox in memory; failAdd makes AddNotification fail.
type memOutbox struct {
	mu      sync.Mutex
	seq     int
	m       map[string]map[string]controller.Notification
	failAdd error
}

var _ Outbox = (*memOutbox)(nil)

func newMemOutbox() *memOutbox {
	return &memOutbox{m: map[string]map[string]controller.Notification{}}
}

func (o *memOutbox) AddNotification(_ context.Context, targets []string, n controller.Notification) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failAdd != nil {
		return "", o.failAdd
	}
	o.seq++
	id := fmt.Sprintf("%016d", o.seq)
	for _, t := range targets {
		if o.m[t] == nil {
			o.m[t] = map[string]controller.Notification{}
		}
		o.m[t][id] = n
	}
	return id, nil
}

func (o *memOutbox) DeleteNotification(_ context.Context, target, id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m[target], id)
	return nil
}

func (o *memOutbox) PendingNotifications(context.Context) (map[string]map[string]controller.Notification, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]map[string]controller.Notification{}
	for t, notes := range o.m {
		if len(notes) > 0 {
			out[t] = map[string]controller.Notification{}
			for id, n := range notes {
				out[t][id] = n
			}
		}
	}
	return out, nil
}

// pending returns target's kept notifications' Deployment fields in the
// order they were added.
func (o *memOutbox) pending(target string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids := make([]string, 0, len(o.m[target]))
	for id := range o.m[target] {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, o.m[target][id].Deployment)
	}
	return out
}

func deploymentsOf(t *testing.T, r *receiver) []string {
	t.Helper()
	var out []string
	for id := range arrivals(t, r) {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func TestNotify_DeliveredOrGivenUpLeavesTheOutbox(t *testing.T) {
	ok := newReceiver(t, nil)
	refuses := newReceiver(t, func(int32) int { return 400 })
	out := newMemOutbox()
	n, f, _ := newTestNotifierWith(t, Options{Targets: []Target{
		{Name: "ok", Type: TypeWebhook, URL: ok.srv.URL},
		{Name: "refuses", Type: TypeWebhook, URL: refuses.srv.URL},
	}, Outbox: out}, fastSettings())
	n.Notify(numbered(1))
	eventually(t, 5*time.Second, "outbox emptied", func() error {
		if a, b := out.pending("ok"), out.pending("refuses"); len(a)+len(b) != 0 {
			return fmt.Errorf("still kept: ok %v, refuses %v", a, b)
		}
		return nil
	})
	if got := len(ok.deliveries()); got != 1 {
		t.Fatalf("ok deliveries = %d, want 1", got)
	}
	// A 400 is a refusal: given up at once, counted, never retried.
	if calls, c := refuses.calls.Load(), f.count("refuses"); calls != 1 || c != 1 {
		t.Fatalf("refusing target: %d calls, %d failures; want 1 and 1", calls, c)
	}
}

// What one Notifier could not deliver before Close, the next one (on the
// same outbox, as after a restart) delivers, in order.
func TestNew_SendsWhatTheLastRunKeptInOrder(t *testing.T) {
	out := newMemOutbox()
	down := newReceiver(t, func(int32) int { return 503 })
	first, _, _ := newTestNotifierWith(t, Options{Targets: []Target{{Name: "ops", Type: TypeWebhook, URL: down.srv.URL}}, Outbox: out}, defaultSettings())
	for i := range 5 {
		first.Notify(numbered(i))
	}
	closeAndWait(t, first)
	want := []string{"d-00", "d-01", "d-02", "d-03", "d-04"}
	if got := out.pending("ops"); !slices.Equal(got, want) {
		t.Fatalf("kept after Close = %v, want %v", got, want)
	}

	up := newReceiver(t, nil)
	second, f, _ := newTestNotifierWith(t, Options{Targets: []Target{{Name: "ops", Type: TypeWebhook, URL: up.srv.URL}}, Outbox: out}, defaultSettings())
	second.Notify(numbered(5))
	eventually(t, 5*time.Second, "everything delivered after the restart", func() error {
		if got := len(up.deliveries()); got != 6 {
			return fmt.Errorf("delivered %d of 6", got)
		}
		return nil
	})
	var order []string
	for _, d := range up.deliveries() {
		order = append(order, strings.Split(strings.Split(string(d.body), `"deployment":"`)[1], `"`)[0])
	}
	if want := append(want, "d-05"); !slices.Equal(order, want) {
		t.Fatalf("delivery order = %v, want %v (kept ones first, oldest first)", order, want)
	}
	// The receiver has the last one a moment before the notifier hears
	// its answer and lets the outbox go.
	eventually(t, 5*time.Second, "nothing kept after delivery", func() error {
		if left := out.pending("ops"); len(left) != 0 {
			return fmt.Errorf("still kept after delivery: %v", left)
		}
		return nil
	})
	if c := f.count("ops"); c != 0 {
		t.Fatalf("failures = %d, want 0", c)
	}
}

func TestNew_GivesUpKeptNotificationsTooOldOrForRemovedTargets(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	out := newMemOutbox()
	keep := func(target string, n controller.Notification, age time.Duration) {
		n.Time = now.Add(-age)
		if _, err := out.AddNotification(t.Context(), []string{target}, n); err != nil {
			t.Fatal(err)
		}
	}
	keep("ops", numbered(1), time.Hour)
	keep("ops", numbered(2), 25*time.Hour)
	keep("gone", numbered(3), time.Minute)
	started := numbered(4)
	started.Kind = controller.NotifyDeployStarted
	keep("ops", started, time.Minute) // a kind ops no longer wants

	r := newReceiver(t, nil)
	s := defaultSettings()
	s.now = func() time.Time { return now }
	_, f, hook := newTestNotifierWith(t, Options{Targets: []Target{
		{Name: "ops", Type: TypeWebhook, URL: r.srv.URL, Events: []string{controller.NotifyDeploySucceeded}},
	}, Outbox: out}, s)

	eventually(t, 5*time.Second, "the young one delivered", func() error {
		if got := deploymentsOf(t, r); !slices.Equal(got, []string{"d-01"}) {
			return fmt.Errorf("delivered %v, want [d-01]", got)
		}
		return nil
	})
	if a, b := f.count("ops"), f.count("gone"); a != 1 || b != 1 {
		t.Fatalf("failures: ops %d, gone %d; want 1 each (too old; target removed)", a, b)
	}
	// The receiver has the notification a moment before the notifier
	// hears its answer and lets the outbox go.
	eventually(t, 5*time.Second, "nothing kept", func() error {
		for _, target := range []string{"ops", "gone"} {
			if left := out.pending(target); len(left) != 0 {
				return fmt.Errorf("%s still kept: %v", target, left)
			}
		}
		return nil
	})
	var gaveUp []string
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel && e.Message == "notification not delivered; given up" {
			gaveUp = append(gaveUp, fmt.Sprintf("%s %s", e.Data["target"], e.Data["deployment"]))
		}
	}
	slices.Sort(gaveUp)
	if want := []string{"gone d-03", "ops d-02"}; !slices.Equal(gaveUp, want) {
		t.Fatalf("given-up warnings = %v, want %v", gaveUp, want)
	}
}

func TestNotify_FailingOutboxStillDeliversFromMemory(t *testing.T) {
	r := newReceiver(t, nil)
	out := newMemOutbox()
	out.failAdd = errors.New("disk full")
	n, f, hook := newTestNotifierWith(t, Options{Targets: []Target{{Name: "ops", Type: TypeWebhook, URL: r.srv.URL}}, Outbox: out}, fastSettings())
	n.Notify(sample)
	closeAndWait(t, n)
	if got := len(r.deliveries()); got != 1 {
		t.Fatalf("deliveries = %d, want 1", got)
	}
	if c := f.count("ops"); c != 0 {
		t.Fatalf("failures = %d, want 0", c)
	}
	warned := false
	for _, e := range hook.AllEntries() {
		warned = warned || (e.Level == logrus.WarnLevel && strings.Contains(e.Message, "not saved"))
	}
	if !warned {
		t.Fatal("no warning that the notification was not saved")
	}
}

func TestNotify_AfterCloseIsKeptForTheNextStart(t *testing.T) {
	r := newReceiver(t, nil)
	out := newMemOutbox()
	n, f, _ := newTestNotifierWith(t, Options{Targets: []Target{{Name: "ops", Type: TypeWebhook, URL: r.srv.URL}}, Outbox: out}, fastSettings())
	closeAndWait(t, n)
	n.Notify(numbered(7))
	if got := out.pending("ops"); !slices.Equal(got, []string{"d-07"}) {
		t.Fatalf("kept = %v, want [d-07]", got)
	}
	if c, got := f.count("ops"), len(r.deliveries()); c != 0 || got != 0 {
		t.Fatalf("failures %d, deliveries %d; want 0 and 0", c, got)
	}
}
