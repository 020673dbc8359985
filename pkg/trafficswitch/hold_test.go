package trafficswitch

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/xtest"
)

type answer struct {
	status     int
	body       string
	retryAfter string
	err        error
}

func get(url string) answer {
	res, err := http.Get(url)
	if err != nil {
		return answer{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return answer{status: res.StatusCode, body: string(b), retryAfter: res.Header.Get("Retry-After"), err: err}
}

func heldCount(h *harness) int {
	st, _ := h.sw.Status(h.service)
	return st.Held
}

func TestPause_HoldsRequestsUntilResume(t *testing.T) {
	h := newHarness(t, Options{})
	h.setTargets("blue", newBackend(t, "blue", nil).addr())
	if err := h.sw.Pause(h.service, 10*time.Second, 10); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	done := make(chan answer, 2)
	for range 2 {
		go func() { done <- get(h.url + "/") }()
	}
	xtest.Eventually(t, 5*time.Second, 2*time.Millisecond, "two requests held", func() error {
		if n := heldCount(h); n != 2 {
			return fmt.Errorf("held %d", n)
		}
		return nil
	})
	if got := counterValue(t, h.reg, "deployd_switch_held_requests", map[string]string{"service": h.service}); got != 2 {
		t.Errorf("held gauge = %v, want 2", got)
	}
	// A switch made during the pause applies to the held requests.
	h.setTargets("green", newBackend(t, "green", nil).addr())
	if err := h.sw.Resume(h.service); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	for range 2 {
		a := <-done
		if a.err != nil || a.status != http.StatusOK || !strings.HasPrefix(a.body, "green") {
			t.Fatalf("held request: %+v, want 200 from green", a)
		}
	}
}

func TestPause_PastTheLimitsAnswers503WithRetryAfter(t *testing.T) {
	h := newHarness(t, Options{})
	h.setTargets("blue", newBackend(t, "blue", nil).addr())
	if err := h.sw.Pause(h.service, 300*time.Millisecond, 1); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	first := make(chan answer, 1)
	start := time.Now()
	go func() { first <- get(h.url + "/") }()
	xtest.Eventually(t, 5*time.Second, 2*time.Millisecond, "one request held", func() error {
		if n := heldCount(h); n != 1 {
			return fmt.Errorf("held %d", n)
		}
		return nil
	})
	over := get(h.url + "/")
	if over.status != http.StatusServiceUnavailable || over.retryAfter != "1" || !strings.Contains(over.body, "paused") {
		t.Errorf("request over the hold limit: %+v, want 503 with Retry-After 1", over)
	}
	a := <-first
	if a.status != http.StatusServiceUnavailable || a.retryAfter != "1" {
		t.Errorf("request held past the maximum: %+v, want 503 with Retry-After 1", a)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("held request answered after %s, want after the 300ms maximum", took)
	}
	for reason, want := range map[string]float64{"hold_limit": 1, "hold_timeout": 1} {
		if got := counterValue(t, h.reg, "deployd_switch_rejected_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("rejected{%s} = %v, want %v", reason, got, want)
		}
	}
}

func TestPause_BadInputAndStateAreErrors(t *testing.T) {
	h := newHarness(t, Options{})
	if err := h.sw.Pause(h.service, time.Second, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Pause with a hold limit of 0 = %v, want ErrInvalid", err)
	}
	if err := h.sw.Pause(h.service, 0, 10); !errors.Is(err, ErrInvalid) {
		t.Errorf("Pause with a maximum hold of 0 = %v, want ErrInvalid", err)
	}
	if err := h.sw.Resume(h.service); !errors.Is(err, ErrConflict) {
		t.Errorf("Resume when not paused = %v, want ErrConflict", err)
	}
	if err := h.sw.Pause(h.service, time.Second, 10); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := h.sw.Pause(h.service, 2*time.Second, 20); !errors.Is(err, ErrConflict) {
		t.Errorf("Pause when already paused = %v, want ErrConflict", err)
	}
	st, _ := h.sw.Status(h.service)
	if !st.Paused || st.MaxHold != time.Second || st.MaxHeld != 10 {
		t.Errorf("status after the refused second pause: %+v, want the first pause's limits", st)
	}
}

func TestMaintenance_AnswersTheMessageUntilTurnedOff(t *testing.T) {
	h := newHarness(t, Options{})
	h.setTargets("blue", newBackend(t, "blue", nil).addr())
	if err := h.sw.Maintenance(h.service, true, "Back at 14:00 — database upgrade."); err != nil {
		t.Fatalf("Maintenance on: %v", err)
	}
	// Maintenance wins over a pause: nobody waits for a page that says
	// come back later.
	if err := h.sw.Pause(h.service, 10*time.Second, 10); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	a := get(h.url + "/")
	if a.status != http.StatusServiceUnavailable || a.body != "Back at 14:00 — database upgrade.\n" {
		t.Fatalf("during maintenance: %+v", a)
	}
	if err := h.sw.Resume(h.service); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if err := h.sw.Maintenance(h.service, false, ""); err != nil {
		t.Fatalf("Maintenance off: %v", err)
	}
	if a := get(h.url + "/"); a.status != http.StatusOK {
		t.Fatalf("after maintenance: %+v, want 200", a)
	}
	if err := h.sw.Maintenance(h.service, true, ""); err != nil {
		t.Fatalf("Maintenance on without a message: %v", err)
	}
	if a := get(h.url + "/"); a.body != DefaultMaintenanceMessage+"\n" {
		t.Errorf("default message: %q", a.body)
	}
}

func TestMaintenance_BadMessagesAreRefusedAndChangeNothing(t *testing.T) {
	h := newHarness(t, Options{})
	h.setTargets("blue", newBackend(t, "blue", nil).addr())
	for _, tt := range []struct{ name, msg string }{
		{"too long", strings.Repeat("x", MaxMessageLen+1)},
		{"newline", "line one\nline two"},
		{"escape sequence", "\x1b[31mred"},
		{"NUL", "a\x00b"},
		{"not UTF-8", "caf\xe9"},
		{"C1 control", "a\u0085b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := h.sw.Maintenance(h.service, true, tt.msg); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Maintenance = %v, want ErrInvalid", err)
			}
			if st, _ := h.sw.Status(h.service); st.Maintenance {
				t.Fatal("maintenance turned on by a refused message")
			}
		})
	}
	if err := h.sw.Maintenance(h.service, true, strings.Repeat("é", MaxMessageLen/2)); err != nil {
		t.Errorf("a message of exactly %d bytes: %v", MaxMessageLen, err)
	}
}

func TestClose_AnswersHeldRequests503(t *testing.T) {
	h := newHarness(t, Options{})
	h.setTargets("blue", newBackend(t, "blue", nil).addr())
	if err := h.sw.Pause(h.service, time.Minute, 10); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	done := make(chan answer, 1)
	go func() { done <- get(h.url + "/") }()
	xtest.Eventually(t, 5*time.Second, 2*time.Millisecond, "request held", func() error {
		if heldCount(h) != 1 {
			return errors.New("not held yet")
		}
		return nil
	})
	if err := h.sw.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if a := <-done; a.status != http.StatusServiceUnavailable || a.retryAfter == "" {
		t.Fatalf("held request at Close: %+v, want 503 with Retry-After", a)
	}
}
