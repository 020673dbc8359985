package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

// hookController accepts every delivery; the webhook's checks are the
// real API's.
type hookController struct {
	api.Controller
	mu         sync.Mutex
	deliveries []string
}

func (h *hookController) DeployDelivery(ctx context.Context, key, service string, req controller.DeployRequest) (controller.Deployment, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deliveries = append(h.deliveries, key)
	return controller.Deployment{ID: "d-7", Service: service, Kind: controller.KindDeploy, Image: req.Image,
		Status: controller.StatusQueued, Trigger: req.Trigger, CreatedAt: time.Now()}, false, nil
}

func (h *hookController) RecordAudit(context.Context, controller.AuditEntry) error { return nil }
func (h *hookController) Ready(context.Context) error                              { return nil }

// The CLI's deliveries pass the real server's checks: a signed timestamp,
// which the server now requires.
func TestHook_SendsAStampedSignedDelivery(t *testing.T) {
	const secret = "webhook-secret-0123456789"
	logger, _ := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	ctl := &hookController{}
	srv := api.New(api.Options{Controller: ctl, WebhookSecret: []byte(secret), Logger: logger})
	var stamps []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stamps = append(stamps, r.Header.Get("X-Deployd-Timestamp"))
		req, err := http.NewRequest(r.Method, r.URL.String(), r.Body)
		if err != nil {
			t.Error(err)
			return
		}
		req.Header = r.Header
		resp, err := srv.App().Test(req, 5000)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	defer ts.Close()

	env := map[string]string{"DEPLOYD_SERVER": ts.URL, webhookSecretEnv: secret}
	var out, errOut bytes.Buffer
	code := runHookContext(context.Background(), []string{"--service", "web", "--image", "v2", "--delivery", "build-9"},
		&out, &errOut, func(k string) string { return env[k] })
	if code != exitOK {
		t.Fatalf("exit %d, want 0; stderr %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "deployment d-7 started") {
		t.Fatalf("stdout = %q, want the started deployment", out.String())
	}
	if len(stamps) != 1 {
		t.Fatalf("%d requests, want 1", len(stamps))
	}
	if n, err := strconv.ParseInt(stamps[0], 10, 64); err != nil || time.Since(time.Unix(n, 0)).Abs() > time.Minute {
		t.Fatalf("X-Deployd-Timestamp = %q, want the current unix time", stamps[0])
	}
	if len(ctl.deliveries) != 1 || ctl.deliveries[0] != "build-9" {
		t.Fatalf("deliveries = %v, want [build-9]", ctl.deliveries)
	}
	if strings.Contains(out.String()+errOut.String(), secret) {
		t.Fatal("output contains the secret")
	}
}

func TestHook_UsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no image", []string{"--service", "web"}, map[string]string{"DEPLOYD_SERVER": "http://x", webhookSecretEnv: "s"}, "needs --service and --image"},
		{"no secret", []string{"--service", "web", "--image", "v2"}, map[string]string{"DEPLOYD_SERVER": "http://x"}, "DEPLOYD_WEBHOOK_SECRET is not set"},
		{"no server", []string{"--service", "web", "--image", "v2"}, map[string]string{webhookSecretEnv: "s"}, "no server"},
		{"bad delivery", []string{"--service", "web", "--image", "v2", "--delivery", "a b"}, map[string]string{"DEPLOYD_SERVER": "http://x", webhookSecretEnv: "s"}, "--delivery must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runHookContext(context.Background(), tt.args, &out, &errOut, func(k string) string { return tt.env[k] })
			if code != exitUsage || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut.String(), exitUsage, tt.want)
			}
		})
	}
}
