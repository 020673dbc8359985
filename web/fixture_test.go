package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
)

// fakeController serves fixed views; tests change them through its fields.
type fakeController struct {
	mu          sync.Mutex
	services    []controller.ServiceView
	deployments []controller.Deployment
	audit       []controller.AuditEntry
	// recorded holds what the pages wrote to the audit trail.
	recorded []controller.AuditEntry
}

func (f *fakeController) RecordAudit(_ context.Context, e controller.AuditEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recorded = append(f.recorded, e)
	return nil
}

func (f *fakeController) recordedAudit() []controller.AuditEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]controller.AuditEntry(nil), f.recorded...)
}

var _ Controller = (*fakeController)(nil)

// fakeFeedPosition is where the fake's feed stands.
var fakeFeedPosition = controller.FeedCursor{Epoch: "lz3k9ab", Seq: 41}

func (f *fakeController) Feed(controller.FeedCursor, string) (controller.FeedPage, error) {
	return controller.FeedPage{Next: fakeFeedPosition}, nil
}

func (f *fakeController) Services(context.Context) ([]controller.ServiceView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]controller.ServiceView(nil), f.services...), nil
}

func (f *fakeController) Service(_ context.Context, name string) (controller.ServiceView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.services {
		if s.Name == name {
			return s, nil
		}
	}
	return controller.ServiceView{}, controller.Errorf(controller.ENOTFOUND, "no service %q", name)
}

func (f *fakeController) Deployments(_ context.Context, service string, limit int) ([]controller.Deployment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []controller.Deployment
	for _, d := range f.deployments {
		if (service == "" || d.Service == service) && len(out) < limit {
			out = append(out, d)
		}
	}
	return out, nil
}

func (f *fakeController) Deployment(_ context.Context, id string) (controller.Deployment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.deployments {
		if d.ID == id {
			return d, nil
		}
	}
	return controller.Deployment{}, controller.Errorf(controller.ENOTFOUND, "no deployment %q", id)
}

func (f *fakeController) Audit(_ context.Context, limit int) ([]controller.AuditEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.audit) > limit {
		return append([]controller.AuditEntry(nil), f.audit[:limit]...), nil
	}
	return append([]controller.AuditEntry(nil), f.audit...), nil
}

var testNow = time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)

const (
	operatorSecret = "operator-secret-0123456789abcdef"
	deployerSecret = "deployer-secret-0123456789abcdef"
	viewerSecret   = "viewer-secret-0123456789abcdef"
	testHost       = "deployd.test"
	testOrigin     = "http://deployd.test"
)

func ptime(t time.Time) *time.Time { return &t }

// fixtureServices: "web" runs green (app:v2) with a warm blue standby
// (app:v1); "api" runs blue with no standby and a deploy in progress.
func fixtureServices() []controller.ServiceView {
	running := fixtureRunning()
	return []controller.ServiceView{
		{
			Name: "web", ActiveColor: controller.Green, ActiveImage: "app:v2",
			StandbyColor: controller.Blue, StandbyImage: "app:v1", StandbyWarm: true,
			RepositoryURL: "https://git.example.com/acme/web",
			ActiveDeployment: &controller.Deployment{
				ID: "dep-2", Service: "web", Kind: controller.KindDeploy, Image: "app:v2",
				Status:    controller.StatusSucceeded,
				Trigger:   controller.Trigger{Source: "api", Actor: "alice", Commit: "0123456789abcdef0123"},
				CreatedAt: testNow.Add(-12 * time.Minute),
			},
			Colors: map[controller.Color]controller.ColorView{
				controller.Green: {Image: "app:v2", Containers: []controller.Container{
					{Name: "web-green-1", State: "running", Health: "healthy", StartedAt: testNow.Add(-12 * time.Minute)},
				}},
				controller.Blue: {Image: "app:v1", Containers: []controller.Container{
					{Name: "web-blue-1", State: "running", Health: "healthy", StartedAt: testNow.Add(-3 * time.Hour)},
				}},
			},
		},
		{
			Name: "api", ActiveColor: controller.Blue, ActiveImage: "api:v7",
			Deployment: &running,
			Colors: map[controller.Color]controller.ColorView{
				controller.Blue: {Image: "api:v7", Containers: []controller.Container{
					{Name: "api-blue-1", State: "running", Health: "healthy", StartedAt: testNow.Add(-2 * time.Hour)},
				}},
			},
		},
	}
}

func fixtureRunning() controller.Deployment {
	return controller.Deployment{
		ID: "dep-run", Service: "api", Kind: controller.KindDeploy, Image: "api:v8",
		FromColor: controller.Blue, ToColor: controller.Green, Status: controller.StatusRunning,
		Trigger:   controller.Trigger{Source: "webhook", Actor: "ci", Commit: "feedface"},
		CreatedAt: testNow.Add(-30 * time.Second),
		Steps: []controller.Step{
			{Name: controller.StepPull, Status: controller.StepSucceeded, StartedAt: testNow.Add(-30 * time.Second), FinishedAt: ptime(testNow.Add(-28800 * time.Millisecond))},
			{Name: controller.StepStart, Status: controller.StepRunning, StartedAt: testNow.Add(-5 * time.Second)},
		},
	}
}

