package controller_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode"

	"github.com/deployd/deployd/pkg/controller"
)

// fakeTraffic is a TrafficControl with the switch's rules: one pause at a
// time, positive limits, messages without control characters.
type fakeTraffic struct {
	mu          sync.Mutex
	paused      bool
	since       time.Time
	maxHold     time.Duration
	maxHeld     int
	maintenance bool
	message     string
	held        int
	statusErr   error // Status fails with it while set
	// calls lists the calls, e.g. "pause 30s 1000", "maintenance on x".
	calls []string
}

var _ controller.TrafficControl = (*fakeTraffic)(nil)

func (f *fakeTraffic) Pause(_ context.Context, service string, maxHold time.Duration, maxHeld int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "pause "+maxHold.String()+" "+strconv.Itoa(maxHeld))
	if maxHold <= 0 || maxHeld <= 0 {
		return controller.Errorf(controller.EINVALID, "limits must be positive")
	}
	if f.paused {
		return controller.Errorf(controller.ECONFLICT, "pause %s: already paused", service)
	}
	f.paused, f.since, f.maxHold, f.maxHeld = true, time.Now(), maxHold, maxHeld
	return nil
}

func (f *fakeTraffic) Resume(_ context.Context, service string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "resume")
	if !f.paused {
		return controller.Errorf(controller.ECONFLICT, "resume %s: not paused", service)
	}
	f.paused, f.held = false, 0
	return nil
}

func (f *fakeTraffic) Maintenance(_ context.Context, service string, on bool, message string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		f.calls = append(f.calls, "maintenance on "+message)
	} else {
		f.calls = append(f.calls, "maintenance off")
	}
	if on && (len(message) > 1024 || strings.IndexFunc(message, unicode.IsControl) >= 0) {
		return controller.Errorf(controller.EINVALID, "maintenance message has a control character")
	}
	f.maintenance, f.message = on, message
	if !on {
		f.message = ""
	}
	return nil
}

func (f *fakeTraffic) Status(_ context.Context, service string) (controller.TrafficStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.statusErr != nil {
		return controller.TrafficStatus{}, f.statusErr
	}
	st := controller.TrafficStatus{Maintenance: f.maintenance, Message: f.message, InFlight: 2}
	if f.paused {
		st.Paused, st.PausedSince, st.Held, st.MaxHold, st.MaxHeld = true, f.since, f.held, f.maxHold, f.maxHeld
	}
	return st, nil
}

func (f *fakeTraffic) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

var testPause = controller.PauseLimits{MaxHold: 20 * time.Second, MaxHeld: 50}

// newTrafficHarness is a harness in switch mode with testPause.
func newTrafficHarness(t *testing.T) (*harness, *fakeTraffic) {
	ft := &fakeTraffic{}
	h := newHarnessWith(t, func(o *controller.Options) {
		o.TrafficControl = ft
		o.Pause = testPause
	})
	return h, ft
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := controller.ErrorCode(err); got != code {
		t.Fatalf("error = %v (code %q), want code %q", err, got, code)
	}
}

func TestPause_HoldsWithinTheConfiguredLimitsAndIsRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, ft := newTrafficHarness(t)
		v, err := h.c.Pause(h.ctx(), svc, controller.PauseRequest{})
		if err != nil {
			t.Fatalf("Pause: %v", err)
		}
		if got, want := ft.callList(), []string{"pause 20s 50"}; !slices.Equal(got, want) {
			t.Errorf("switch calls = %v, want %v", got, want)
		}
		if !v.Paused || v.Mode != controller.TrafficModeSwitch || v.MaxHeld != 50 || v.InFlight != 2 {
			t.Errorf("view = %+v, want paused in switch mode, max_held 50, 2 in flight", v)
		}
		rec := h.store.trafficOf(svc)
		if !rec.Paused || rec.MaxHold != 20*time.Second || rec.MaxHeld != 50 || rec.PausedSince.IsZero() {
			t.Errorf("record = %+v, want paused with 20s and 50", rec)
		}

		sv, err := h.c.Service(h.ctx(), svc)
		if err != nil {
			t.Fatalf("Service: %v", err)
		}
		if sv.Traffic == nil || !sv.Traffic.Paused || !sv.Traffic.PausedSince.Equal(rec.PausedSince) {
			t.Errorf("service view traffic = %+v, want paused since %v", sv.Traffic, rec.PausedSince)
		}

		v, err = h.c.Resume(h.ctx(), svc)
		if err != nil || v.Paused {
			t.Fatalf("Resume = %+v, %v; want not paused", v, err)
		}
		if rec := h.store.trafficOf(svc); rec.Paused {
			t.Errorf("record after Resume = %+v, want not paused", rec)
		}
	})
}

