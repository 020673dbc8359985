package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/trafficswitch"
)

// siteAnswer is what a request through nginx got, and when.
type siteAnswer struct {
	status     int
	body       string
	retryAfter string
	app        appAnswer // for a 200
	sent, at   time.Time
	err        error
}

// visit does GET / through nginx on a fresh connection.
func (e *env) visit() siteAnswer {
	a := siteAnswer{sent: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.ng.URL+"/", nil)
	if err != nil {
		a.err = err
		return a
	}
	res, err := (&http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}).Do(req)
	if err != nil {
		a.err = err
		return a
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	a.status, a.body, a.retryAfter, a.at, a.err = res.StatusCode, string(b), res.Header.Get("Retry-After"), time.Now(), err
	if err == nil && res.StatusCode == http.StatusOK {
		a.err = json.Unmarshal(b, &a.app)
	}
	return a
}

// startVisit runs visit in the background; the channel gets its answer.
func (e *env) startVisit() <-chan siteAnswer {
	out := make(chan siteAnswer, 1)
	go func() { out <- e.visit() }()
	return out
}

// trafficPost POSTs to the service's pause, resume or maintenance with
// the operator's token and returns the status and body.
func (d *daemon) trafficPost(action string, body any) (int, []byte) {
	d.e.t.Helper()
	return d.request(http.MethodPost, "/api/v1/services/"+d.e.svc+"/"+action, body, d.e.token)
}

// mustTraffic POSTs like trafficPost and fails the test unless the answer
// is 200; it returns the traffic the answer shows.
func (d *daemon) mustTraffic(action string, body any) api.Traffic {
	d.e.t.Helper()
	status, b := d.trafficPost(action, body)
	if status != http.StatusOK {
		d.e.t.Fatalf("POST %s %v = %d %s, want 200", action, body, status, b)
	}
	return decode[api.Traffic](d.e.t, b)
}

// traffic returns the service view's traffic, failing the test when it
// has none (reload mode).
func (d *daemon) traffic() api.Traffic {
	d.e.t.Helper()
	tr := d.service().Traffic
	if tr == nil {
		d.e.t.Fatal("the service view has no traffic: not in switch mode?")
	}
	return *tr
}

// auditTrail returns the service's audited actions, oldest first, as
// "action status".
func (d *daemon) auditTrail() []string {
	d.e.t.Helper()
	entries := d.audit()
	var out []string
	for i := len(entries) - 1; i >= 0; i-- {
		if a := entries[i]; a.Target == d.e.svc && a.Action != "deploy" {
			out = append(out, fmt.Sprintf("%s %d", a.Action, a.Status))
		}
	}
	return out
}

// checkHeldFor checks a answered 503 with Retry-After retry after being
// held about hold.
func checkHeldFor(t *testing.T, what string, a siteAnswer, hold time.Duration, retry string) {
	t.Helper()
	took := a.at.Sub(a.sent)
	if a.err != nil || a.status != http.StatusServiceUnavailable || a.retryAfter != retry || took < hold-50*time.Millisecond || took > hold+3*time.Second {
		t.Fatalf("%s: %d Retry-After %q after %s (%v), want 503 with Retry-After %s after about %s",
			what, a.status, a.retryAfter, took.Round(time.Millisecond), a.err, retry, hold)
	}
}