func fixtureDeployments() []controller.Deployment {
	return []controller.Deployment{
		fixtureRunning(),
		{
			ID: "dep-fail", Service: "web", Kind: controller.KindDeploy, Image: "app:v3",
			FromColor: controller.Green, ToColor: controller.Blue, Status: controller.StatusFailed,
			Error:     "health check failed: 500 from /health",
			Trigger:   controller.Trigger{Source: "api", Actor: "bob", Commit: "cafe"},
			CreatedAt: testNow.Add(-5 * time.Minute), FinishedAt: ptime(testNow.Add(-5*time.Minute + 62*time.Second)),
			Steps: []controller.Step{
				{Name: controller.StepPreDeploy, Status: controller.StepSucceeded, StartedAt: testNow.Add(-5 * time.Minute),
					FinishedAt: ptime(testNow.Add(-5*time.Minute + 2*time.Second)), Output: "migrating\nmigrated 3\n"},
				{Name: controller.StepHealth, Status: controller.StepFailed, StartedAt: testNow.Add(-5*time.Minute + 2*time.Second),
					FinishedAt: ptime(testNow.Add(-5*time.Minute + 62*time.Second)), Message: "500 from /health"},
			},
		},
		{
			ID: "dep-2", Service: "web", Kind: controller.KindDeploy, Image: "app:v2",
			FromColor: controller.Blue, ToColor: controller.Green, Status: controller.StatusSucceeded,
			Trigger:   controller.Trigger{Source: "api", Actor: "alice", Commit: "0123456789abcdef0123"},
			CreatedAt: testNow.Add(-12 * time.Minute), FinishedAt: ptime(testNow.Add(-12*time.Minute + 1200*time.Millisecond)),
		},
	}
}

func fixtureAudit() []controller.AuditEntry {
	return []controller.AuditEntry{
		{ID: "a1", Time: testNow.Add(-12 * time.Minute), Actor: "alice", Action: "deploy", Target: "web",
			Address: "127.0.0.1", Result: "ok", Status: 202, DeploymentID: "dep-2"},
	}
}

type fixture struct {
	ctl      *fakeController
	app      *fiber.App
	sessions *auth.Sessions
	hook     *logtest.Hook
}

// statusOf stands in for api.StatusOf, which the daemon passes: the
// codes the pages meet, with the API's statuses.
func statusOf(err error) int {
	switch controller.ErrorCode(err) {
	case controller.EINVALID:
		return http.StatusBadRequest
	case controller.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case controller.EFORBIDDEN:
		return http.StatusForbidden
	case controller.ENOTFOUND:
		return http.StatusNotFound
	case controller.ECONFLICT:
		return http.StatusConflict
	case controller.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

type fixtureOption func(*Options)

func withSecureCookies(o *Options) { o.SecureCookies = true }

func newFixture(t *testing.T, opts ...fixtureOption) *fixture {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	clock := func() time.Time { return testNow }
	ctl := &fakeController{services: fixtureServices(), deployments: fixtureDeployments(), audit: fixtureAudit()}
	o := Options{
		Controller: ctl,
		StatusOf:   statusOf,
		Auth: auth.NewAuthenticator([]auth.Token{
			{Name: "ops", Role: auth.RoleOperator, Secret: operatorSecret},
			{Name: "dep", Role: auth.RoleDeployer, Secret: deployerSecret},
			{Name: "view", Role: auth.RoleViewer, Secret: viewerSecret},
		}, log),
		Sessions:     auth.NewSessions(12*time.Hour, clock),
		LoginLimiter: auth.NewLimiter(10, time.Minute, 1000, clock),
		// More than the tests log in; TestLogin_SuccessesArePerTokenLimited
		// sets its own.
		LoginSuccesses: auth.NewLimiter(100, time.Minute, 1000, clock),
		Logger:         log,
		Now:            clock,
	}
	for _, opt := range opts {
		opt(&o)
	}
	// Streamed bodies, as the API's server has them.
	app := fiber.New(fiber.Config{Immutable: true, DisableStartupMessage: true, StreamRequestBody: true})
	New(o).Register(app)
	return &fixture{ctl: ctl, app: app, sessions: o.Sessions, hook: hook}
}

// session logs in role directly through the session store.
func (f *fixture) session(role auth.Role) auth.Session {
	names := map[auth.Role]string{auth.RoleOperator: "ops", auth.RoleDeployer: "dep", auth.RoleViewer: "view"}
	s, err := f.sessions.Create(context.Background(), auth.Identity{Name: names[role], Role: role})
	if err != nil {
		panic(err) // a memory-only store does not fail
	}
	return s
}

func (f *fixture) do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := f.app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s %s: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

func getReq(path string, s *auth.Session) *http.Request {
	// A path, not an absolute URL: fiber's Test would send the absolute
	// form and hide the Host header the handlers look at.
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Host = testHost
	if s != nil {
		req.AddCookie(&http.Cookie{Name: auth.CookieName, Value: s.ID})
	}
	return req
}

func postForm(path string, form url.Values, s *auth.Session) *http.Request {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Host = testHost
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", testOrigin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if s != nil {
		req.AddCookie(&http.Cookie{Name: auth.CookieName, Value: s.ID})
	}
	return req
}

// page GETs path as s and fails the test unless it answers want.
func (f *fixture) page(t *testing.T, path string, s *auth.Session, want int) string {
	t.Helper()
	resp, body := f.do(t, getReq(path, s))
	if resp.StatusCode != want {
		t.Fatalf("GET %s: status = %d, want %d\n%s", path, resp.StatusCode, want, body)
	}
	return body
}
