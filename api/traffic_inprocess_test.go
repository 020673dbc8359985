package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/xtest"
	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/store"
	"github.com/deployd/deployd/pkg/trafficswitch"
)

// The pieces around the switch that this test does not exercise: no
// containers, a router that does nothing (the test sets the switch's
// targets itself). Unused methods panic.
type idleRuntime struct{ controller.Runtime }

func (idleRuntime) Containers(context.Context, string) ([]controller.Container, error) {
	return nil, nil
}
func (idleRuntime) Ping(context.Context) error { return nil }

type idleRouter struct{ controller.Router }

func (idleRouter) EnsurePlaceholder(context.Context, string) error { return nil }
func (idleRouter) Switch(context.Context, string, controller.Color, []string) error {
	return nil
}

const opsSecret = "ops-secret-0123456789abcdef"

// daemon is the API, the controller and a real Switch on loopback, with a
// bbolt store in dir.
type daemon struct {
	t       *testing.T
	sw      *trafficswitch.Switch
	ctl     *controller.Controller
	apiURL  string
	stop    func()
	siteURL string // the switch's address for the service "web"
}

func bootDaemon(t *testing.T, dir, backend string) *daemon {
	t.Helper()
	log, _ := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	st, err := store.Open(t.Context(), store.Options{Path: filepath.Join(dir, "deployd.db")})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	sw, err := trafficswitch.New(trafficswitch.Options{Logger: log})
	if err != nil {
		t.Fatalf("new switch: %v", err)
	}
	ctl := controller.New(controller.Options{
		Services:       []controller.ServiceSpec{{Name: "web", Image: "demoapp", Replicas: 1, Port: 8000}},
		Runtime:        idleRuntime{},
		Router:         idleRouter{},
		Store:          st,
		Logger:         log,
		TrafficControl: trafficswitch.NewControl(trafficswitch.Local(sw)),
		Pause:          controller.PauseLimits{MaxHold: 5 * time.Second, MaxHeld: 2},
	})
	// As in the daemon: what was recorded applies before the service
	// listens.
	if err := ctl.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := sw.Listen(t.Context(), "web", "127.0.0.1:0"); err != nil {
		t.Fatalf("switch listen: %v", err)
	}
	if err := sw.SetTargets("web", "blue", []string{backend}); err != nil {
		t.Fatalf("SetTargets: %v", err)
	}
	srv := api.New(api.Options{
		Controller: ctl, Logger: log,
		Tokens: []auth.Token{{Name: "ops", Role: auth.RoleOperator, Secret: opsSecret}},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var closed bool
	d := &daemon{t: t, sw: sw, ctl: ctl, apiURL: "http://" + ln.Addr().String(), siteURL: "http://" + sw.Addr("web").String()}
	stop := func() {
		if closed {
			return
		}
		closed = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shut down api: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := ctl.Close(ctx); err != nil {
			t.Errorf("close controller: %v", err)
		}
		if err := sw.Close(ctx); err != nil {
			t.Errorf("close switch: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	}
	t.Cleanup(stop)
	d.stop = stop
	return d
}

func (d *daemon) post(path, body string) (int, []byte) {
	d.t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.apiURL+path, strings.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+opsSecret)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return d.send(req)
}

func (d *daemon) service() api.Service {
	d.t.Helper()
	req, err := http.NewRequest(http.MethodGet, d.apiURL+"/api/v1/services/web", nil)
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+opsSecret)
	status, b := d.send(req)
	if status != http.StatusOK {
		d.t.Fatalf("GET service: %d %s", status, b)
	}
	var s api.Service
	if err := json.Unmarshal(b, &s); err != nil {
		d.t.Fatalf("decode service %s: %v", b, err)
	}
	return s
}

func (d *daemon) send(req *http.Request) (int, []byte) {
	d.t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	return res.StatusCode, b
}

type siteAnswer struct {
	status     int
	body       string
	retryAfter string
	err        error
}

func (d *daemon) visit() siteAnswer {
	res, err := http.Get(d.siteURL + "/")
	if err != nil {
		return siteAnswer{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return siteAnswer{status: res.StatusCode, body: string(b), retryAfter: res.Header.Get("Retry-After"), err: err}
}

// The API's pause holds real requests in a real switch, bounded in number,
// resume lets them through, maintenance answers 503 with the message, bad
// input changes nothing, and a restart keeps both.
func TestTraffic_PauseAndMaintenanceThroughTheAPIOnARealSwitch(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "blue")
	}))
	defer backend.Close()
	dir := t.TempDir()
	d := bootDaemon(t, dir, strings.TrimPrefix(backend.URL, "http://"))

	if a := d.visit(); a.status != http.StatusOK || a.body != "blue" {
		t.Fatalf("before the pause: %+v, want 200 blue", a)
	}
	if status, b := d.post("/api/v1/services/web/pause", `{"max_held":3}`); status != http.StatusBadRequest {
		t.Fatalf("pause above the configured max_held = %d %s, want 400", status, b)
	}
	if status, b := d.post("/api/v1/services/web/pause", ""); status != http.StatusOK {
		t.Fatalf("pause = %d %s, want 200", status, b)
	}
	if status, b := d.post("/api/v1/services/web/pause", ""); status != http.StatusConflict {
		t.Fatalf("second pause = %d %s, want 409", status, b)
	}

	held := make(chan siteAnswer, 2)
	for range 2 {
		go func() { held <- d.visit() }()
	}
	xtest.Eventually(t, 5*time.Second, 5*time.Millisecond, "two requests held", func() error {
		if tr := d.service().Traffic; tr == nil || !tr.Paused || tr.Held != 2 {
			return fmt.Errorf("traffic %+v", tr)
		}
		return nil
	})
	if a := d.visit(); a.status != http.StatusServiceUnavailable || a.retryAfter != "5" {
		t.Errorf("a third request while two are held = %+v, want 503 with Retry-After 5", a)
	}
	if status, b := d.post("/api/v1/services/web/resume", ""); status != http.StatusOK {
		t.Fatalf("resume = %d %s, want 200", status, b)
	}
	for range 2 {
		if a := <-held; a.status != http.StatusOK || a.body != "blue" {
			t.Errorf("held request after resume = %+v, want 200 blue", a)
		}
	}

	if status, b := d.post("/api/v1/services/web/maintenance", `{"on":true,"message":"Back at 18:00 UTC"}`); status != http.StatusOK {
		t.Fatalf("maintenance on = %d %s, want 200", status, b)
	}
	if status, b := d.post("/api/v1/services/web/maintenance", `{"on":true,"message":"two\nlines"}`); status != http.StatusBadRequest {
		t.Fatalf("maintenance with a newline = %d %s, want 400", status, b)
	}
	long := strings.Repeat("x", trafficswitch.MaxMessageLen+1)
	if status, b := d.post("/api/v1/services/web/maintenance", `{"on":true,"message":"`+long+`"}`); status != http.StatusBadRequest {
		t.Fatalf("maintenance with a long message = %d %s, want 400", status, b)
	}
	if a := d.visit(); a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "Back at 18:00 UTC") {
		t.Errorf("during maintenance: %+v, want 503 with the first message", a)
	}
	if status, b := d.post("/api/v1/services/web/pause", `{"max_hold":"2s"}`); status != http.StatusOK {
		t.Fatalf("pause = %d %s, want 200", status, b)
	}
	before := d.service().Traffic

	// A restart: a new switch, controller and API on the same store.
	d.stop()
	d = bootDaemon(t, dir, strings.TrimPrefix(backend.URL, "http://"))
	after := d.service().Traffic
	if after == nil || !after.Paused || !after.Maintenance || after.Message != "Back at 18:00 UTC" || after.MaxHoldSeconds != 2 ||
		!after.PausedSince.Equal(*before.PausedSince) {
		t.Errorf("after a restart traffic = %+v, want %+v", after, before)
	}
	if a := d.visit(); a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "Back at 18:00 UTC") {
		t.Errorf("after a restart: %+v, want the maintenance page", a)
	}
	if status, b := d.post("/api/v1/services/web/maintenance", `{"on":false}`); status != http.StatusOK {
		t.Fatalf("maintenance off = %d %s, want 200", status, b)
	}
	if status, b := d.post("/api/v1/services/web/resume", ""); status != http.StatusOK {
		t.Fatalf("resume = %d %s, want 200", status, b)
	}
	if a := d.visit(); a.status != http.StatusOK || a.body != "blue" {
		t.Errorf("after resume and maintenance off: %+v, want 200 blue", a)
	}
}
