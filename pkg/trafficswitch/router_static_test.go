package trafficswitch

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deployd/deployd/pkg/controller"
)

// newStaticRouter is a Router without an edge (nginx.mode static) over
// the harness's listening Switch.
func newStaticRouter(t *testing.T) (*harness, *Router) {
	t.Helper()
	h := newHarness(t, Options{})
	r, err := NewRouter(RouterOptions{Plane: Local(h.sw), Services: []string{h.service}})
	if err != nil {
		t.Fatalf("NewRouter without an edge: %v", err)
	}
	return h, r
}

func TestRouter_WithoutEdgeMovesTrafficInTheSwitchOnly(t *testing.T) {
	h, r := newStaticRouter(t)
	ctx := context.Background()
	blue, green := newBackend(t, "blue", nil), newBackend(t, "green", nil)
	if err := r.EnsurePlaceholder(ctx, h.service); err != nil {
		t.Fatalf("EnsurePlaceholder: %v", err)
	}
	if status, _ := do(t, http.MethodGet, h.url+"/", "", nil); status != http.StatusServiceUnavailable {
		t.Fatalf("status before the first deploy = %d, want %d", status, http.StatusServiceUnavailable)
	}
	if ok, err := r.InSync(ctx, h.service, controller.NoColor, nil); err != nil || !ok {
		t.Fatalf("InSync(no color) before the first deploy = %v, %v; want true", ok, err)
	}
	for i, step := range []struct {
		color controller.Color
		b     *backend
	}{{controller.Blue, blue}, {controller.Green, green}, {controller.Blue, blue}} {
		if ok, err := r.InSync(ctx, h.service, step.color, []string{step.b.addr()}); err != nil || ok {
			t.Fatalf("switch %d: InSync(%s) before the switch = %v, %v; want false", i, step.color, ok, err)
		}
		if err := r.Switch(ctx, h.service, step.color, []string{step.b.addr()}); err != nil {
			t.Fatalf("switch %d: Switch(%s): %v", i, step.color, err)
		}
		if status, body := do(t, http.MethodPost, h.url+"/", "x", nil); status != http.StatusOK || !strings.HasPrefix(body, step.b.name) {
			t.Fatalf("switch %d: got %d %q, want 200 from %s", i, status, body, step.b.name)
		}
		if ok, err := r.InSync(ctx, h.service, step.color, []string{step.b.addr()}); err != nil || !ok {
			t.Fatalf("switch %d: InSync(%s) = %v, %v; want true", i, step.color, ok, err)
		}
	}
	if err := r.Switch(ctx, h.service, controller.NoColor, nil); err != nil {
		t.Fatalf("Switch(no color): %v", err)
	}
	if status, _ := do(t, http.MethodGet, h.url+"/", "", nil); status != http.StatusServiceUnavailable {
		t.Fatalf("status after no color = %d, want %d", status, http.StatusServiceUnavailable)
	}
}

func TestRouter_WithoutEdgeUnknownServiceIsAnError(t *testing.T) {
	h, r := newStaticRouter(t)
	ctx := context.Background()
	if err := r.Switch(ctx, "other", controller.Blue, []string{"127.0.0.1:9"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Switch of a service the Router does not route = %v, want ErrNotFound", err)
	}
	if err := r.EnsurePlaceholder(ctx, "other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("EnsurePlaceholder of a service the Router does not route = %v, want ErrNotFound", err)
	}
	if _, err := r.InSync(ctx, "other", controller.NoColor, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("InSync of a service the Router does not route = %v, want ErrNotFound", err)
	}
	if err := r.Switch(ctx, h.service, controller.Blue, []string{"127.0.0.1:9"}); err != nil {
		t.Fatalf("Switch of the routed service: %v", err)
	}
}

// Without an edge, Check is the switch's: it fails when the switch does
// not listen for a service or does not answer at all.
func TestRouter_WithoutEdgeCheckIsTheSwitchs(t *testing.T) {
	h, r := newStaticRouter(t)
	ctx := context.Background()
	if err := r.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	notListening, err := NewRouter(RouterOptions{Plane: Local(h.sw), Services: []string{h.service, "api"}})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	if err := notListening.Check(ctx); !errors.Is(err, controller.ErrUnavailable) || !strings.Contains(err.Error(), "api") {
		t.Fatalf("Check for a service the switch does not listen for = %v, want ErrUnavailable naming api", err)
	}
	gone, err := NewRouter(RouterOptions{Plane: NewClient(filepath.Join(t.TempDir(), "switchd.sock")), Services: []string{h.service}})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	if err := gone.Check(ctx); !errors.Is(err, controller.ErrUnavailable) {
		t.Fatalf("Check with no switch answering = %v, want ErrUnavailable", err)
	}
	if err := gone.EnsurePlaceholder(ctx, h.service); err == nil {
		t.Fatal("EnsurePlaceholder with no switch answering succeeded, want an error")
	}
}

func TestNewRouter_UpstreamsGoWithAnEdgeAndServicesWithout(t *testing.T) {
	h := newHarness(t, Options{})
	for name, o := range map[string]RouterOptions{
		"upstreams without an edge": {Plane: Local(h.sw), Upstreams: map[string]string{h.service: "127.0.0.1:7501"}},
		"services with an edge":     {Plane: Local(h.sw), Edge: newFakeEdge(), Upstreams: map[string]string{h.service: "127.0.0.1:7501"}, Services: []string{h.service}},
		"no plane":                  {Services: []string{h.service}},
	} {
		if _, err := NewRouter(o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: NewRouter = %v, want ErrInvalid", name, err)
		}
	}
}
