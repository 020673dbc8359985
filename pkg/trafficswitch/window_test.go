package trafficswitch

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWindow_CountsOnlyTheLastSpan(t *testing.T) {
	var w window
	const width = int64(time.Second)
	sec := func(s float64) int64 { return int64(s * float64(time.Second)) }
	w.record(sec(0.5), width, false)
	w.record(sec(10), width, true)
	w.record(sec(59.9), width, false)
	if req, errs := w.read(sec(59.9), width); req != 3 || errs != 1 {
		t.Fatalf("at 59.9s: %d requests %d errors, want 3 and 1", req, errs)
	}
	// At 60s the first bucket (0s..1s) has left the 60-bucket window.
	if req, errs := w.read(sec(60), width); req != 2 || errs != 1 {
		t.Fatalf("at 60s: %d requests %d errors, want 2 and 1", req, errs)
	}
	// A request in the bucket that once held second 0 resets it.
	w.record(sec(60.2), width, false)
	if req, _ := w.read(sec(60.2), width); req != 3 {
		t.Fatalf("at 60.2s: %d requests, want 3", req)
	}
	if req, errs := w.read(sec(200), width); req != 0 || errs != 0 {
		t.Fatalf("long after: %d requests %d errors, want none", req, errs)
	}
}

func TestWindow_ConcurrentRecordsAreAllCounted(t *testing.T) {
	var w window
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 1000 {
				w.record(5, 10, i%10 == 0)
			}
		})
	}
	wg.Wait()
	if req, errs := w.read(5, 10); req != 8000 || errs != 800 {
		t.Fatalf("%d requests %d errors, want 8000 and 800", req, errs)
	}
}

func TestWindow_CountsTheColorsAnswersAndRestartsWithNewAddresses(t *testing.T) {
	h := newHarness(t, Options{})
	app := func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fail") {
			http.Error(w, "boom", http.StatusInternalServerError)
		}
	}
	h.setTargets("green", newBackend(t, "g1", app).addr())
	for _, path := range []string{"/", "/", "/", "/fail", "/fail"} {
		do(t, http.MethodGet, h.url+path, "", nil)
	}
	if req, errs := h.sw.Window(h.service, "green"); req != 5 || errs != 2 {
		t.Fatalf("Window(green) = %d, %d, want 5, 2", req, errs)
	}
	if req, errs := h.sw.Window(h.service, "blue"); req != 0 || errs != 0 {
		t.Fatalf("Window(blue) = %d, %d, want 0, 0", req, errs)
	}
	if got := counterValue(t, h.reg, "deployd_switch_responses_5xx_total", map[string]string{"color": "green"}); got != 2 {
		t.Errorf("5xx counter = %v, want 2", got)
	}
	if got := counterValue(t, h.reg, "deployd_switch_request_duration_seconds", map[string]string{"color": "green"}); got != 5 {
		t.Errorf("latency observations = %v, want 5", got)
	}
	// A new deployment of green is judged on its own traffic.
	h.setTargets("green", newBackend(t, "g2", app).addr())
	if req, errs := h.sw.Window(h.service, "green"); req != 0 || errs != 0 {
		t.Fatalf("Window(green) after new addresses = %d, %d, want 0, 0", req, errs)
	}
}
