package trafficswitch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/pkg/controller"
)

// newToken returns a fresh control token, never written anywhere.
func newToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// edgeSwitch is one edge: a Switch serving "web" on a loopback port and
// the control API switchd serves (NewControlHandler with a token) on a
// loopback TCP port, reached by a TCP Client.
type edgeSwitch struct {
	name   string
	sw     *Switch
	srv    *httptest.Server
	client *Client
	// fail, when set, makes the control API fail the matching requests:
	// with a 500, or by dropping the connection.
	fail atomic.Pointer[edgeFailure]
}

type edgeFailure struct {
	method, suffix string
	drop           bool
}

func newEdgeSwitch(t *testing.T, name, token string) *edgeSwitch {
	t.Helper()
	logger, _ := test.NewNullLogger()
	reg := prometheus.NewRegistry()
	sw, err := New(Options{Logger: logger, Registerer: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sw.Close(ctx); err != nil {
			t.Errorf("Close %s: %v", name, err)
		}
	})
	if err := sw.Listen(context.Background(), "web", "127.0.0.1:0"); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	e := &edgeSwitch{name: name, sw: sw}
	api := NewControlHandler(ServerOptions{Switch: sw, Token: []byte(token), Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := e.fail.Load(); f != nil && r.Method == f.method && strings.HasSuffix(r.URL.Path, f.suffix) {
			if f.drop {
				panic(http.ErrAbortHandler)
			}
			writeError(w, errors.New("injected failure"))
			return
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	e.client = NewTCPClient(strings.TrimPrefix(e.srv.URL, "http://"), token)
	return e
}

// active is the edge's active color and its targets, read over its
// control API: what the edge confirms.
func (e *edgeSwitch) active(t *testing.T) (string, []string) {
	t.Helper()
	st, err := e.client.Status(context.Background(), "web")
	if err != nil {
		t.Fatalf("status of %s: %v", e.name, err)
	}
	for _, c := range st.Colors {
		if c.Active {
			return c.Color, c.Addrs
		}
	}
	return "", nil
}

// edgeSet is the edges a Fanout discovers; edges may join.
type edgeSet struct {
	mu    sync.Mutex
	edges []*edgeSwitch
}

func (s *edgeSet) add(e *edgeSwitch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.edges = append(s.edges, e)
}

func (s *edgeSet) discover(context.Context) ([]Edge, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Edge, len(s.edges))
	for i, e := range s.edges {
		out[i] = Edge{Name: e.name, Plane: e.client}
	}
	return out, nil
}

// fanoutHarness is a Router over a Fanout of n edge switches.
type fanoutHarness struct {
	t     *testing.T
	set   *edgeSet
	edges []*edgeSwitch
	r     *Router
	token string
	logs  *test.Hook
}

func newFanoutHarness(t *testing.T, n int) *fanoutHarness {
	t.Helper()
	h := &fanoutHarness{t: t, set: &edgeSet{}, token: newToken(t)}
	for _, name := range []string{"edge-a", "edge-b", "edge-c"}[:n] {
		e := newEdgeSwitch(t, name, h.token)
		h.edges = append(h.edges, e)
		h.set.add(e)
	}
	log, logs := test.NewNullLogger()
	h.logs = logs
	f, err := NewFanout(FanoutOptions{Discover: h.set.discover, EdgeTimeout: 2 * time.Second, Logger: log})
	if err != nil {
		t.Fatalf("NewFanout: %v", err)
	}
	h.r, err = NewRouter(RouterOptions{Plane: f, Edge: newFakeEdge(), Upstreams: map[string]string{"web": "127.0.0.1:7501"}})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	return h
}

func (h *fanoutHarness) switchTo(color controller.Color, addrs ...string) {
	h.t.Helper()
	if err := h.r.Switch(context.Background(), "web", color, addrs); err != nil {
		h.t.Fatalf("Switch(%s, %v): %v", color, addrs, err)
	}
}

func (h *fanoutHarness) inSync(color controller.Color, addrs ...string) bool {
	h.t.Helper()
	ok, err := h.r.InSync(context.Background(), "web", color, addrs)
	if err != nil {
		h.t.Fatalf("InSync: %v", err)
	}
	return ok
}

// wantEdges checks that each of edges confirms color and addrs.
func (h *fanoutHarness) wantEdges(edges []*edgeSwitch, color string, addrs ...string) {
	h.t.Helper()
	for _, e := range edges {
		gotColor, gotAddrs := e.active(h.t)
		if gotColor != color || !sameSet(gotAddrs, addrs) {
			h.t.Errorf("%s routes %s %v, want %s %v", e.name, gotColor, gotAddrs, color, addrs)
		}
	}
}

func TestFanout_SwitchMovesEveryEdgeAndEachConfirms(t *testing.T) {
	h := newFanoutHarness(t, 3)
	if h.inSync("blue", "10.0.0.1:80") {
		t.Fatal("InSync before any switch, want false")
	}
	h.switchTo("blue", "10.0.0.1:80", "10.0.0.2:80")
	h.wantEdges(h.edges, "blue", "10.0.0.1:80", "10.0.0.2:80")
	if !h.inSync("blue", "10.0.0.2:80", "10.0.0.1:80") {
		t.Error("InSync after the switch = false, want true")
	}
	last := h.logs.LastEntry()
	if last == nil || last.Data["color"] != "blue" || !slices.Equal(last.Data["edges"].([]string), []string{"edge-a", "edge-b", "edge-c"}) {
		t.Errorf("last log entry = %+v, want the switch to blue confirmed on edge-a, edge-b and edge-c", last)
	}

	h.switchTo("green", "10.0.0.3:80")
	h.wantEdges(h.edges, "green", "10.0.0.3:80")
	if !h.inSync("green", "10.0.0.3:80") || h.inSync("blue", "10.0.0.1:80", "10.0.0.2:80") {
		t.Error("after the switch to green, want green in sync and blue not")
	}

	h.switchTo(controller.NoColor)
	h.wantEdges(h.edges, "green")
	if !h.inSync(controller.NoColor) {
		t.Error("InSync(no color) after clearing = false, want true")
	}
}

func TestFanout_FailedEdgeFailsTheSwitchAndTheOthersGoBack(t *testing.T) {
	tests := []struct {
		name      string
		breakEdge func(e *edgeSwitch)
		want      error // what the error wraps, besides naming the edge
	}{
		{"edge down", func(e *edgeSwitch) { e.srv.Close() }, ErrUnreachable},
		{"edge answers 500", func(e *edgeSwitch) {
			e.fail.Store(&edgeFailure{method: http.MethodPut, suffix: "/targets"})
		}, nil},
		{"edge drops the connection", func(e *edgeSwitch) {
			e.fail.Store(&edgeFailure{method: http.MethodPut, suffix: "/targets", drop: true})
		}, ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFanoutHarness(t, 3)
			h.switchTo("blue", "10.0.0.1:80")
			tt.breakEdge(h.edges[2])

			err := h.r.Switch(context.Background(), "web", "green", []string{"10.0.0.2:80"})
			if err == nil {
				t.Fatal("Switch succeeded with edge-c broken, want an error")
			}
			if !strings.Contains(err.Error(), "edge edge-c: ") || strings.Contains(err.Error(), "edge edge-a: ") || strings.Contains(err.Error(), "edge edge-b: ") {
				t.Errorf("error = %q, want it to name edge-c only", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want it to wrap %v", err, tt.want)
			}
			h.wantEdges(h.edges[:2], "blue", "10.0.0.1:80")
			if h.edges[2].fail.Load() != nil {
				h.edges[2].fail.Store(nil)
				h.wantEdges(h.edges[2:], "blue", "10.0.0.1:80")
			}
		})
	}
}

// An edge that joins the cluster starts with no targets: the edges
// disagree, so nothing is in sync, and the reconciler's Switch brings the
// new edge in line.
func TestFanout_NewEmptyEdgeIsOutOfSyncUntilASwitch(t *testing.T) {
	h := newFanoutHarness(t, 2)
	h.switchTo("blue", "10.0.0.1:80", "10.0.0.2:80")
	if !h.inSync("blue", "10.0.0.1:80", "10.0.0.2:80") {
		t.Fatal("InSync with two edges alike = false, want true")
	}
	joined := newEdgeSwitch(t, "edge-c", h.token)
	h.set.add(joined)

	if h.inSync("blue", "10.0.0.1:80", "10.0.0.2:80") {
		t.Error("InSync(blue) with an empty edge = true, want false")
	}
	if h.inSync(controller.NoColor) {
		t.Error("InSync(no color) with two edges routing = true, want false")
	}
	h.switchTo("blue", "10.0.0.2:80", "10.0.0.1:80")
	h.wantEdges([]*edgeSwitch{joined}, "blue", "10.0.0.1:80", "10.0.0.2:80")
	if !h.inSync("blue", "10.0.0.1:80", "10.0.0.2:80") {
		t.Error("InSync after the repair = false, want true")
	}

	// An edge that missed a switch (set behind the daemon's back) too.
	if err := h.edges[0].sw.SetTargets("web", "green", []string{"10.0.0.9:80"}); err != nil {
		t.Fatal(err)
	}
	if h.inSync("blue", "10.0.0.1:80", "10.0.0.2:80") {
		t.Error("InSync with an edge on green = true, want false")
	}
}

func TestFanout_NoEdgeIsAnError(t *testing.T) {
	f, err := NewFanout(FanoutOptions{Discover: func(context.Context) ([]Edge, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	err = f.SetTargets(context.Background(), "web", "blue", []string{"10.0.0.1:80"})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no edge switch discovered") {
		t.Fatalf("SetTargets with no edge = %v, want ErrUnreachable saying no edge was discovered", err)
	}
	if _, err := f.Status(context.Background(), "web"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Status with no edge = %v, want ErrUnreachable", err)
	}
}

func TestControlAPI_WrongOrMissingTokenIs401AndTouchesNothing(t *testing.T) {
	token := newToken(t)
	e := newEdgeSwitch(t, "edge-a", token)
	ctx := context.Background()
	if err := e.client.SetTargets(ctx, "web", "blue", []string{"10.0.0.1:80"}); err != nil {
		t.Fatalf("SetTargets with the token: %v", err)
	}
	before, err := e.client.Status(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, header string }{
		{"no header", ""},
		{"wrong token", "Bearer " + newToken(t)},
		{"token cut short", "Bearer " + token[:len(token)-1]},
		{"not bearer", "Basic " + token},
		{"bare token", token},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, e.srv.URL+"/v1/services/web/targets", strings.NewReader(`{"color":"green","addrs":["10.0.0.2:80"]}`))
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d, want %d", res.StatusCode, http.StatusUnauthorized)
			}
		})
	}
	wrong := NewTCPClient(strings.TrimPrefix(e.srv.URL, "http://"), newToken(t))
	if err := wrong.SetTargets(ctx, "web", "green", []string{"10.0.0.2:80"}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("SetTargets with a wrong token = %v, want ErrUnauthorized", err)
	}
	if _, err := wrong.Status(ctx, "web"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Status with a wrong token = %v, want ErrUnauthorized", err)
	}
	if strings.Contains(wrong.SetTargets(ctx, "web", "green", nil).Error(), token) {
		t.Fatal("the error shows the token")
	}
	after, err := e.client.Status(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if after.Active != "blue" || after.Generation != before.Generation {
		t.Fatalf("after refused calls: active %s generation %d, want blue generation %d", after.Active, after.Generation, before.Generation)
	}
}

// drainPlane is an edge whose Drain returns result once release is
// closed.
type drainPlane struct {
	Plane
	release chan struct{}
	result  DrainResult
}

func (p *drainPlane) Drain(ctx context.Context, _, _ string, _ time.Duration) (DrainResult, error) {
	select {
	case <-p.release:
		return p.result, nil
	case <-ctx.Done():
		return DrainResult{}, ctx.Err()
	}
}

func TestFanout_DrainWaitsForEveryEdge(t *testing.T) {
	planes := []*drainPlane{
		{release: make(chan struct{}), result: DrainResult{Waited: 1, Took: time.Second}},
		{release: make(chan struct{}), result: DrainResult{Waited: 2, Upgraded: 1, Took: 3 * time.Second}},
		{release: make(chan struct{}), result: DrainResult{Waited: 4, Took: 2 * time.Second, TimedOut: true, Remaining: 1}},
	}
	f, err := NewFanout(FanoutOptions{Discover: func(context.Context) ([]Edge, error) {
		edges := make([]Edge, len(planes))
		for i, p := range planes {
			edges[i] = Edge{Name: string(rune('a' + i)), Plane: p}
		}
		return edges, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	type drained struct {
		res DrainResult
		err error
	}
	done := make(chan drained, 1)
	go func() {
		res, err := f.Drain(context.Background(), "web", "blue", time.Minute)
		done <- drained{res, err}
	}()
	for _, p := range planes[:2] {
		close(p.release)
		select {
		case d := <-done:
			t.Fatalf("Drain returned %+v (%v) with an edge still draining", d.res, d.err)
		default:
		}
	}
	close(planes[2].release)
	var d drained
	select {
	case d = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return once every edge was done")
	}
	want := DrainResult{Waited: 7, Upgraded: 1, Took: 3 * time.Second, TimedOut: true, Remaining: 1}
	if d.err != nil || d.res != want {
		t.Fatalf("Drain = %+v (%v), want %+v", d.res, d.err, want)
	}
}

func TestFanout_FailedPauseResumesTheEdgesItPaused(t *testing.T) {
	h := newFanoutHarness(t, 3)
	f, err := NewFanout(FanoutOptions{Discover: h.set.discover})
	if err != nil {
		t.Fatal(err)
	}
	h.edges[1].fail.Store(&edgeFailure{method: http.MethodPost, suffix: "/pause"})
	err = f.Pause(context.Background(), "web", time.Second, 10)
	if err == nil || !strings.Contains(err.Error(), "edge edge-b: ") {
		t.Fatalf("Pause = %v, want an error naming edge-b", err)
	}
	for _, e := range h.edges {
		st, err := e.client.Status(context.Background(), "web")
		if err != nil || st.Paused {
			t.Errorf("%s after the failed pause: paused %v (%v), want not paused", e.name, st.Paused, err)
		}
	}
}

func TestFanout_StatusSumsAndWindowAddsUp(t *testing.T) {
	h := newFanoutHarness(t, 3)
	h.switchTo("blue", "10.0.0.1:80")
	f, err := NewFanout(FanoutOptions{Discover: h.set.discover})
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Status(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if st.Active != "blue" || st.Addr == "" || !slices.Equal(st.Colors[0].Addrs, []string{"10.0.0.1:80"}) {
		t.Fatalf("Status = %+v, want blue on 10.0.0.1:80, listening", st)
	}
	requests, errors5xx, err := f.Window(context.Background(), "web", "blue")
	if err != nil || requests != 0 || errors5xx != 0 {
		t.Fatalf("Window = %d, %d (%v), want 0, 0", requests, errors5xx, err)
	}
}

// hungPlane is an edge that takes every SetTargets and never answers.
type hungPlane struct{ Plane }

func (hungPlane) SetTargets(ctx context.Context, _, _ string, _ []string) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestFanout_HungEdgeFailsWithinItsTimeoutAndTheOthersGoBack(t *testing.T) {
	token := newToken(t)
	var edges []Edge
	var switches []*edgeSwitch
	for _, name := range []string{"edge-a", "edge-b", "edge-c"} {
		e := newEdgeSwitch(t, name, token)
		switches = append(switches, e)
		var p Plane = e.client
		if name == "edge-c" {
			p = hungPlane{Local(e.sw)}
		}
		edges = append(edges, Edge{Name: name, Plane: p})
	}
	f, err := NewFanout(FanoutOptions{
		Discover:    func(context.Context) ([]Edge, error) { return edges, nil },
		EdgeTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range switches {
		if err := e.sw.SetTargets("web", "blue", []string{"10.0.0.1:80"}); err != nil {
			t.Fatal(err)
		}
	}
	err = f.SetTargets(context.Background(), "web", "green", []string{"10.0.0.2:80"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "edge edge-c: ") {
		t.Fatalf("SetTargets = %v, want edge-c's deadline", err)
	}
	h := &fanoutHarness{t: t}
	h.wantEdges(switches[:2], "blue", "10.0.0.1:80")
}

func TestFanout_GatherLabelsEachEdgesSeriesAndSaysWhichAnswered(t *testing.T) {
	h := newFanoutHarness(t, 2)
	h.switchTo("blue", "10.0.0.1:80")
	f, err := NewFanout(FanoutOptions{Discover: h.set.discover})
	if err != nil {
		t.Fatal(err)
	}
	// As the daemon serves them: beside its own registry, whose series
	// must not collide with the edges'.
	daemon := prometheus.NewRegistry()
	daemon.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "deployd_switchd_up", Help: "up"}))
	scrape := func() string {
		t.Helper()
		rec := httptest.NewRecorder()
		promhttp.HandlerFor(prometheus.Gatherers{daemon, f}, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}).
			ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("/metrics answered %d: %s", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}

	body := scrape()
	for _, want := range []string{
		`deployd_switch_paused{edge="edge-a",service="web"} 0`,
		`deployd_switch_paused{edge="edge-b",service="web"} 0`,
		`deployd_switchd_edge_up{edge="edge-a"} 1`,
		`deployd_switchd_edge_up{edge="edge-b"} 1`,
		"deployd_switchd_up 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}

	h.edges[1].srv.Close()
	fams, err := f.Gather()
	if err == nil || !strings.Contains(err.Error(), "edge-b") {
		t.Errorf("Gather with edge-b down: error %v, want one naming edge-b", err)
	}
	body = scrape()
	for _, want := range []string{
		`deployd_switch_paused{edge="edge-a",service="web"} 0`,
		`deployd_switchd_edge_up{edge="edge-a"} 1`,
		`deployd_switchd_edge_up{edge="edge-b"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics with edge-b down lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, `deployd_switch_paused{edge="edge-b"`) {
		t.Errorf("/metrics shows series of edge-b, which did not answer:\n%s", body)
	}
	if len(fams) < 2 {
		t.Errorf("Gather with edge-b down returned %d families, want edge-a's and edge_up", len(fams))
	}
}