// Pause and maintenance through the real daemon and nginx: a request held
// by the pause completes after resume on the color then active (a deploy
// happened meanwhile), the limits answer 503 with Retry-After,
// maintenance answers its message and off restores traffic; the service
// view shows both, every call is audited, and a restart keeps both.
func TestSwitch_PauseAndMaintenanceThroughNginxSurviveARestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2")
	cfg := defaultSvc()
	cfg.Traffic = config.TrafficModeSwitch
	cfgPath := e.writeConfig("deployd.yml", cfg)
	d := e.startDaemon("first", cfgPath)
	d.mustSucceed("v1")

	// A pause holding one request at most, for up to 20s.
	tr := d.mustTraffic("pause", map[string]any{"max_hold": "20s", "max_held": 1})
	if !tr.Paused || tr.MaxHeld != 1 || tr.MaxHoldSeconds != 20 || tr.PausedSince == nil {
		t.Fatalf("pause answered %+v, want paused with max_held 1, max_hold 20s and a time", tr)
	}
	held := e.startVisit()
	eventually(t, faultTimeout, "a request held", func() error {
		if tr := d.traffic(); tr.Held != 1 {
			return fmt.Errorf("traffic %+v", tr)
		}
		return nil
	})
	over := e.visit() // past max_held: turned away at once
	if over.status != http.StatusServiceUnavailable || over.retryAfter != "20" {
		t.Fatalf("a second request while one is held: %d Retry-After %q %q (%v), want 503 with Retry-After 20",
			over.status, over.retryAfter, over.body, over.err)
	}
	// A deploy while paused: the held request goes where traffic is when
	// the pause ends.
	d.mustSucceed("v2")
	select {
	case a := <-held:
		t.Fatalf("the held request was answered before resume: %+v", a)
	default:
	}
	resumed := time.Now()
	if tr := d.mustTraffic("resume", nil); tr.Paused || tr.PausedSince != nil {
		t.Fatalf("resume answered %+v, want not paused", tr)
	}
	var a siteAnswer
	select {
	case a = <-held:
	case <-time.After(faultTimeout):
		t.Fatalf("the held request is still unanswered %s after resume", faultTimeout)
	}
	if a.err != nil || a.status != http.StatusOK || a.app.Version != "v2" || a.app.Color != "green" || a.at.Before(resumed) {
		t.Fatalf("held request: %d %+v (%v), want 200 from v2 on green after resume", a.status, a.app, a.err)
	}
	t.Logf("held request: answered by v2 on green %s after it was sent, %s after resume",
		a.at.Sub(a.sent).Round(time.Millisecond), a.at.Sub(resumed).Round(time.Millisecond))

	// A pause whose hold runs out: 503 after max_hold.
	d.mustTraffic("pause", map[string]any{"max_hold": "1s"})
	checkHeldFor(t, "a request held past max_hold", e.visit(), time.Second, "1")

	const msg = "Back at 18:00 UTC: database upgrade"
	tr = d.mustTraffic("maintenance", map[string]any{"on": true, "message": msg})
	if !tr.Maintenance || tr.Message != msg || tr.MaintenanceSince == nil || !tr.Paused {
		t.Fatalf("maintenance on answered %+v, want maintenance with the message, still paused", tr)
	}
	if a := e.visit(); a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, msg) || a.at.Sub(a.sent) > time.Second {
		t.Fatalf("during maintenance: %d %q after %s (%v), want 503 with the message at once", a.status, a.body, a.at.Sub(a.sent), a.err)
	}
	before := d.traffic()
	if !before.Paused || !before.Maintenance || before.Message != msg || before.MaxHoldSeconds != 1 {
		t.Fatalf("service view traffic = %+v, want paused (max_hold 1s) and in maintenance with the message", before)
	}

	// A restart keeps both.
	d.stop()
	if code := d.waitExit(0); code != 0 {
		t.Fatalf("first daemon exit code = %d, want 0", code)
	}
	d = e.startDaemon("second", cfgPath)
	after := d.traffic()
	if !after.Paused || !after.Maintenance || after.Message != msg || after.MaxHoldSeconds != 1 ||
		!after.PausedSince.Equal(*before.PausedSince) || !after.MaintenanceSince.Equal(*before.MaintenanceSince) {
		t.Fatalf("traffic after a restart = %+v, want %+v", after, before)
	}
	if a := e.visit(); a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, msg) {
		t.Fatalf("after a restart: %d %q (%v), want the maintenance page", a.status, a.body, a.err)
	}
	if tr := d.mustTraffic("maintenance", map[string]any{"on": false}); tr.Maintenance || tr.Message != "" || !tr.Paused {
		t.Fatalf("maintenance off answered %+v, want no maintenance, still paused", tr)
	}
	// The restored pause holds, within its limit.
	checkHeldFor(t, "after maintenance off, a request held by the restored pause", e.visit(), time.Second, "1")
	d.mustTraffic("resume", nil)
	if a := e.visit(); a.status != http.StatusOK || a.app.Version != "v2" || a.app.Color != "green" {
		t.Fatalf("after resume: %d %q (%v), want 200 from v2 on green", a.status, a.body, a.err)
	}
	if tr := d.traffic(); tr.Paused || tr.Maintenance || tr.Held != 0 {
		t.Fatalf("traffic at the end = %+v, want neither paused nor in maintenance", tr)
	}

	want := []string{"pause 200", "resume 200", "pause 200", "maintenance_on 200", "maintenance_off 200", "resume 200"}
	if got := d.auditTrail(); !equal(got, want) {
		t.Fatalf("audit trail = %v, want %v", got, want)
	}
}

