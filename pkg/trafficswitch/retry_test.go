package trafficswitch

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// resetter is a replica that reads each request whole and then, for its
// first `resets` requests, resets the connection instead of answering:
// the request was sent, the answer never comes.
func resetter(t *testing.T, resets int32) *backend {
	var n atomic.Int32
	return newBackend(t, "resetter", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if n.Add(1) > resets {
			_, _ = fmt.Fprintf(w, "resetter %s answered", r.Method)
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = conn.Close()
	})
}

func TestRetry_Rules(t *testing.T) {
	for _, tt := range []struct {
		name       string
		method     string
		body       string
		header     http.Header
		replicas   func(t *testing.T) (addrs []string, counted *backend)
		wantStatus int
		wantBody   string
		wantHits   int // requests the counted replica saw
		wantReason string
		wantRetry  float64
	}{
		{
			name:   "POST with a body on a refused replica goes to the other",
			method: http.MethodPost, body: "order=1",
			replicas: func(t *testing.T) ([]string, *backend) {
				ok := newBackend(t, "ok", nil)
				// The first pick starts at index 1: the refused one.
				return []string{ok.addr(), refusedAddr(t)}, ok
			},
			wantStatus: http.StatusOK, wantBody: "ok POST 7", wantHits: 1, wantRetry: 1,
		},
		{
			name:   "POST without a body on a refused replica goes to the other",
			method: http.MethodPost,
			replicas: func(t *testing.T) ([]string, *backend) {
				ok := newBackend(t, "ok", nil)
				return []string{ok.addr(), refusedAddr(t)}, ok
			},
			wantStatus: http.StatusOK, wantBody: "ok POST 0", wantHits: 1, wantRetry: 1,
		},
		{
			name:       "GET reset after it was sent is retried",
			method:     http.MethodGet,
			replicas:   oneResetter,
			wantStatus: http.StatusOK, wantBody: "resetter GET answered", wantHits: 2, wantRetry: 1,
		},
		{
			name:       "DELETE reset after it was sent is retried",
			method:     http.MethodDelete,
			replicas:   oneResetter,
			wantStatus: http.StatusOK, wantBody: "resetter DELETE answered", wantHits: 2, wantRetry: 1,
		},
		{
			name:   "POST reset after it was sent gets a 502",
			method: http.MethodPost, body: "order=1",
			replicas:   oneResetter,
			wantStatus: http.StatusBadGateway, wantBody: "connection to the service broke", wantHits: 1, wantReason: "upstream",
		},
		{
			name:       "POST without a body reset after it was sent gets a 502",
			method:     http.MethodPost,
			replicas:   oneResetter,
			wantStatus: http.StatusBadGateway, wantBody: "connection to the service broke", wantHits: 1, wantReason: "upstream",
		},
		{
			name:   "POST with an Idempotency-Key reset after it was sent is retried",
			method: http.MethodPost, header: http.Header{"Idempotency-Key": {"k1"}},
			replicas:   oneResetter,
			wantStatus: http.StatusOK, wantBody: "resetter POST answered", wantHits: 2, wantRetry: 1,
		},
		{
			name:   "PUT whose body was sent is not replayed: the switch keeps no copy",
			method: http.MethodPut, body: "v=2",
			replicas:   oneResetter,
			wantStatus: http.StatusBadGateway, wantBody: "connection to the service broke", wantHits: 1, wantReason: "upstream",
		},
		{
			name:   "every replica refused: 502 naming the cause",
			method: http.MethodPost, body: "x",
			replicas: func(t *testing.T) ([]string, *backend) {
				return []string{refusedAddr(t), refusedAddr(t)}, nil
			},
			wantStatus: http.StatusBadGateway, wantBody: "no replica of this service accepted a connection", wantReason: "dial", wantRetry: 2,
		},
		{
			name:   "GET past the response header timeout gets a 504, not a retry",
			method: http.MethodGet,
			replicas: func(t *testing.T) ([]string, *backend) {
				slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-time.After(2 * time.Second):
					case <-r.Context().Done():
					}
				})
				return []string{slow.addr()}, slow
			},
			wantStatus: http.StatusGatewayTimeout, wantBody: "did not answer in time", wantHits: 1, wantReason: "timeout",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{ResponseHeaderTimeout: 200 * time.Millisecond})
			addrs, counted := tt.replicas(t)
			h.setTargets("blue", addrs...)
			status, body := do(t, tt.method, h.url+"/", tt.body, tt.header)
			if status != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", status, body, tt.wantStatus, tt.wantBody)
			}
			if counted != nil && counted.hitCount() != tt.wantHits {
				t.Errorf("replica saw %d requests, want %d", counted.hitCount(), tt.wantHits)
			}
			if tt.wantReason != "" {
				got := counterValue(t, h.reg, "deployd_switch_proxy_errors_total", map[string]string{"color": "blue", "reason": tt.wantReason})
				if got != 1 {
					t.Errorf("proxy errors {reason=%s} = %v, want 1", tt.wantReason, got)
				}
			}
			if got := counterValue(t, h.reg, "deployd_switch_retries_total", map[string]string{"color": "blue"}); got != tt.wantRetry {
				t.Errorf("retries = %v, want %v", got, tt.wantRetry)
			}
			wantFailed := 0.0
			if tt.wantStatus >= 500 {
				wantFailed = 1
			}
			if got := counterValue(t, h.reg, "deployd_switch_responses_5xx_total", map[string]string{"color": "blue"}); got != wantFailed {
				t.Errorf("5xx counted = %v, want %v", got, wantFailed)
			}
		})
	}
}

func TestRetry_RefusingReplicaIsSkippedAfterwards(t *testing.T) {
	h := newHarness(t, Options{FailTimeout: time.Minute})
	ok := newBackend(t, "ok", nil)
	h.setTargets("blue", ok.addr(), refusedAddr(t))
	for range 10 {
		if status, body := do(t, http.MethodPost, h.url+"/", "x", nil); status != http.StatusOK {
			t.Fatalf("POST: %d %q", status, body)
		}
	}
	// Least-requests would keep choosing an idle replica that refuses
	// fast; the fail timeout keeps it out after its first refusal.
	if got := counterValue(t, h.reg, "deployd_switch_retries_total", map[string]string{"color": "blue"}); got != 1 {
		t.Errorf("retries = %v, want 1", got)
	}
}

func TestRetry_AfterASwitchGoesToTheNewColor(t *testing.T) {
	h := newHarness(t, Options{})
	var green *backend
	reached := make(chan struct{})
	// blue's only replica resets a GET the first time, after the switch
	// to green has happened: the retry is a new start, on green.
	blue := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
		h.setTargets("green", green.addr())
		close(reached)
		conn, _, _ := http.NewResponseController(w).Hijack()
		_ = conn.Close()
	})
	green = newBackend(t, "green", nil)
	h.setTargets("blue", blue.addr())
	status, body := do(t, http.MethodGet, h.url+"/", "", nil)
	<-reached
	if status != http.StatusOK || !strings.HasPrefix(body, "green") {
		t.Fatalf("got %d %q, want 200 from green", status, body)
	}
	st, _ := h.sw.Status(h.service)
	if c := colorOf(st, "blue"); c.InFlight != 0 {
		t.Errorf("blue still counts %d in flight", c.InFlight)
	}
}

// oneResetter is a single replica that resets the first connection after
// reading the request, then answers.
func oneResetter(t *testing.T) ([]string, *backend) {
	r := resetter(t, 1)
	return []string{r.addr()}, r
}