func TestPause_AskingForLessThanTheLimitsIsHonoured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, ft := newTrafficHarness(t)
		if _, err := h.c.Pause(h.ctx(), svc, controller.PauseRequest{MaxHold: 5 * time.Second, MaxHeld: 7}); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		if got, want := ft.callList(), []string{"pause 5s 7"}; !slices.Equal(got, want) {
			t.Errorf("switch calls = %v, want %v", got, want)
		}
	})
}

func TestPause_BadLimitsChangeNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, ft := newTrafficHarness(t)
		for _, req := range []controller.PauseRequest{
			{MaxHeld: 51}, {MaxHeld: -1}, {MaxHold: 21 * time.Second}, {MaxHold: -time.Second},
		} {
			_, err := h.c.Pause(h.ctx(), svc, req)
			wantCode(t, err, controller.EINVALID)
		}
		if calls := ft.callList(); len(calls) != 0 {
			t.Errorf("switch calls = %v, want none", calls)
		}
		if _, writes := h.store.accesses(); writes != 0 {
			t.Errorf("store writes = %d, want 0", writes)
		}
	})
}

func TestPause_AlreadyPausedIsAConflictAndKeepsTheFirstPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newTrafficHarness(t)
		if _, err := h.c.Pause(h.ctx(), svc, controller.PauseRequest{MaxHeld: 10}); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		first := h.store.trafficOf(svc)
		time.Sleep(time.Minute)
		_, err := h.c.Pause(h.ctx(), svc, controller.PauseRequest{MaxHeld: 20})
		wantCode(t, err, controller.ECONFLICT)
		if got := h.store.trafficOf(svc); got != first {
			t.Errorf("record after the refused pause = %+v, want %+v", got, first)
		}
	})
}

func TestResume_WhenNotPausedIsAConflict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newTrafficHarness(t)
		_, err := h.c.Resume(h.ctx(), svc)
		wantCode(t, err, controller.ECONFLICT)
		if _, writes := h.store.accesses(); writes != 0 {
			t.Errorf("store writes = %d, want 0", writes)
		}
	})
}

func TestPause_ThatCannotBeRecordedIsUndone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, ft := newTrafficHarness(t)
		h.store.set(func(s *memStore) { s.putTrafficErr = errors.New("disk full") })
		if _, err := h.c.Pause(h.ctx(), svc, controller.PauseRequest{}); err == nil {
			t.Fatal("Pause succeeded with a failing store")
		}
		if st, _ := ft.Status(h.ctx(), svc); st.Paused {
			t.Error("the switch stayed paused although the pause was not recorded")
		}
	})
}

func TestMaintenance_OnOffAndTheMessageIsRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newTrafficHarness(t)
		v, err := h.c.Maintenance(h.ctx(), svc, true, "Back at 18:00 UTC")
		if err != nil || !v.Maintenance || v.Message != "Back at 18:00 UTC" {
			t.Fatalf("Maintenance on = %+v, %v; want on with the message", v, err)
		}
		rec := h.store.trafficOf(svc)
		if !rec.Maintenance || rec.Message != "Back at 18:00 UTC" || rec.MaintenanceSince.IsZero() {
			t.Errorf("record = %+v, want maintenance with the message", rec)
		}
		since := rec.MaintenanceSince
		time.Sleep(time.Minute)
		if _, err := h.c.Maintenance(h.ctx(), svc, true, "Back at 19:00 UTC"); err != nil {
			t.Fatalf("Maintenance on again: %v", err)
		}
		if rec := h.store.trafficOf(svc); rec.Message != "Back at 19:00 UTC" || !rec.MaintenanceSince.Equal(since) {
			t.Errorf("record = %+v, want the new message since %v", rec, since)
		}
		v, err = h.c.Maintenance(h.ctx(), svc, false, "")
		if err != nil || v.Maintenance {
			t.Fatalf("Maintenance off = %+v, %v; want off", v, err)
		}
		if rec := h.store.trafficOf(svc); rec.Maintenance || rec.Message != "" {
			t.Errorf("record = %+v, want maintenance off", rec)
		}
	})
}

