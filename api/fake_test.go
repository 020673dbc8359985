package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/internal/xtest"
	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
)

// call is one recorded call to fakeController.
type call struct {
	method   string
	service  string
	id       string
	limit    int
	req      controller.DeployRequest
	trigger  controller.Trigger
	pause    controller.PauseRequest
	rollback controller.RollbackRequest
	on       bool
	message  string
}

// fakeController records calls and answers with err when set, else with
// its canned values.
type fakeController struct {
	mu    sync.Mutex
	calls []call

	err         error
	service     controller.ServiceView
	services    []controller.ServiceView
	deployment  controller.Deployment
	deployments []controller.Deployment
	traffic     controller.TrafficView
	// block, when set, makes every call wait for it to close.
	block chan struct{}
	// entered is sent to as a call starts, when set.
	entered chan struct{}
	// events, when set, is the stream Events serves; else an empty,
	// complete one.
	events *fakeEvents
	// feed, when set, is the system feed Feed serves; else an empty one.
	feed       *fakeFeed
	deliveries map[string]bool
	audit      []controller.AuditEntry
	auditErr   error
	// readyErr is what Ready answers. Ready is not recorded as a call:
	// probes reach it without credentials, and tests count the calls that
	// need them.
	readyErr error
}

var _ Controller = (*fakeController)(nil)

func (f *fakeController) record(c call) error {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	block, entered := f.block, f.entered
	f.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if block != nil {
		<-block
	}
	return f.err
}

func (f *fakeController) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeController) Services(ctx context.Context) ([]controller.ServiceView, error) {
	if err := f.record(call{method: "Services"}); err != nil {
		return nil, err
	}
	return f.services, nil
}

func (f *fakeController) Service(ctx context.Context, name string) (controller.ServiceView, error) {
	if err := f.record(call{method: "Service", service: name}); err != nil {
		return controller.ServiceView{}, err
	}
	return f.service, nil
}

func (f *fakeController) Deploy(ctx context.Context, service string, req controller.DeployRequest) (controller.Deployment, error) {
	if err := f.record(call{method: "Deploy", service: service, req: req}); err != nil {
		return controller.Deployment{}, err
	}
	return f.deployment, nil
}

func (f *fakeController) Rollback(ctx context.Context, service string, req controller.RollbackRequest) (controller.Deployment, error) {
	if err := f.record(call{method: "Rollback", service: service, trigger: req.Trigger, rollback: req}); err != nil {
		return controller.Deployment{}, err
	}
	return f.deployment, nil
}

func (f *fakeController) Deployments(ctx context.Context, service string, limit int) ([]controller.Deployment, error) {
	if err := f.record(call{method: "Deployments", service: service, limit: limit}); err != nil {
		return nil, err
	}
	return f.deployments, nil
}

func (f *fakeController) Deployment(ctx context.Context, id string) (controller.Deployment, error) {
	if err := f.record(call{method: "Deployment", id: id}); err != nil {
		return controller.Deployment{}, err
	}
	return f.deployment, nil
}

// Secrets of the test tokens.
const (
	viewerSecret   = "viewer-secret-0123456789"
	deployerSecret = "deployer-secret-0123456789"
	operatorSecret = "operator-secret-0123456789"
	webhookSecret  = "webhook-secret-0123456789"
)

var testTokens = []auth.Token{
	{Name: "ci-viewer", Role: auth.RoleViewer, Secret: viewerSecret},
	{Name: "ci-deployer", Role: auth.RoleDeployer, Secret: deployerSecret},
	{Name: "ops", Role: auth.RoleOperator, Secret: operatorSecret},
}

type harness struct {
	srv      *Server
	ctl      *fakeController
	hook     *logtest.Hook
	sessions *auth.Sessions
	// clock is the sessions' clock.
	clock *xtest.Clock
}

// sessionTTL is the harness's session lifetime.
const sessionTTL = time.Hour

// newHarness builds a Server on a fake controller; opts may change its
// Options first.
func newHarness(t *testing.T, opts ...func(*Options)) *harness {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	ctl := &fakeController{deployment: sampleDeployment()}
	clock := xtest.NewClock(time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC))
	sessions := auth.NewSessions(sessionTTL, clock.Now)
	o := Options{
		Controller: ctl, Tokens: testTokens, WebhookSecret: []byte(webhookSecret), Logger: logger,
		Sessions: sessions, Pages: fakePages{sessions: sessions}, Metrics: fakeMetrics,
	}
	for _, opt := range opts {
		opt(&o)
	}
	srv := New(o)
	return &harness{srv: srv, ctl: ctl, hook: hook, sessions: sessions, clock: clock}
}

