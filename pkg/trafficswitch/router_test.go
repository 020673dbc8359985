package trafficswitch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// fakeEdge is nginx's router in memory: one "file" per service, and a
// count of the switches that rewrote one (each would be a reload).
type fakeEdge struct {
	mu       sync.Mutex
	files    map[string][]string
	reloads  int
	switches int
	// failWith, when set, fails Switch (the file is untouched).
	failWith error
	checkErr error
}

func newFakeEdge() *fakeEdge { return &fakeEdge{files: map[string][]string{}} }

func (f *fakeEdge) EnsurePlaceholder(_ context.Context, service string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.files[service]; !ok {
		f.files[service] = []string{}
	}
	return nil
}

func (f *fakeEdge) Switch(_ context.Context, service string, color controller.Color, addrs []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.switches++
	if color != controller.NoColor {
		return fmt.Errorf("edge told color %q, want none", color)
	}
	if f.failWith != nil {
		return f.failWith
	}
	if cur, ok := f.files[service]; ok && slices.Equal(cur, addrs) {
		return nil
	}
	f.files[service] = slices.Clone(addrs)
	f.reloads++
	return nil
}

func (f *fakeEdge) InSync(_ context.Context, service string, _ controller.Color, addrs []string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.files[service]
	return ok && slices.Equal(cur, addrs), nil
}

func (f *fakeEdge) Drain(context.Context, string, controller.Color, time.Duration) (string, error) {
	return "", errors.New("the edge must not drain in switch mode")
}

func (f *fakeEdge) Check(context.Context) error { return f.checkErr }

func (f *fakeEdge) edit(service string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[service] = addrs
}

func (f *fakeEdge) reloadCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloads
}

// routerHarness is a Router over a listening Switch and a fake edge; the
// switch's address is the service's upstream.
type routerHarness struct {
	*harness
	edge *fakeEdge
	r    *Router
	up   string
}

func newRouterHarness(t *testing.T) *routerHarness {
	t.Helper()
	h := newHarness(t, Options{})
	edge := newFakeEdge()
	up := h.sw.Addr(h.service).String()
	r, err := NewRouter(RouterOptions{Plane: Local(h.sw), Edge: edge, Upstreams: map[string]string{h.service: up}})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	return &routerHarness{harness: h, edge: edge, r: r, up: up}
}

func (h *routerHarness) inSync(color controller.Color, addrs ...string) bool {
	h.t.Helper()
	ok, err := h.r.InSync(context.Background(), h.service, color, addrs)
	if err != nil {
		h.t.Fatalf("InSync: %v", err)
	}
	return ok
}

func (h *routerHarness) switchTo(color controller.Color, addrs ...string) {
	h.t.Helper()
	if err := h.r.Switch(context.Background(), h.service, color, addrs); err != nil {
		h.t.Fatalf("Switch(%s, %v): %v", color, addrs, err)
	}
}

func TestRouter_PlaceholderPointsNginxAtSwitchOnceAndAnswers503(t *testing.T) {
	h := newRouterHarness(t)
	ctx := context.Background()
	for range 2 {
		if err := h.r.EnsurePlaceholder(ctx, h.service); err != nil {
			t.Fatalf("EnsurePlaceholder: %v", err)
		}
	}
	if got := h.edge.files[h.service]; !slices.Equal(got, []string{h.up}) {
		t.Fatalf("edge upstream = %v, want [%s]", got, h.up)
	}
	if got := h.edge.reloadCount(); got != 1 {
		t.Fatalf("edge reloads = %d, want 1", got)
	}
	if status, _ := do(t, http.MethodGet, h.url+"/", "", nil); status != http.StatusServiceUnavailable {
		t.Fatalf("status before the first deploy = %d, want %d", status, http.StatusServiceUnavailable)
	}
	if !h.inSync(controller.NoColor) {
		t.Fatal("InSync(no color) = false before the first deploy, want true")
	}
}

func TestRouter_DeployAndRollbackNeverReloadNginx(t *testing.T) {
	h := newRouterHarness(t)
	blue, green := newBackend(t, "blue", nil), newBackend(t, "green", nil)
	if err := h.r.EnsurePlaceholder(context.Background(), h.service); err != nil {
		t.Fatalf("EnsurePlaceholder: %v", err)
	}
	for i, step := range []struct {
		color controller.Color
		b     *backend
	}{{controller.Blue, blue}, {controller.Green, green}, {controller.Blue, blue}, {controller.Green, green}} {
		h.switchTo(step.color, step.b.addr())
		if status, body := do(t, http.MethodPost, h.url+"/", "x", nil); status != http.StatusOK || !strings.HasPrefix(body, step.b.name) {
			t.Fatalf("switch %d: got %d %q, want 200 from %s", i, status, body, step.b.name)
		}
		if !h.inSync(step.color, step.b.addr()) {
			t.Fatalf("switch %d: InSync(%s) = false, want true", i, step.color)
		}
		if h.inSync(step.color.Other(), step.b.addr()) {
			t.Fatalf("switch %d: InSync(%s) = true for the other color, want false", i, step.color.Other())
		}
	}
	if got := h.edge.reloadCount(); got != 1 {
		t.Fatalf("edge reloads = %d, want 1 (the placeholder's only)", got)
	}
}

