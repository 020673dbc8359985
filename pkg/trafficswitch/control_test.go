package trafficswitch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/xtest"
	"github.com/deployd/deployd/pkg/controller"
)

func TestControl_MapsTheSwitchErrorsToControllerCodes(t *testing.T) {
	h := newHarness(t, Options{})
	c := NewControl(Local(h.sw))
	ctx := context.Background()
	tests := []struct {
		name     string
		call     func() error
		code     string
		sentinel error
	}{
		{"hold limit of 0", func() error { return c.Pause(ctx, h.service, time.Second, 0) }, controller.EINVALID, ErrInvalid},
		{"negative hold time", func() error { return c.Pause(ctx, h.service, -time.Second, 1) }, controller.EINVALID, ErrInvalid},
		{"message with a newline", func() error { return c.Maintenance(ctx, h.service, true, "a\nb") }, controller.EINVALID, ErrInvalid},
		{"message too long", func() error { return c.Maintenance(ctx, h.service, true, strings.Repeat("x", MaxMessageLen+1)) }, controller.EINVALID, ErrInvalid},
		{"resume when not paused", func() error { return c.Resume(ctx, h.service) }, controller.ECONFLICT, ErrConflict},
		{"resume of an unknown service", func() error { return c.Resume(ctx, "nope") }, controller.ENOTFOUND, ErrNotFound},
		{"status of an unknown service", func() error { _, err := c.Status(ctx, "nope"); return err }, controller.ENOTFOUND, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if got := controller.ErrorCode(err); got != tt.code {
				t.Fatalf("code = %q (error %v), want %q", got, err, tt.code)
			}
			if !errors.Is(err, tt.sentinel) {
				t.Errorf("error %v does not wrap %v", err, tt.sentinel)
			}
			if msg := controller.ErrorMessage(err); msg == "internal error" || msg == "" {
				t.Errorf("message = %q, want the switch's reason", msg)
			}
		})
	}
	st, err := c.Status(ctx, h.service)
	if err != nil || st.Paused || st.Maintenance {
		t.Fatalf("after the refusals: Status = %+v, %v; want neither paused nor in maintenance", st, err)
	}
}

func TestControl_PauseTwiceIsAConflict(t *testing.T) {
	h := newHarness(t, Options{})
	c := NewControl(Local(h.sw))
	ctx := context.Background()
	if err := c.Pause(ctx, h.service, 3*time.Second, 5); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	err := c.Pause(ctx, h.service, time.Second, 1)
	if controller.ErrorCode(err) != controller.ECONFLICT || !errors.Is(err, ErrConflict) {
		t.Fatalf("second Pause = %v, want ECONFLICT wrapping ErrConflict", err)
	}
	st, err := c.Status(ctx, h.service)
	if err != nil || !st.Paused || st.MaxHold != 3*time.Second || st.MaxHeld != 5 {
		t.Errorf("Status = %+v, %v; want the first pause's limits", st, err)
	}
}

// A restart applies a recorded pause and maintenance before the service
// listens: the Control creates the service for them.
func TestControl_PauseAndMaintenanceBeforeTheServiceListens(t *testing.T) {
	h := newHarness(t, Options{})
	c := NewControl(Local(h.sw))
	ctx := context.Background()
	if err := c.Maintenance(ctx, "api", true, "Migrating"); err != nil {
		t.Fatalf("Maintenance: %v", err)
	}
	if err := c.Pause(ctx, "api", time.Second, 1); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := h.sw.Listen(context.Background(), "api", "127.0.0.1:0"); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	a := get("http://" + h.sw.Addr("api").String() + "/")
	if a.status != 503 || !strings.Contains(a.body, "Migrating") {
		t.Errorf("answer = %d %q, want the 503 maintenance page", a.status, a.body)
	}
	st, err := c.Status(ctx, "api")
	if err != nil || !st.Paused || !st.Maintenance || st.Message != "Migrating" {
		t.Errorf("Status = %+v, %v; want paused and in maintenance", st, err)
	}
}

func TestControl_StatusSumsInFlightOverColors(t *testing.T) {
	h := newHarness(t, Options{})
	release := make(chan struct{})
	slow := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) { <-release })
	h.setTargets("blue", slow.addr())
	done := make(chan answer, 1)
	go func() { done <- get(h.url + "/") }()
	c := NewControl(Local(h.sw))
	xtest.Eventually(t, 5*time.Second, 2*time.Millisecond, "one request in flight", func() error {
		st, err := c.Status(context.Background(), h.service)
		if err != nil {
			return err
		}
		if st.InFlight != 1 {
			return fmt.Errorf("in flight %d", st.InFlight)
		}
		return nil
	})
	close(release)
	if a := <-done; a.err != nil || a.status != 200 {
		t.Errorf("slow request = %+v, want 200", a)
	}
}
