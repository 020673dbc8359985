package trafficswitch

import (
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetrics_EverySeriesIsExposedFromTheFirstSwitch(t *testing.T) {
	h := newHarness(t, Options{})
	h.setTargets("blue", newBackend(t, "blue", nil).addr())
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	// Counters exist at zero before the first request, so that rate()
	// and alerts see a series; the histogram appears with its first
	// observation.
	for _, want := range []string{
		"deployd_switch_requests_total",
		"deployd_switch_responses_5xx_total",
		"deployd_switch_retries_total",
		"deployd_switch_proxy_errors_total",
		"deployd_switch_rejected_total",
		"deployd_switch_in_flight_requests",
		"deployd_switch_upgraded_connections",
		"deployd_switch_held_requests",
		"deployd_switch_paused",
		"deployd_switch_maintenance",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("%s not exposed; have %v", want, names)
		}
	}
	do(t, http.MethodGet, h.url+"/", "", nil)
	if got := counterValue(t, h.reg, "deployd_switch_requests_total", map[string]string{"service": "web", "color": "blue"}); got != 1 {
		t.Errorf("requests = %v, want 1", got)
	}
	if got := counterValue(t, h.reg, "deployd_switch_request_duration_seconds", map[string]string{"color": "blue"}); got != 1 {
		t.Errorf("latency observations = %v, want 1", got)
	}
}

func TestNew_RegistersOnTheGivenRegistererOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Options{Registerer: reg}); err != nil {
		t.Fatalf("New: %v", err)
	}
	// A second Switch on the same registry collides: the daemon has one.
	var dup prometheus.AlreadyRegisteredError
	if _, err := New(Options{Registerer: reg}); !errors.As(err, &dup) {
		t.Fatalf("second New on the same registry = %v, want AlreadyRegisteredError", err)
	}
	if _, err := New(Options{}); err != nil {
		t.Fatalf("New without a registerer: %v", err)
	}
}

func TestNew_OutOfRangeOptionsAreInvalid(t *testing.T) {
	for name, o := range map[string]Options{
		"negative dial timeout": {DialTimeout: -1},
		"negative attempts":     {MaxAttempts: -1},
		"negative idle pool":    {MaxIdleConnsPerHost: -1},
		"window under 60ms":     {ErrorWindow: 10 * time.Millisecond},
		"negative client idle":  {ClientIdleTimeout: -time.Second},
		"zero-value prefix":     {TrustedProxies: []netip.Prefix{{}}},
	} {
		if _, err := New(o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: New = %v, want ErrInvalid", name, err)
		}
	}
}
