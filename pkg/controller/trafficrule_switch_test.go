package controller_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/health"
	"github.com/deployd/deployd/pkg/trafficswitch"
)

// switchRouter is the fake router with a real trafficswitch.Switch in
// the request path: each color's replicas stand for one real backend,
// which the Switch forwards to.
type switchRouter struct {
	controller.Router
	sw       *trafficswitch.Switch
	backends map[controller.Color]string
}

func (r switchRouter) Switch(ctx context.Context, service string, color controller.Color, addrs []string) error {
	if err := r.Router.Switch(ctx, service, color, addrs); err != nil {
		return err
	}
	var targets []string
	if len(addrs) > 0 {
		targets = []string{r.backends[color]}
	}
	return r.sw.SetTargets(service, string(color), targets)
}

// backendProber probes a replica's color's backend for real, so the
// health endpoint's "ok" is an HTTP answer, not a fake's verdict.
type backendProber struct {
	rt       *fakeRuntime
	real     controller.Prober
	backends map[controller.Color]string
}

func (p backendProber) Probe(ctx context.Context, addr string, spec controller.HealthSpec) error {
	for _, c := range p.rt.list(svc) {
		if c.Address == addr {
			return p.real.Probe(ctx, p.backends[c.Color], spec)
		}
	}
	return fmt.Errorf("no replica at %s", addr)
}

// colorBackend answers as the given color; when failing, everything but
// /health is a 500.
func colorBackend(t *testing.T, color string, failing bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing && r.URL.Path != "/health" {
			http.Error(w, "database gone", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, color)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// load sends GET /api to url from a few clients until stop is called.
func load(t *testing.T, url string) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				resp, err := client.Get(url + "/api")
				if err != nil {
					continue // the switch closing at the end
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			// A connection dialed but never used counts as active for
			// five seconds in the Switch's server shutdown.
			client.CloseIdleConnections()
		})
	}
	t.Cleanup(stop)
	return stop
}

// Runs on real time: real sockets, a real Switch, real health probes.
func TestBake_RealTrafficThroughTheSwitchRollsBackAColorWhoseHealthIsFine(t *testing.T) {
	backends := map[controller.Color]string{
		controller.Blue:  colorBackend(t, "blue", false),
		controller.Green: colorBackend(t, "green", true),
	}
	sw, err := trafficswitch.New(trafficswitch.Options{})
	if err != nil {
		t.Fatalf("trafficswitch.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		if err := sw.Close(ctx); err != nil {
			t.Errorf("close switch: %v", err)
		}
	})
	if err := sw.Listen(context.Background(), svc, "127.0.0.1:0"); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	url := "http://" + sw.Addr(svc).String()

	h := newHarnessWith(t, func(o *controller.Options) {
		o.Router = switchRouter{Router: o.Router, sw: sw, backends: backends}
		o.Prober = backendProber{rt: o.Runtime.(*fakeRuntime), real: health.NewProber(o.Logger), backends: backends}
		o.TrafficReader = trafficswitch.NewTrafficReader(trafficswitch.Local(sw), sw.ErrorWindow())
	}, func(s *controller.ServiceSpec) {
		s.Bake = 30 * time.Second
		s.BakeTraffic = controller.TrafficRule{MaxErrorRate: 0.02, MinRequests: 20}
	})
	v1 := h.deployOK("v1")
	blue := h.colorContainers(controller.Blue)
	stop := load(t, url)

	d := h.deploy("v2")
	stop()

	if d.Status != controller.StatusRolledBack {
		t.Fatalf("status = %s (%q), want rolled_back", d.Status, d.Error)
	}
	// Green answered nothing but 500s to real requests, and passed every
	// probe of its health endpoint.
	if missing := containsAll(d.Error, "bake", "5xx rate 100% (", "above max 2%"); len(missing) > 0 {
		t.Errorf("error = %q, missing %q", d.Error, missing)
	}
	t.Logf("bake: %s", d.Error)
	if s, _ := findStep(d, controller.StepHealth); s.Status != controller.StepSucceeded {
		t.Errorf("health step = %s %q, want succeeded", s.Status, s.Message)
	}
	wantSwitchedBack(t, h, blue, v1)
	if rolled := h.notes.ofKind(controller.NotifyRolledBack); len(rolled) != 1 || !strings.Contains(rolled[0].Message, "5xx rate") {
		t.Errorf("rolled_back notifications = %+v, want one with the rate", rolled)
	}
	// Traffic is back on blue, request by request.
	for range 5 {
		if status, body := get(t, url+"/api"); status != http.StatusOK || body != "blue" {
			t.Fatalf("GET /api after the rollback = %d %q, want 200 blue", status, body)
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}