// fakeMetrics stands in for the Prometheus handler.
var fakeMetrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = io.WriteString(w, "deployd_fake_metric 1\n")
})

// fakePages stands in for the status page: the same public and
// redirecting routes, without templates.
type fakePages struct{ sessions *auth.Sessions }

var _ Pages = fakePages{}

func (p fakePages) Register(r fiber.Router) {
	r.Get("/", func(c *fiber.Ctx) error {
		if _, ok := p.sessions.Get(c.Cookies(auth.CookieName)); !ok {
			return c.Redirect("/login", fiber.StatusSeeOther)
		}
		c.Type("html")
		return c.SendString("<p>status</p>")
	})
	r.Get("/login", func(c *fiber.Ctx) error {
		c.Type("html")
		return c.SendString(`<form id="login-form"></form>`)
	})
	r.Get("/static/*", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderCacheControl, "public, max-age=300")
		c.Type("css")
		return c.SendString("body{}")
	})
}

// do sends one request through app.Test; secret "" sends no Authorization.
func (h *harness) do(t *testing.T, method, target, secret, body string) *http.Response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := h.srv.App().Test(req, 5000)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func decodeJSON[T any](t *testing.T, resp *http.Response) T {
	t.Helper()
	var v T
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode body %q: %v", b, err)
	}
	return v
}

func wantStatus(t *testing.T, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, want, b)
	}
}

func sampleDeployment() controller.Deployment {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	started := created.Add(time.Second)
	return controller.Deployment{
		ID:        "d-42",
		Service:   "web",
		Kind:      controller.KindDeploy,
		Image:     "demoapp:v2",
		FromColor: controller.Blue,
		ToColor:   controller.Green,
		Status:    controller.StatusQueued,
		Steps:     []controller.Step{{Name: controller.StepPull, Status: controller.StepRunning, StartedAt: started, Message: "pulling"}},
		Trigger:   controller.Trigger{Source: "api", Actor: "ci-deployer", Commit: "abc123"},
		CreatedAt: created,
	}
}

// The real controller fits the interface the API declares.
var _ Controller = (*controller.Controller)(nil)

func (f *fakeController) Events(ctx context.Context, id string, seq int) ([]controller.Event, <-chan struct{}, bool, error) {
	if err := f.record(call{method: "Events", id: id, limit: seq}); err != nil {
		return nil, nil, false, err
	}
	if f.events == nil {
		closed := make(chan struct{})
		close(closed)
		return nil, closed, true, nil
	}
	evs, changed, done := f.events.since(seq)
	return evs, changed, done, nil
}

func (f *fakeController) Cancel(ctx context.Context, id string) (controller.Deployment, error) {
	if err := f.record(call{method: "Cancel", id: id}); err != nil {
		return controller.Deployment{}, err
	}
	return f.deployment, nil
}

func (f *fakeController) DeployDelivery(ctx context.Context, key, service string, req controller.DeployRequest) (controller.Deployment, bool, error) {
	if err := f.record(call{method: "DeployDelivery", id: key, service: service, req: req}); err != nil {
		return controller.Deployment{}, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deliveries == nil {
		f.deliveries = map[string]bool{}
	}
	replayed := f.deliveries[key]
	f.deliveries[key] = true
	return f.deployment, replayed, nil
}

// RecordAudit is not counted among calls: tests that prove "the controller
// was not called" mean its deploy paths; audit entries are checked apart.
func (f *fakeController) RecordAudit(ctx context.Context, e controller.AuditEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audit = append(f.audit, e)
	return f.auditErr
}

// AuditBefore answers with the recorded entries in their order, those
// with an ID below before when it is set, up to limit.
func (f *fakeController) AuditBefore(ctx context.Context, before string, limit int) ([]controller.AuditEntry, error) {
	if err := f.record(call{method: "Audit", id: before, limit: limit}); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []controller.AuditEntry
	for _, e := range f.audit {
		if len(out) == limit {
			break
		}
		if before == "" || e.ID < before {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeController) Pause(ctx context.Context, service string, req controller.PauseRequest) (controller.TrafficView, error) {
	if err := f.record(call{method: "Pause", service: service, pause: req}); err != nil {
		return controller.TrafficView{}, err
	}
	return f.traffic, nil
}

func (f *fakeController) Resume(ctx context.Context, service string) (controller.TrafficView, error) {
	if err := f.record(call{method: "Resume", service: service}); err != nil {
		return controller.TrafficView{}, err
	}
	return f.traffic, nil
}

func (f *fakeController) Maintenance(ctx context.Context, service string, on bool, message string) (controller.TrafficView, error) {
	if err := f.record(call{method: "Maintenance", service: service, on: on, message: message}); err != nil {
		return controller.TrafficView{}, err
	}
	return f.traffic, nil
}

func (f *fakeController) Ready(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readyErr
}

func (f *fakeController) setReadyErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readyErr = err
}

func (f *fakeController) AuditEntries() []controller.AuditEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]controller.AuditEntry(nil), f.audit...)
}

