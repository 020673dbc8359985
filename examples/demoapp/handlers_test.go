package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestApp(mutate func(*config)) http.Handler {
	cfg := defaultConfig()
	cfg.Version = "v7"
	cfg.Color = "blue"
	if mutate != nil {
		mutate(&cfg)
	}
	return (&app{cfg: cfg, hostname: "host-1"}).routes()
}

func TestRoot_ReportsVersionColorHostAndMethod(t *testing.T) {
	h := newTestApp(nil)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			req := httptest.NewRequest(method, "/", strings.NewReader(`{"hello":"world"}`))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d, want %d", rec.Code, http.StatusOK)
			}
			if got := rec.Header().Get("X-App-Version"); got != "v7" {
				t.Errorf("X-App-Version = %q, want %q", got, "v7")
			}
			if got := rec.Header().Get("X-App-Color"); got != "blue" {
				t.Errorf("X-App-Color = %q, want %q", got, "blue")
			}
			var got rootResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			want := rootResponse{Version: "v7", Color: "blue", Hostname: "host-1", Method: method}
			if got != want {
				t.Fatalf("body = %+v, want %+v", got, want)
			}
		})
	}
}

func TestRoot_FailRequestsAnswers500WhileHealthSaysOK(t *testing.T) {
	h := newTestApp(func(c *config) { c.FailRequests = true })
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "/", strings.NewReader(`{"hello":"world"}`)))
		if rec.Code != http.StatusInternalServerError {
			t.Errorf("%s / status = %d, want %d", method, rec.Code, http.StatusInternalServerError)
		}
		if got := rec.Header().Get("X-App-Color"); got != "blue" {
			t.Errorf("%s / X-App-Color = %q, want blue: a test must see which color failed", method, got)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"healthy"`) {
		t.Fatalf("GET /health = %d %q, want 200 healthy", rec.Code, rec.Body)
	}
}

func TestRoot_UnknownPathIs404(t *testing.T) {
	rec := httptest.NewRecorder()
	newTestApp(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nope", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status = %d, want %d", rec.Code, http.StatusNotFound)
	}
}

func TestHealth_Modes(t *testing.T) {
	tests := []struct {
		mode       string
		wantStatus int
		wantBody   map[string]string
	}{
		{healthOK, 200, map[string]string{"status": "healthy", "database": "connected"}},
		{healthFailing, 503, map[string]string{"status": "unhealthy"}},
		{healthUnhealthyBody, 200, map[string]string{"status": "degraded"}},
		{healthSlow, 200, map[string]string{"status": "healthy", "database": "connected"}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			h := newTestApp(func(c *config) {
				c.HealthMode = tt.mode
				c.SlowHealthDelay = 10 * time.Millisecond
			})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))

			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var got map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if len(got) != len(tt.wantBody) {
				t.Fatalf("body = %v, want %v", got, tt.wantBody)
			}
			for k, v := range tt.wantBody {
				if got[k] != v {
					t.Fatalf("body = %v, want %v", got, tt.wantBody)
				}
			}
		})
	}
}

func TestHealth_SlowWaitsTheConfiguredDelay(t *testing.T) {
	const delay = 150 * time.Millisecond
	h := newTestApp(func(c *config) {
		c.HealthMode = healthSlow
		c.SlowHealthDelay = delay
	})
	start := time.Now()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	if took := time.Since(start); took < delay {
		t.Fatalf("answered after %v, want at least %v", took, delay)
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want %d", rec.Code, http.StatusOK)
	}
}

func TestHealth_SlowGivesUpWhenTheClientDoes(t *testing.T) {
	h := newTestApp(func(c *config) {
		c.HealthMode = healthSlow
		c.SlowHealthDelay = time.Hour
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/health", nil).WithContext(ctx))
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("slow health handler still running 5s after its client left")
	}
}

func TestSleep_AnswersAfterTheDelay(t *testing.T) {
	h := newTestApp(nil)
	start := time.Now()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/sleep?ms=50", nil))
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Fatalf("answered after %s, want at least 50ms", took)
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want %d", rec.Code, http.StatusOK)
	}
	var got rootResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if got.Version != "v7" || got.Color != "blue" {
		t.Fatalf("body = %+v, want version v7 color blue", got)
	}
}

func TestSleep_BadDurationIs400(t *testing.T) {
	for _, q := range []string{"", "?ms=x", "?ms=-1", "?ms=60001"} {
		rec := httptest.NewRecorder()
		newTestApp(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/sleep"+q, nil))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("GET /sleep%s: status = %d, want %d", q, rec.Code, http.StatusBadRequest)
		}
	}
}

// TestEvents_StreamsEachEventAsItIsSent proves the stream is flushed event
// by event: the client reads the first event long before the last is
// due, and every header nginx and a browser need is there.
func TestEvents_StreamsEachEventAsItIsSent(t *testing.T) {
	srv := httptest.NewServer(newTestApp(nil))
	defer srv.Close()
	start := time.Now()
	res, err := http.Get(srv.URL + "/events?n=3&every=300")
	if err != nil {
		t.Fatalf("GET /events: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want %d", res.StatusCode, http.StatusOK)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	sc := bufio.NewScanner(res.Body)
	var got []eventData
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev eventData
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		if len(got) == 0 {
			if took := time.Since(start); took > 250*time.Millisecond {
				t.Errorf("first event after %s, want it at once", took)
			}
		}
		got = append(got, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read stream: %v", err)
	}
	if took := time.Since(start); took < 600*time.Millisecond {
		t.Errorf("3 events every 300ms took %s, want at least 600ms", took)
	}
	want := []eventData{{1, "v7", "blue"}, {2, "v7", "blue"}, {3, "v7", "blue"}}
	if !slices.Equal(got, want) {
		t.Fatalf("events = %+v, want %+v", got, want)
	}
}

func TestEvents_EndsWhenTheClientLeaves(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		newTestApp(nil).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/events?n=1000&every=50", nil).WithContext(ctx))
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("events handler still running 5s after its client left")
	}
}

func TestEvents_BadParametersAre400AndFailRequestsIs500(t *testing.T) {
	for _, q := range []string{"", "?n=0&every=1", "?n=x&every=1", "?n=2&every=-1", "?n=2", "?n=100001&every=0", "?n=602&every=100"} {
		rec := httptest.NewRecorder()
		newTestApp(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/events"+q, nil))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("GET /events%s: status = %d, want %d", q, rec.Code, http.StatusBadRequest)
		}
	}
	rec := httptest.NewRecorder()
	newTestApp(func(c *config) { c.FailRequests = true }).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/events?n=1&every=0", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("GET /events with FAIL_REQUESTS: status = %d, want %d", rec.Code, http.StatusInternalServerError)
	}
}