func TestMaintenance_BadMessageChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newTrafficHarness(t)
		_, err := h.c.Maintenance(h.ctx(), svc, true, "line one\nline two")
		wantCode(t, err, controller.EINVALID)
		if _, writes := h.store.accesses(); writes != 0 {
			t.Errorf("store writes = %d, want 0", writes)
		}
	})
}

func TestTraffic_ReloadModeRefusesWithAClearConflict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		_, err := h.c.Pause(h.ctx(), svc, controller.PauseRequest{})
		wantCode(t, err, controller.ECONFLICT)
		if msg := controller.ErrorMessage(err); !strings.Contains(msg, "traffic.mode: switch") {
			t.Errorf("message = %q, want it to name traffic.mode: switch", msg)
		}
		_, err = h.c.Resume(h.ctx(), svc)
		wantCode(t, err, controller.ECONFLICT)
		_, err = h.c.Maintenance(h.ctx(), svc, true, "")
		wantCode(t, err, controller.ECONFLICT)
		sv, err := h.c.Service(h.ctx(), svc)
		if err != nil || sv.Traffic != nil {
			t.Errorf("Service = traffic %+v, %v; want no traffic view in reload mode", sv.Traffic, err)
		}
	})
}

func TestTraffic_UnknownServiceIsNotFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, ft := newTrafficHarness(t)
		_, err := h.c.Pause(h.ctx(), "nope", controller.PauseRequest{})
		wantCode(t, err, controller.ENOTFOUND)
		_, err = h.c.Resume(h.ctx(), "nope")
		wantCode(t, err, controller.ENOTFOUND)
		_, err = h.c.Maintenance(h.ctx(), "nope", true, "x")
		wantCode(t, err, controller.ENOTFOUND)
		if calls := ft.callList(); len(calls) != 0 {
			t.Errorf("switch calls = %v, want none", calls)
		}
	})
}

func TestStart_RestoresPauseAndMaintenanceWithinTodaysLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, ft := newTrafficHarness(t)
		since := time.Now().Add(-time.Hour).UTC()
		h.store.set(func(s *memStore) {
			s.traffic[svc] = controller.TrafficState{
				Service: svc, Paused: true, PausedSince: since, MaxHold: time.Minute, MaxHeld: 10,
				Maintenance: true, MaintenanceSince: since, Message: "Migrating",
			}
		})
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		// The limit lowered since (20s) applies; the smaller max_held stays.
		if got, want := ft.callList(), []string{"maintenance on Migrating", "pause 20s 10"}; !slices.Equal(got, want) {
			t.Errorf("switch calls = %v, want %v", got, want)
		}
		sv, err := h.c.Service(h.ctx(), svc)
		if err != nil {
			t.Fatalf("Service: %v", err)
		}
		if tv := sv.Traffic; tv == nil || !tv.Paused || !tv.PausedSince.Equal(since) || !tv.Maintenance || !tv.MaintenanceSince.Equal(since) {
			t.Errorf("traffic view = %+v, want paused and in maintenance since %v, as recorded", tv, since)
		}
	})
}

func TestStart_ReloadModeWarnsOfARecordedPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.store.set(func(s *memStore) {
			s.traffic[svc] = controller.TrafficState{Service: svc, Paused: true, MaxHold: time.Second, MaxHeld: 1}
		})
		if err := h.c.Start(h.ctx()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		for _, e := range h.logs.AllEntries() {
			if strings.Contains(e.Message, "reload mode") {
				return
			}
		}
		t.Error("no warning that the recorded pause does not apply in reload mode")
	})
}