// Bad input through the real daemon: a pause of a paused service is a
// 409, a maintenance message too long or with control characters a 400,
// and none of them changes what the service view shows or what nginx
// answers; the refusals are audited.
func TestSwitch_BadPauseAndMaintenanceInputChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1")
	cfg := defaultSvc()
	cfg.Traffic = config.TrafficModeSwitch
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	d.mustSucceed("v1")

	const msg = "Back soon"
	d.mustTraffic("maintenance", map[string]any{"on": true, "message": msg})
	d.mustTraffic("pause", map[string]any{"max_hold": "5s", "max_held": 3})
	before := d.traffic()

	for _, tt := range []struct {
		name       string
		action     string
		body       any
		wantStatus int
		wantCode   string
	}{
		{"pause when paused", "pause", nil, http.StatusConflict, "conflict"},
		{"pause when paused, other limits", "pause", map[string]any{"max_held": 1}, http.StatusConflict, "conflict"},
		{"message too long", "maintenance", map[string]any{"on": true, "message": strings.Repeat("x", trafficswitch.MaxMessageLen+1)}, http.StatusBadRequest, "invalid"},
		{"message with a newline", "maintenance", map[string]any{"on": true, "message": "two\nlines"}, http.StatusBadRequest, "invalid"},
		{"message with a bell", "maintenance", map[string]any{"on": true, "message": "ding\adong"}, http.StatusBadRequest, "invalid"},
		{"message with an escape", "maintenance", map[string]any{"on": true, "message": "\x1b[31mred"}, http.StatusBadRequest, "invalid"},
	} {
		status, b := d.trafficPost(tt.action, tt.body)
		if status != tt.wantStatus {
			t.Errorf("%s: status = %d %s, want %d", tt.name, status, b, tt.wantStatus)
			continue
		}
		if got := decode[apiError](t, b); got.Code != tt.wantCode || got.Error == "" {
			t.Errorf("%s: error %+v, want code %q with a message", tt.name, got, tt.wantCode)
		}
	}
	after := d.traffic()
	if after.Paused != before.Paused || after.MaxHeld != before.MaxHeld || after.MaxHoldSeconds != before.MaxHoldSeconds ||
		!after.PausedSince.Equal(*before.PausedSince) || after.Maintenance != before.Maintenance || after.Message != before.Message ||
		!after.MaintenanceSince.Equal(*before.MaintenanceSince) {
		t.Fatalf("traffic after bad input = %+v, want it unchanged: %+v", after, before)
	}
	if a := e.visit(); a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, msg) {
		t.Fatalf("nginx after bad input: %d %q (%v), want the first maintenance page", a.status, a.body, a.err)
	}
	want := []string{"maintenance_on 200", "pause 200", "pause 409", "pause 409",
		"maintenance_on 400", "maintenance_on 400", "maintenance_on 400", "maintenance_on 400"}
	if got := d.auditTrail(); !equal(got, want) {
		t.Fatalf("audit trail = %v, want %v", got, want)
	}
}

// getLoad counts what a light GET load through nginx got, by status and
// answering color.
type getLoad struct {
	mu      sync.Mutex
	answers map[string]int // "<status> <color>", the color from X-App-Color
	errs    int
	first   error
}

