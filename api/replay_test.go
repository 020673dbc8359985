package api

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// A captured request resent with a new delivery id must not start a
// second deployment, however soon; a retry of the same delivery is still
// answered (by the controller, with the deployment it started).
func TestWebhook_ReplayWithNewDeliveryIDIsRefused(t *testing.T) {
	h := newHarness(t)
	now := time.Unix(1_750_000_000, 0)
	h.srv.now = func() time.Time { return now }
	captured := stampedHook(now, hookBody, "delivery-1")
	wantStatus(t, h.send(t, captured), fiber.StatusAccepted)

	tests := []struct {
		name     string
		delivery string
		after    time.Duration
		want     int
	}{
		{"new delivery id at once", "delivery-2", 0, fiber.StatusUnauthorized},
		{"new delivery id near the end of the window", "delivery-3", 4*time.Minute + 59*time.Second, fiber.StatusUnauthorized},
		{"same delivery id: a retry", "delivery-1", time.Minute, fiber.StatusOK},
		{"after the window: stale", "delivery-4", 5*time.Minute + time.Second, fiber.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = time.Unix(1_750_000_000, 0).Add(tt.after)
			replay := stampedHook(time.Unix(1_750_000_000, 0), hookBody, "delivery-1")
			replay.Header.Set("X-GitHub-Delivery", tt.delivery)
			wantStatus(t, h.send(t, replay), tt.want)
		})
	}
	deploys := 0
	for _, c := range h.ctl.Calls() {
		if c.method == "DeployDelivery" {
			deploys++
		}
	}
	// The first delivery and its retry reach the controller; the fake
	// answers the retry as a replay, as the real one does.
	if deploys != 2 {
		t.Fatalf("DeployDelivery called %d times, want 2 (the delivery and its retry)", deploys)
	}
}

func TestWebhook_UnstampedNeedsTheOption(t *testing.T) {
	body := hookBody
	unstamped := func() *http.Request {
		return hookRequest(body, map[string]string{"X-Hub-Signature-256": sign(webhookSecret, body), "X-GitHub-Delivery": "d1"})
	}
	tests := []struct {
		name  string
		allow bool
		want  int
	}{
		{"refused by default", false, fiber.StatusUnauthorized},
		{"accepted with webhook_allow_unstamped", true, fiber.StatusAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, _ := logtest.NewNullLogger()
			ctl := &fakeController{deployment: sampleDeployment()}
			h := &harness{ctl: ctl, srv: New(Options{Controller: ctl, Tokens: testTokens, WebhookSecret: []byte(webhookSecret),
				WebhookAllowUnstamped: tt.allow, Logger: logger})}
			wantStatus(t, h.send(t, unstamped()), tt.want)
			if tt.allow {
				// Even unstamped, the same signature with another
				// delivery id is a replay within the window.
				again := unstamped()
				again.Header.Set("X-GitHub-Delivery", "d2")
				wantStatus(t, h.send(t, again), fiber.StatusUnauthorized)
			}
		})
	}
}

func TestReplayCache(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	sig := func(i int) [sha256.Size]byte { return sha256.Sum256([]byte(strconv.Itoa(i))) }
	r := newReplayCache(2)
	steps := []struct {
		name     string
		sig      int
		delivery string
		at       time.Duration
		want     error
	}{
		{"first", 1, "a", 0, nil},
		{"same delivery again", 1, "a", time.Second, nil},
		{"other delivery", 1, "b", time.Second, errReplayed},
		{"second signature", 2, "b", time.Second, nil},
		{"full of live signatures", 3, "c", 2 * time.Second, errReplayCacheFull},
		{"expired ones make room", 3, "c", 6 * time.Minute, nil},
		{"an expired signature is forgotten", 1, "z", 6 * time.Minute, nil},
	}
	for _, st := range steps {
		at := now.Add(st.at)
		err := r.admit(sig(st.sig), st.delivery, at, now.Add(5*time.Minute))
		if st.at >= 5*time.Minute {
			err = r.admit(sig(st.sig), st.delivery, at, at.Add(5*time.Minute))
		}
		if !errors.Is(err, st.want) && !(st.want == nil && err == nil) {
			t.Fatalf("%s: admit = %v, want %v", st.name, err, st.want)
		}
	}
	if n := len(r.bySig); n > 2 {
		t.Fatalf("cache holds %d signatures, want at most 2", n)
	}
}