// fakeEvents is a deployment's event stream the test appends to.
type fakeEvents struct {
	mu      sync.Mutex
	events  []controller.Event
	done    bool
	changed chan struct{}
}

func newFakeEvents() *fakeEvents { return &fakeEvents{changed: make(chan struct{})} }

func (l *fakeEvents) add(typ, status, msg string, final bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, controller.Event{
		Seq: len(l.events) + 1, Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Type: typ, Status: status, Message: msg,
	})
	l.done = final
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *fakeEvents) since(seq int) ([]controller.Event, <-chan struct{}, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []controller.Event
	if seq < len(l.events) {
		out = append(out, l.events[seq:]...)
	}
	return out, l.changed, l.done
}

// fakeFeedEpoch is the epoch of every fakeFeed.
const fakeFeedEpoch = "fake1"

// fakeFeed is a system feed the test appends to. It keeps the newest
// keep events (all when keep is zero) and loses cursors as the
// controller's does.
type fakeFeed struct {
	mu      sync.Mutex
	events  []controller.FeedEvent
	last    uint64
	keep    int
	changed chan struct{}
}

func newFakeFeed() *fakeFeed { return &fakeFeed{changed: make(chan struct{})} }

func (f *fakeFeed) add(e controller.FeedEvent) controller.FeedCursor {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last++
	e.Seq = f.last
	if e.Time.IsZero() {
		e.Time = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	}
	f.events = append(f.events, e)
	if f.keep > 0 && len(f.events) > f.keep {
		f.events = f.events[len(f.events)-f.keep:]
	}
	close(f.changed)
	f.changed = make(chan struct{})
	return controller.FeedCursor{Epoch: fakeFeedEpoch, Seq: f.last}
}

func (f *fakeFeed) since(cursor controller.FeedCursor, service string) (controller.FeedPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	page := controller.FeedPage{Next: controller.FeedCursor{Epoch: fakeFeedEpoch, Seq: f.last}, Changed: f.changed}
	if cursor == (controller.FeedCursor{}) {
		return page, nil
	}
	oldest := f.last + 1
	if len(f.events) > 0 {
		oldest = f.events[0].Seq
	}
	switch {
	case cursor.Epoch != fakeFeedEpoch:
		return page, fmt.Errorf("%w: the cursor is of another deployd process", controller.ErrFeedLost)
	case cursor.Seq > f.last || cursor.Seq+1 < oldest:
		return page, fmt.Errorf("%w: the events after it are no longer kept", controller.ErrFeedLost)
	}
	for _, e := range f.events {
		if e.Seq > cursor.Seq && (service == "" || e.Service == service) {
			page.Events = append(page.Events, e)
		}
	}
	return page, nil
}

// Feed serves f.feed, or an empty feed when it is nil.
func (f *fakeController) Feed(cursor controller.FeedCursor, service string) (controller.FeedPage, error) {
	if err := f.record(call{method: "Feed", service: service, id: cursor.String()}); err != nil {
		return controller.FeedPage{}, err
	}
	f.mu.Lock()
	feed := f.feed
	f.mu.Unlock()
	if feed == nil {
		return controller.FeedPage{Next: controller.FeedCursor{Epoch: fakeFeedEpoch}, Changed: make(chan struct{})}, nil
	}
	return feed.since(cursor, service)
}