// startGETLoad sends GET / through nginx every interval, on one
// keep-alive connection, until the returned function is called (or the
// test ends); it returns the counts.
func (e *env) startGETLoad(interval time.Duration) func() *getLoad {
	load := &getLoad{answers: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.ng.URL+"/", nil)
			if err != nil {
				return
			}
			res, err := c.Do(req)
			if ctx.Err() != nil {
				return
			}
			load.mu.Lock()
			if err != nil {
				load.errs++
				if load.first == nil {
					load.first = err
				}
			} else {
				load.answers[fmt.Sprintf("%d %s", res.StatusCode, res.Header.Get("X-App-Color"))]++
			}
			load.mu.Unlock()
			if err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		}
	}()
	stop := sync.OnceFunc(func() {
		cancel()
		<-done
	})
	e.t.Cleanup(stop)
	return func() *getLoad {
		stop()
		return load
	}
}

// Bake's traffic rule on the real engine and nginx: v2-failreq passes its
// health checks but answers every real request with a 500. Under a light
// load through nginx the bake sees the new color's 5xx rate above
// bake_max_error_rate and switches back: the deployment ends rolled_back
// with the measured rate as its reason, traffic is on v1 again and a
// rolled_back notification goes out.
func TestSwitch_BakeTrafficRuleRollsBackWhenRealRequestsFail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2-failreq")
	rcv, url := startReceiver(t)
	e.notifyURL = url
	cfg := defaultSvc()
	cfg.Traffic = config.TrafficModeSwitch
	cfg.Bake = 30 * time.Second // an upper bound: the rule decides long before
	cfg.BakeMaxErrorRate = 0.02
	cfg.BakeMinRequests = 10
	cfg.WatchInterval = 200 * time.Millisecond
	cfg.Notify = true
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	v1 := d.mustSucceed("v1")

	stopLoad := e.startGETLoad(20 * time.Millisecond)
	eventually(t, faultTimeout, "the load reaching v1", func() error {
		if n, err := d.metricValue("deployd_switch_requests_total", `color="blue"`, `service="`+e.svc+`"`); err != nil || n < 5 {
			return fmt.Errorf("requests on blue: %v (%v)", n, err)
		}
		return nil
	})
	dep := d.waitDeployment(d.deploy("v2-failreq").ID)
	load := stopLoad()
	if dep.Status != controller.StatusRolledBack {
		t.Fatalf("deploy of v2-failreq: %s (%s), want rolled_back; steps %s", dep.Status, dep.Error, stepSummary(dep))
	}
	for _, want := range []string{"5xx rate ", "above max 2%"} {
		if !strings.Contains(dep.Error, want) {
			t.Errorf("reason %q, want the measured rate (%q)", dep.Error, want)
		}
	}
	sw, bake := findStep(dep, controller.StepSwitch), findStep(dep, controller.StepBake)
	if sw == nil || sw.Status != controller.StepSucceeded || sw.FinishedAt == nil || bake == nil || bake.FinishedAt == nil {
		t.Fatalf("steps = %s, want a switch, then a bake that failed", stepSummary(dep))
	}
	if !strings.Contains(bake.Message, "traffic moved back to blue") {
		t.Errorf("bake step message %q, want it to say traffic moved back to blue", bake.Message)
	}
	t.Logf("rolled back %s after the switch: %s; load %v, %d errors",
		bake.FinishedAt.Sub(*sw.FinishedAt).Round(time.Millisecond), dep.Error, load.answers, load.errs)
	if load.answers["500 green"] == 0 {
		t.Errorf("load answers %v: no 500 from green, the test proves nothing", load.answers)
	}
	if load.errs != 0 {
		t.Errorf("%d requests of the load failed outright (first: %v), want answers", load.errs, load.first)
	}

	e.assertServes("v1", "blue")
	sv := d.service()
	if sv.ActiveColor != controller.Blue || sv.ActiveDeployment == nil || sv.ActiveDeployment.ID != v1.ID {
		t.Fatalf("service after the bake = active %s by %+v, want blue by %s", sv.ActiveColor, sv.ActiveDeployment, v1.ID)
	}
	eventually(t, faultTimeout, "a rolled_back notification", func() error {
		for _, g := range rcv.ofKind(controller.NotifyRolledBack) {
			if g.note.Deployment == dep.ID && g.note.Service == e.svc && strings.Contains(g.note.Message, "5xx rate") {
				return nil
			}
		}
		return fmt.Errorf("rolled_back notifications: %+v", rcv.ofKind(controller.NotifyRolledBack))
	})
}