func TestRouter_HandEditedUpstreamIsOutOfSyncAndSwitchRepairsIt(t *testing.T) {
	h := newRouterHarness(t)
	blue := newBackend(t, "blue", nil)
	h.switchTo(controller.Blue, blue.addr())
	h.edge.edit(h.service, "127.0.0.1:1")
	if h.inSync(controller.Blue, blue.addr()) {
		t.Fatal("InSync = true with a hand-edited upstream, want false")
	}
	h.switchTo(controller.Blue, blue.addr())
	if got := h.edge.files[h.service]; !slices.Equal(got, []string{h.up}) {
		t.Fatalf("edge upstream after the repair = %v, want [%s]", got, h.up)
	}
	if !h.inSync(controller.Blue, blue.addr()) {
		t.Fatal("InSync = false after the repair, want true")
	}
}

func TestRouter_FreshSwitchIsOutOfSyncUntilTargetsAreSet(t *testing.T) {
	h := newRouterHarness(t)
	blue := newBackend(t, "blue", nil)
	if err := h.r.EnsurePlaceholder(context.Background(), h.service); err != nil {
		t.Fatalf("EnsurePlaceholder: %v", err)
	}
	// After a restart nginx still points at the switch, which has no
	// targets yet: recovery's Switch must run.
	if h.inSync(controller.Blue, blue.addr()) {
		t.Fatal("InSync = true on a switch without targets, want false")
	}
	h.switchTo(controller.Blue, blue.addr())
	if !h.inSync(controller.Blue, blue.addr()) {
		t.Fatal("InSync = false after Switch, want true")
	}
}

func TestRouter_SameAddressesInAnotherOrderAreInSync(t *testing.T) {
	h := newRouterHarness(t)
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	h.switchTo(controller.Blue, a.addr(), b.addr())
	gen := func() uint64 {
		st, err := h.sw.Status(h.service)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		return st.Generation
	}
	before := gen()
	if !h.inSync(controller.Blue, b.addr(), a.addr()) {
		t.Fatal("InSync = false for the same addresses reordered, want true")
	}
	h.switchTo(controller.Blue, b.addr(), a.addr())
	if got := gen(); got != before {
		t.Fatalf("generation = %d after a reordered Switch, want %d (no new target set)", got, before)
	}
}

func TestRouter_NoColorEmptiesTheTargets(t *testing.T) {
	h := newRouterHarness(t)
	blue := newBackend(t, "blue", nil)
	h.switchTo(controller.Blue, blue.addr())
	if h.inSync(controller.NoColor) {
		t.Fatal("InSync(no color) = true while blue serves, want false")
	}
	h.switchTo(controller.NoColor)
	if status, _ := do(t, http.MethodGet, h.url+"/", "", nil); status != http.StatusServiceUnavailable {
		t.Fatalf("status after the reset = %d, want %d", status, http.StatusServiceUnavailable)
	}
	if !h.inSync(controller.NoColor) {
		t.Fatal("InSync(no color) = false after the reset, want true")
	}
}

func TestRouter_FailedEdgeLeavesTargetsUntouched(t *testing.T) {
	h := newRouterHarness(t)
	blue, green := newBackend(t, "blue", nil), newBackend(t, "green", nil)
	h.switchTo(controller.Blue, blue.addr())
	h.edge.edit(h.service, "127.0.0.1:1")
	h.edge.failWith = errors.New("nginx: [emerg] bad config")
	err := h.r.Switch(context.Background(), h.service, controller.Green, []string{green.addr()})
	if err == nil || !strings.Contains(err.Error(), "bad config") {
		t.Fatalf("Switch error = %v, want the edge's", err)
	}
	if _, body := do(t, http.MethodGet, h.url+"/", "", nil); !strings.HasPrefix(body, "blue") {
		t.Fatalf("answer after a failed switch = %q, want blue's", body)
	}
}

func TestRouter_UnavailableNginxStillMovesTargets(t *testing.T) {
	h := newRouterHarness(t)
	blue := newBackend(t, "blue", nil)
	h.edge.failWith = fmt.Errorf("pid file missing: %w", controller.ErrUnavailable)
	if err := h.r.EnsurePlaceholder(context.Background(), h.service); err != nil {
		t.Fatalf("EnsurePlaceholder with nginx down: %v, want nil (placeholder written)", err)
	}
	if got, ok := h.edge.files[h.service]; !ok || len(got) != 0 {
		t.Fatalf("edge file = %v (exists %v), want the edge's placeholder", got, ok)
	}
	h.switchTo(controller.Blue, blue.addr())
	if _, body := do(t, http.MethodGet, h.url+"/", "", nil); !strings.HasPrefix(body, "blue") {
		t.Fatalf("answer = %q, want blue's", body)
	}
	if h.inSync(controller.Blue, blue.addr()) {
		t.Fatal("InSync = true while nginx does not point at the switch, want false (the reconciler retries)")
	}
}

