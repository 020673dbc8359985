package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/pkg/controller"
)

func newTestProber(t *testing.T) (*Prober, *test.Hook) {
	t.Helper()
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	return NewProber(log), hook
}

func TestProbe_JudgesStatusAndBody(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("status: healthy\n")) })
	mux.HandleFunc("/created", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("healthy? no"))
	})
	mux.HandleFunc("/teapot", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/health", http.StatusFound) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		// The marker sits past the 64 KiB the prober reads.
		_, _ = w.Write([]byte(strings.Repeat("x", maxBody) + "healthy"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	tests := []struct {
		name    string
		spec    controller.HealthSpec
		wantErr string // "" means healthy
	}{
		{"2xx accepted when no status expected", controller.HealthSpec{Path: "/health"}, ""},
		{"201 accepted as 2xx", controller.HealthSpec{Path: "/created"}, ""},
		{"exact status matches", controller.HealthSpec{Path: "/teapot", ExpectStatus: 418}, ""},
		{"exact status mismatch", controller.HealthSpec{Path: "/created", ExpectStatus: 200}, "GET /created: status 201, want 200"},
		{"5xx rejected", controller.HealthSpec{Path: "/down"}, "GET /down: status 503, want 2xx"},
		{"body contains expected text", controller.HealthSpec{Path: "/health", ExpectBody: "healthy"}, ""},
		{"body lacks expected text", controller.HealthSpec{Path: "/health", ExpectBody: "ready"}, `GET /health: body does not contain "ready"`},
		{"status checked before body", controller.HealthSpec{Path: "/down", ExpectBody: "healthy"}, "GET /down: status 503, want 2xx"},
		{"redirect not followed", controller.HealthSpec{Path: "/redirect"}, "GET /redirect: status 302, want 2xx"},
		{"redirect accepted when expected", controller.HealthSpec{Path: "/redirect", ExpectStatus: 302}, ""},
		{"body read is bounded", controller.HealthSpec{Path: "/big", ExpectBody: "healthy"}, `GET /big: body does not contain "healthy"`},
		{"missing path is 404", controller.HealthSpec{Path: "/nope"}, "GET /nope: status 404, want 2xx"},
		{"relative path rejected", controller.HealthSpec{Path: "health"}, "GET health: path must start with /"},
	}
	p, _ := newTestProber(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Probe(context.Background(), addr, tt.spec)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Fatalf("Probe error = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func TestProbe_RejectsMalformedAddress(t *testing.T) {
	p, _ := newTestProber(t)
	for _, addr := range []string{"127.0.0.1:80/x", "user@127.0.0.1:80", "127.0.0.1:80?q", "a b:80"} {
		err := p.Probe(context.Background(), addr, controller.HealthSpec{Path: "/health"})
		if err == nil || !strings.Contains(err.Error(), "invalid address") {
			t.Errorf("Probe(%q) error = %v, want invalid address", addr, err)
		}
	}
}

func TestProbe_TimesOutOnSlowReplica(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	p, _ := newTestProber(t)
	start := time.Now()
	err := p.Probe(context.Background(), strings.TrimPrefix(srv.URL, "http://"),
		controller.HealthSpec{Path: "/health", Timeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Fatalf("Probe error = %v, want timeout", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Probe took %s, want about 200ms", took)
	}
}

func TestProbe_ConnectionRefusedIsAnError(t *testing.T) {
	// Grab a free port and close it so nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	p, hook := newTestProber(t)
	err = p.Probe(context.Background(), addr, controller.HealthSpec{Path: "/health", Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Probe error = %v, want connection refused", err)
	}
	// retryablehttp's chatter must reach our logger, and only at debug.
	if len(hook.AllEntries()) == 0 {
		t.Fatal("no log entries, want retryablehttp's debug logs routed to the given logger")
	}
	for _, e := range hook.AllEntries() {
		if e.Level != logrus.DebugLevel {
			t.Errorf("entry %q level = %s, want debug", e.Message, e.Level)
		}
	}
}

func TestProbe_RetriesOneDroppedConnection(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			// Drop the first connection without an answer, as a replica
			// restarting its listener might.
			hj, ok := w.(http.Hijacker)
			if !ok {
				t.Error("response writer cannot hijack")
				return
			}
			conn, _, err := hj.Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)

	p, _ := newTestProber(t)
	if err := p.Probe(context.Background(), strings.TrimPrefix(srv.URL, "http://"), controller.HealthSpec{Path: "/health"}); err != nil {
		t.Fatalf("Probe error = %v, want nil after one retry", err)
	}
	if got := calls.Load(); got != 2 {
		t.Fatalf("requests = %d, want 2", got)
	}
}

func TestProbe_DoesNotRetryAnUnhealthyStatus(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)

	p, _ := newTestProber(t)
	_ = p.Probe(context.Background(), strings.TrimPrefix(srv.URL, "http://"), controller.HealthSpec{Path: "/health"})
	if got := calls.Load(); got != 1 {
		t.Fatalf("requests = %d, want 1 (a 503 is an answer, not a transport failure)", got)
	}
}

func TestProbe_OpensAFreshConnectionEachTime(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	p, _ := newTestProber(t)
	addr := strings.TrimPrefix(srv.URL, "http://")
	for i := 0; i < 3; i++ {
		if err := p.Probe(context.Background(), addr, controller.HealthSpec{Path: "/health"}); err != nil {
			t.Fatalf("Probe %d: %v", i, err)
		}
	}
	if got := conns.Load(); got != 3 {
		t.Fatalf("connections = %d, want 3", got)
	}
}
