package api

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/valyala/fasthttp"

	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
)

// benchController answers the read paths with canned values and records
// nothing, so that a benchmark measures the API and not a growing call log.
type benchController struct {
	*fakeController
	view        controller.ServiceView
	deployments []controller.Deployment
}

func (c *benchController) Service(ctx context.Context, name string) (controller.ServiceView, error) {
	return c.view, nil
}

func (c *benchController) Deployments(ctx context.Context, service string, limit int) ([]controller.Deployment, error) {
	return c.deployments[:min(limit, len(c.deployments))], nil
}

// benchDeployment is a finished deploy with the eight steps a real one
// records, pre-deploy output included.
func benchDeployment(i int) controller.Deployment {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	at := func(s int) *time.Time { t := created.Add(time.Duration(s) * time.Second); return &t }
	steps := []struct{ name, msg, out string }{
		{controller.StepPull, "image present", ""},
		{controller.StepCleanup, "removed 2 stale containers", ""},
		{controller.StepPreDeploy, "exit 0", "Operations to perform:\n  Apply all migrations: app\nRunning migrations:\n  Applying app.0007_order_note... OK\n"},
		{controller.StepStart, "started web-green-1, web-green-2", ""},
		{controller.StepHealth, "2/2 healthy", ""},
		{controller.StepSwitch, "nginx now points at green", ""},
		{controller.StepRecord, "green is active", ""},
		{controller.StepStandby, "blue kept running as standby", ""},
	}
	d := controller.Deployment{
		ID:         fmt.Sprintf("01JPD%021d", i),
		Service:    "web",
		Kind:       controller.KindDeploy,
		Image:      "registry.example.com/shop/web:v1.42.0",
		FromColor:  controller.Blue,
		ToColor:    controller.Green,
		Status:     controller.StatusSucceeded,
		Trigger:    controller.Trigger{Source: "webhook", Actor: "ci-deployer", Commit: "9fceb02d0ae598e95dc970b74767f19372d61af8"},
		CreatedAt:  created,
		FinishedAt: at(len(steps) + 1),
	}
	for j, s := range steps {
		d.Steps = append(d.Steps, controller.Step{
			Name: s.name, Status: controller.StepSucceeded, StartedAt: *at(j), FinishedAt: at(j + 1), Message: s.msg, Output: s.out,
		})
	}
	return d
}

// benchView is a service with two replicas per color, blue the warm standby.
func benchView() controller.ServiceView {
	started := time.Date(2025, 1, 2, 3, 4, 9, 0, time.UTC)
	containers := func(color controller.Color, base int) []controller.Container {
		var cs []controller.Container
		for i := range 2 {
			cs = append(cs, controller.Container{
				ID:        fmt.Sprintf("%064x", base+i),
				Name:      fmt.Sprintf("web-%s-%d", color, i+1),
				State:     "running",
				Health:    "healthy",
				Address:   fmt.Sprintf("172.18.0.%d:8000", base+i),
				StartedAt: started,
			})
		}
		return cs
	}
	d := benchDeployment(1)
	active := benchDeployment(1)
	return controller.ServiceView{
		Name:         "web",
		ActiveColor:  controller.Green,
		ActiveImage:  "registry.example.com/shop/web:v1.42.0",
		StandbyColor: controller.Blue,
		StandbyImage: "registry.example.com/shop/web:v1.41.3",
		Colors: map[controller.Color]controller.ColorView{
			controller.Blue:  {Image: "registry.example.com/shop/web:v1.41.3", Containers: containers(controller.Blue, 2)},
			controller.Green: {Image: "registry.example.com/shop/web:v1.42.0", Containers: containers(controller.Green, 12)},
		},
		StandbyWarm:      true,
		ActiveDeployment: &active,
		Deployment:       &d,
		RepositoryURL:    "https://git.example.com/shop/web",
	}
}

// newBenchServer is the API as the daemon builds it, logging access lines
// at info level into nothing, so formatting them is part of the cost.
func newBenchServer(ctl Controller) *Server {
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	return New(Options{Controller: ctl, Tokens: testTokens, WebhookSecret: []byte(webhookSecret), Logger: logger})
}

// benchGET serves GET target through the app's fasthttp handler in memory:
// no socket, no HTTP client, only what deployd's own request path costs.
func benchGET(b *testing.B, srv *Server, target string) {
	b.Helper()
	h := srv.App().Handler()
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI(target)
	req.Header.SetHost("127.0.0.1:8080")
	req.Header.Set("Authorization", "Bearer "+viewerSecret)
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	var rc fasthttp.RequestCtx

	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rc.Init(&req, remote, nil)
		h(&rc)
		if got := rc.Response.StatusCode(); got != fasthttp.StatusOK {
			b.Fatalf("GET %s: status = %d, want 200 (body %s)", target, got, rc.Response.Body())
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(len(rc.Response.Body())), "body_bytes")
}

func BenchmarkGetService(b *testing.B) {
	srv := newBenchServer(&benchController{fakeController: &fakeController{}, view: benchView()})
	benchGET(b, srv, "/api/v1/services/web")
}

func BenchmarkListDeployments(b *testing.B) {
	ds := make([]controller.Deployment, 50)
	for i := range ds {
		ds[i] = benchDeployment(len(ds) - i)
	}
	srv := newBenchServer(&benchController{fakeController: &fakeController{}, deployments: ds})
	benchGET(b, srv, "/api/v1/deployments?service=web&limit=20")
}

// BenchmarkAuthLookup is what every API request pays before its handler:
// parsing the header and comparing the secret's digest with every token.
func BenchmarkAuthLookup(b *testing.B) {
	tokens := make([]auth.Token, 10)
	for i := range tokens {
		tokens[i] = auth.Token{Name: fmt.Sprintf("token-%d", i), Role: auth.RoleViewer, Secret: fmt.Sprintf("secret-%02d-0123456789abcdef0123456789", i)}
	}
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	a := auth.NewAuthenticator(tokens, quiet)
	for _, tc := range []struct {
		name   string
		header string
		found  bool
	}{
		{"known", "Bearer " + tokens[7].Secret, true},
		{"unknown", "Bearer not-a-configured-secret-0123456789", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				secret, ok := bearer(tc.header)
				if !ok {
					b.Fatalf("bearer(%q) not ok", tc.header)
				}
				if _, found := a.Lookup(secret); found != tc.found {
					b.Fatalf("Lookup found = %v, want %v", found, tc.found)
				}
			}
		})
	}
}
