package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/notify"
)

// arrival is one notification a receiver accepted, and when.
type arrival struct {
	note notify.Payload
	at   time.Time
}

// switchReceiver is a notification target that can be down: while down it
// takes each request and never answers (until the sender gives up), the
// worst kind of dead target; while up it records and answers 200.
type switchReceiver struct {
	up    atomic.Bool
	calls atomic.Int32
	mu    sync.Mutex
	got   []arrival
}

func startSwitchReceiver(t *testing.T, up bool) (*switchReceiver, string) {
	t.Helper()
	r := &switchReceiver{}
	r.up.Store(up)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.calls.Add(1)
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		if !r.up.Load() {
			<-req.Context().Done()
			return
		}
		var n notify.Payload
		if err := json.Unmarshal(b, &n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, arrival{note: n, at: time.Now()})
		r.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL
}

// deployNotes returns "<deployment> <kind>" of every deploy notification
// received, sorted; other kinds (a reconciler's, say) are left out.
func (r *switchReceiver) deployNotes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, a := range r.got {
		if strings.HasPrefix(a.note.Kind, "deploy_") {
			out = append(out, a.note.Deployment+" "+a.note.Kind)
		}
	}
	sort.Strings(out)
	return out
}

func (r *switchReceiver) arrivals() []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]arrival(nil), r.got...)
}

// TestNotify_SIGTERMKeepsUndeliveredAndRestartSendsThem: one target is down
// (hangs), one is healthy. The healthy one gets every event at once; the
// SIGTERM exit does not wait for the dead one; after a restart with it up,
// it gets every event, once.
func TestNotify_SIGTERMKeepsUndeliveredAndRestartSendsThem(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2")
	down, downURL := startSwitchReceiver(t, false)
	healthy, healthyURL := startSwitchReceiver(t, true)
	e.notifyURL, e.notifyURL2 = downURL, healthyURL
	cfg := defaultSvc()
	cfg.Notify, cfg.Notify2 = true, true
	cfgPath := e.writeConfig("deployd.yml", cfg)
	d := e.startDaemon("first", cfgPath)

	v1 := d.mustSucceed("v1")
	v2 := d.mustSucceed("v2")
	want := []string{
		v1.ID + " " + controller.NotifyDeployStarted, v1.ID + " " + controller.NotifyDeploySucceeded,
		v2.ID + " " + controller.NotifyDeployStarted, v2.ID + " " + controller.NotifyDeploySucceeded,
	}
	sort.Strings(want)
	eventually(t, 5*time.Second, "the healthy target has every event", func() error {
		if got := healthy.deployNotes(); !equal(got, want) {
			return fmt.Errorf("healthy got %v, want %v", got, want)
		}
		return nil
	})
	var worst time.Duration
	for _, a := range healthy.arrivals() {
		took := a.at.Sub(a.note.Time)
		worst = max(worst, took)
		if took > time.Second {
			t.Errorf("%s %s reached the healthy target %s after it was raised, want within 1s", a.note.Deployment, a.note.Kind, took)
		}
	}
	if down.calls.Load() == 0 {
		t.Fatal("the down target was never called; the test proves nothing")
	}
	t.Logf("healthy target: slowest delivery %s after the event, with the other target hanging", worst.Round(time.Millisecond))

	start := time.Now()
	d.stop()
	took := time.Since(start)
	if code := d.waitExit(0); code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	t.Logf("SIGTERM with a hanging target: exited after %s", took.Round(time.Millisecond))
	// The old notifier waited 5 s for the dead target; now it gives a
	// request in flight one second and keeps the rest.
	elapsedUnder(t, "SIGTERM exit with a hanging notification target", took, 3*time.Second)
	if log := d.stderr.String(); !strings.Contains(log, "kept in the store") {
		t.Fatalf("the log does not say undelivered notifications were kept:\n%s", log)
	}
	if got := down.deployNotes(); len(got) != 0 {
		t.Fatalf("down target recorded %v while down", got)
	}

	down.up.Store(true)
	restarted := time.Now()
	d = e.startDaemon("second", cfgPath)
	eventually(t, 10*time.Second, "the formerly down target has every event after the restart", func() error {
		if got := down.deployNotes(); !equal(got, want) {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		return nil
	})
	t.Logf("after the restart: %d kept notifications delivered within %s", len(want), time.Since(restarted).Round(time.Millisecond))
	if got := healthy.deployNotes(); !equal(got, want) {
		t.Fatalf("healthy target after the restart got %v, want %v (nothing sent twice)", got, want)
	}
	n, err := d.metricValue("deployd_notification_failures_total", `target="e2e-receiver"`)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("deployd_notification_failures_total{target=\"e2e-receiver\"} = %v, want 0: kept, not lost", n)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestNotify_SIGTERMDuringDeploySendsDeployInterrupted: the deployment that
// SIGTERM cuts short is reported as interrupted, not failed, and the
// notification, raised during shutdown, still reaches a healthy target
// before deployd exits.
func TestNotify_SIGTERMDuringDeploySendsDeployInterrupted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2-slow")
	r, url := startSwitchReceiver(t, true)
	e.notifyURL2 = url
	cfg := defaultSvc()
	cfg.Notify2 = true
	cfgPath := e.writeConfig("deployd.yml", cfg)
	d := e.startDaemon("first", cfgPath)
	d.mustSucceed("v1")

	slow := d.deploy("v2-slow")
	d.waitStep(slow.ID, controller.StepHealth)
	d.stop()
	if code := d.waitExit(0); code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	var kinds []string
	for _, a := range r.arrivals() {
		if a.note.Deployment == slow.ID {
			kinds = append(kinds, a.note.Kind)
		}
	}
	want := []string{controller.NotifyDeployStarted, controller.NotifyDeployInterrupted}
	if !equal(kinds, want) {
		t.Fatalf("notifications of the interrupted deployment = %v, want %v", kinds, want)
	}
}