func TestRouter_DrainSaysWhatItWaitedFor(t *testing.T) {
	h := newRouterHarness(t)
	started, release := make(chan struct{}), make(chan struct{})
	blue := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	})
	green := newBackend(t, "green", nil)
	h.switchTo(controller.Blue, blue.addr())
	done := make(chan error, 1)
	go func() {
		_, _, err := tryDo(http.DefaultClient, http.MethodGet, h.url+"/long", "", nil)
		done <- err
	}()
	<-started
	h.switchTo(controller.Green, green.addr())
	time.AfterFunc(50*time.Millisecond, func() { close(release) })
	msg, err := h.r.Drain(context.Background(), h.service, controller.Blue, 10*time.Second)
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("long request: %v", err)
	}
	if !strings.HasPrefix(msg, "waited for 1 request(s) and 0 WebSocket(s) on blue for ") {
		t.Fatalf("message = %q, want it to count the long request", msg)
	}
}

func TestRouter_DrainTimeoutMessage(t *testing.T) {
	got := drainMessage(controller.Blue, 5*time.Second, DrainResult{Waited: 3, Upgraded: 1, TimedOut: true, Remaining: 2, ForcedClosed: 1, Took: 5 * time.Second})
	want := "waited for 3 request(s) and 1 WebSocket(s) on blue; timed out after 5s with 2 still running, closed 1 WebSocket(s)"
	if got != want {
		t.Fatalf("message = %q, want %q", got, want)
	}
}

func TestRouter_DrainTimeoutMessageNamesClosedEventStreams(t *testing.T) {
	got := drainMessage(controller.Blue, 2*time.Second, DrainResult{Waited: 1, TimedOut: true, ClosedStreams: 1, Took: 2 * time.Second})
	want := "waited for 1 request(s) and 0 WebSocket(s) on blue; timed out after 2s with 0 still running, closed 1 event stream(s)"
	if got != want {
		t.Fatalf("message = %q, want %q", got, want)
	}
}

func TestRouter_CheckNeedsEdgeAndListener(t *testing.T) {
	h := newRouterHarness(t)
	ctx := context.Background()
	if err := h.r.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	h.edge.checkErr = errors.New("nginx: config test failed")
	if err := h.r.Check(ctx); err == nil || !strings.Contains(err.Error(), "config test") {
		t.Fatalf("Check with a failing edge = %v, want its error", err)
	}
	h.edge.checkErr = nil
	r, err := NewRouter(RouterOptions{Plane: Local(h.sw), Edge: h.edge, Upstreams: map[string]string{"api": "127.0.0.1:9"}})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	if err := r.Check(ctx); !errors.Is(err, controller.ErrUnavailable) {
		t.Fatalf("Check for a service that does not listen = %v, want ErrUnavailable", err)
	}
}

func TestRouter_UnknownServiceIsAnError(t *testing.T) {
	h := newRouterHarness(t)
	if err := h.r.Switch(context.Background(), "other", controller.Blue, []string{"127.0.0.1:9"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Switch of a service without an upstream = %v, want ErrNotFound", err)
	}
}

// batchFakeEdge is fakeEdge that also points several upstreams in one
// reload, as nginxconf.Router does.
type batchFakeEdge struct{ *fakeEdge }

func (f batchFakeEdge) SwitchEach(_ context.Context, want map[string][]string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.switches++
	var changed []string
	for _, service := range slices.Sorted(maps.Keys(want)) {
		if cur, ok := f.files[service]; ok && slices.Equal(cur, want[service]) {
			continue
		}
		f.files[service] = slices.Clone(want[service])
		changed = append(changed, service)
	}
	if len(changed) > 0 {
		f.reloads++
	}
	return changed, nil
}

// nginx answering only after deployd started: every service's upstream is
// still the edge's placeholder, and every service's reconciler pass finds
// it so at once. One reload points them all at the switch, instead of one
// reload per service, one after the other.
func TestRouter_OutOfStepUpstreamsArePointedAtTheSwitchInOneReload(t *testing.T) {
	h := newHarness(t, Options{})
	edge := batchFakeEdge{newFakeEdge()}
	services := []string{"api", "web", "worker", "admin", "jobs"}
	ups := map[string]string{}
	for i, s := range services {
		ups[s] = fmt.Sprintf("127.0.0.1:%d", 7501+i)
		edge.files[s] = []string{} // the edge's placeholder
	}
	r, err := NewRouter(RouterOptions{Plane: Local(h.sw), Edge: edge, Upstreams: ups})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(services))
	for i, s := range services {
		wg.Go(func() { errs[i] = r.Switch(context.Background(), s, controller.NoColor, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Switch %s: %v", services[i], err)
		}
	}
	for _, s := range services {
		if got := edge.files[s]; !slices.Equal(got, []string{ups[s]}) {
			t.Errorf("edge upstream of %s = %v, want [%s]", s, got, ups[s])
		}
	}
	if got := edge.reloadCount(); got != 1 {
		t.Fatalf("edge reloads = %d, want 1 for all %d services", got, len(services))
	}
}
