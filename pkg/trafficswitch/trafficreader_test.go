package trafficswitch

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func TestTrafficReader_ReportsTheColorsRealAnswersAndTheWindowSpan(t *testing.T) {
	h := newHarness(t, Options{ErrorWindow: 2 * time.Minute})
	// The health endpoint is fine; the real requests are not.
	green := newBackend(t, "g1", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.Error(w, "database gone", http.StatusInternalServerError)
		}
	})
	h.setTargets("green", green.addr())
	for _, path := range []string{"/api", "/api", "/api", "/health"} {
		do(t, http.MethodGet, h.url+path, "", nil)
	}

	r := NewTrafficReader(Local(h.sw), h.sw.ErrorWindow())
	ctx := context.Background()
	if req, errs, err := r.Window(ctx, h.service, controller.Green); req != 4 || errs != 3 || err != nil {
		t.Fatalf("Window(green) = %d, %d, %v, want 4, 3, nil", req, errs, err)
	}
	if req, errs, err := r.Window(ctx, h.service, controller.Blue); req != 0 || errs != 0 || err != nil {
		t.Errorf("Window(blue) = %d, %d, %v, want 0, 0, nil", req, errs, err)
	}
	if req, errs, err := r.Window(ctx, "nosuch", controller.Green); req != 0 || errs != 0 || err != nil {
		t.Errorf("Window of an unknown service = %d, %d, %v, want 0, 0, nil", req, errs, err)
	}
	if got, want := r.Span(), 2*time.Minute; got != want {
		t.Errorf("Span() = %s, want %s", got, want)
	}
}

func TestTrafficReader_ClosedSwitchIsAnErrorNotAQuietColor(t *testing.T) {
	sw, err := New(Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := sw.SetTargets("web", "green", []string{"127.0.0.1:9"}); err != nil {
		t.Fatalf("SetTargets: %v", err)
	}
	if err := sw.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, _, err = NewTrafficReader(Local(sw), sw.ErrorWindow()).Window(context.Background(), "web", controller.Green)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Window of a closed switch = %v, want ErrClosed", err)
	}
}
