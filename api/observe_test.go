package api

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func TestReadyz_ReadyControllerAnswers200WithoutToken(t *testing.T) {
	h := newHarness(t)
	resp := h.do(t, "GET", "/readyz", "", "")
	wantStatus(t, resp, fiber.StatusOK)
	body := decodeJSON[map[string]string](t, resp)
	if body["status"] != "ready" || len(body) != 1 {
		t.Fatalf("body = %v, want {status: ready}", body)
	}
}

// The reasons hold nginx's error text and file paths: only a viewer
// (token or session) reads them; anyone else learns just the status.
func TestReadyz_UnreadyReasonOnlyForAViewer(t *testing.T) {
	const reason = "nginx: nginx: [emerg] open() \"/etc/nginx/conf.d/web.conf\" failed"
	tests := []struct {
		name, secret string
		wantReason   bool
	}{
		{"anonymous", "", false},
		{"unknown token", "not-a-token-at-all", false},
		{"viewer", viewerSecret, true},
		{"operator", operatorSecret, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.ctl.setReadyErr(errors.New(reason))
			resp := h.do(t, "GET", "/readyz", tt.secret, "")
			wantStatus(t, resp, fiber.StatusServiceUnavailable)
			body := decodeJSON[map[string]string](t, resp)
			if body["status"] != "unready" {
				t.Errorf("status = %q, want unready", body["status"])
			}
			if got, want := body["error"], map[bool]string{true: reason}[tt.wantReason]; got != want {
				t.Errorf("error = %q, want %q", got, want)
			}
		})
	}
}

func TestReadyz_LongReasonIsCut(t *testing.T) {
	h := newHarness(t)
	h.ctl.setReadyErr(errors.New("nginx: " + strings.Repeat("x", 5000)))
	resp := h.do(t, "GET", "/readyz", viewerSecret, "")
	wantStatus(t, resp, fiber.StatusServiceUnavailable)
	if got := decodeJSON[map[string]string](t, resp)["error"]; len(got) > maxReadyReason+3 {
		t.Fatalf("reason is %d bytes, want at most %d", len(got), maxReadyReason+3)
	}
}

func TestMetrics_NeedsAViewerToken(t *testing.T) {
	h := newHarness(t)
	wantStatus(t, h.do(t, "GET", "/metrics", "", ""), fiber.StatusUnauthorized)

	resp := h.do(t, "GET", "/metrics", viewerSecret, "")
	wantStatus(t, resp, fiber.StatusOK)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !strings.Contains(string(b), "deployd_fake_metric 1") {
		t.Fatalf("body = %q, want the metrics handler's output", b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type = %q, want text/plain", ct)
	}
}

func newMetricsServer(t *testing.T, metrics http.Handler, public bool) *Server {
	t.Helper()
	logger, _ := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	return New(Options{Controller: &fakeController{}, Tokens: testTokens, Logger: logger, Metrics: metrics, MetricsPublic: public})
}

func TestMetrics_PublicNeedsNoToken(t *testing.T) {
	srv := newMetricsServer(t, fakeMetrics, true)
	h := &harness{srv: srv}
	wantStatus(t, h.do(t, "GET", "/metrics", "", ""), fiber.StatusOK)
}

func TestMetrics_AbsentWithoutAHandler(t *testing.T) {
	srv := newMetricsServer(t, nil, true)
	h := &harness{srv: srv}
	wantStatus(t, h.do(t, "GET", "/metrics", viewerSecret, ""), fiber.StatusNotFound)
}
