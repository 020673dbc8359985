package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