// The switch runs in its own process and keeps its pause and maintenance
// across daemon restarts: Start makes it agree with the record whichever
// way it differs, and leaves alone what agrees.
func TestStart_ConvergesTheSwitchToTheRecordBothWays(t *testing.T) {
	paused := controller.TrafficState{Service: svc, Paused: true, MaxHold: 10 * time.Second, MaxHeld: 10}
	maint := controller.TrafficState{Service: svc, Maintenance: true, Message: "Migrating"}
	tests := []struct {
		name   string
		record *controller.TrafficState // nil: none recorded
		preset func(f *fakeTraffic)
		calls  []string
		want   func(f *fakeTraffic) bool
	}{
		{"nothing recorded, switch idle", nil, func(*fakeTraffic) {}, nil,
			func(f *fakeTraffic) bool { return !f.paused && !f.maintenance }},
		{"nothing recorded, switch paused", nil, func(f *fakeTraffic) { f.paused, f.maxHold, f.maxHeld = true, time.Second, 1 },
			[]string{"resume"}, func(f *fakeTraffic) bool { return !f.paused }},
		{"not paused recorded, switch paused and in maintenance", &controller.TrafficState{Service: svc},
			func(f *fakeTraffic) {
				f.paused, f.maxHold, f.maxHeld, f.maintenance, f.message = true, time.Second, 1, true, "x"
			},
			[]string{"maintenance off", "resume"}, func(f *fakeTraffic) bool { return !f.paused && !f.maintenance }},
		{"paused recorded, switch already paused", &paused, func(f *fakeTraffic) { f.paused, f.maxHold, f.maxHeld = true, 10*time.Second, 10 },
			nil, func(f *fakeTraffic) bool { return f.paused && f.maxHeld == 10 }},
		{"paused recorded, switch idle", &paused, func(*fakeTraffic) {},
			[]string{"pause 10s 10"}, func(f *fakeTraffic) bool { return f.paused }},
		{"maintenance recorded, switch already in it", &maint, func(f *fakeTraffic) { f.maintenance, f.message = true, "Migrating" },
			nil, func(f *fakeTraffic) bool { return f.maintenance && f.message == "Migrating" }},
		{"maintenance recorded, switch shows another message", &maint, func(f *fakeTraffic) { f.maintenance, f.message = true, "Old" },
			[]string{"maintenance on Migrating"}, func(f *fakeTraffic) bool { return f.maintenance && f.message == "Migrating" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, ft := newTrafficHarness(t)
				if tt.record != nil {
					h.store.set(func(s *memStore) { s.traffic[svc] = *tt.record })
				}
				tt.preset(ft)
				if err := h.c.Start(h.ctx()); err != nil {
					t.Fatalf("Start: %v", err)
				}
				if got := ft.callList(); !slices.Equal(got, tt.calls) {
					t.Errorf("switch calls = %v, want %v", got, tt.calls)
				}
				if !tt.want(ft) {
					t.Errorf("switch after Start = %+v, not as recorded", ft)
				}
				// A second start finds everything in line and changes nothing.
				if err := h.c.Start(h.ctx()); err != nil {
					t.Fatalf("second Start: %v", err)
				}
				if got := ft.callList(); !slices.Equal(got, tt.calls) {
					t.Errorf("switch calls after a second Start = %v, want still %v", got, tt.calls)
				}
			})
		})
	}
}

func TestStart_UnreachableSwitchFailsTheStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, ft := newTrafficHarness(t)
		ft.statusErr = controller.Errorf(controller.EUNAVAILABLE, "traffic switch unreachable")
		err := h.c.Start(h.ctx())
		wantCode(t, err, controller.EUNAVAILABLE)
		if calls := ft.callList(); len(calls) != 0 {
			t.Errorf("switch calls = %v, want none on a switch of unknown state", calls)
		}
	})
}
