package trafficswitch

import (
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

	r := NewTrafficReader(h.sw)
	if req, errs := r.Window(h.service, controller.Green); req != 4 || errs != 3 {
		t.Fatalf("Window(green) = %d, %d, want 4, 3", req, errs)
	}
	if req, errs := r.Window(h.service, controller.Blue); req != 0 || errs != 0 {
		t.Errorf("Window(blue) = %d, %d, want 0, 0", req, errs)
	}
	if req, errs := r.Window("nosuch", controller.Green); req != 0 || errs != 0 {
		t.Errorf("Window of an unknown service = %d, %d, want 0, 0", req, errs)
	}
	if got, want := r.Span(), 2*time.Minute; got != want {
		t.Errorf("Span() = %s, want %s", got, want)
	}
}
