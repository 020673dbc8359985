package trafficswitch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/xtest"
)

// newBareSwitch is a Switch with no listener, closed at the test's end.
func newBareSwitch(t *testing.T) *Switch {
	t.Helper()
	sw, err := New(Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = sw.Close(context.Background()) })
	return sw
}

func TestState_ReflectsTheSwitch(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, sw *Switch)
		want  State
	}{
		{"no service", func(*testing.T, *Switch) {}, State{Services: map[string]ServiceState{}}},
		{"service without targets", func(t *testing.T, sw *Switch) {
			must(t, sw.Maintenance("web", false, ""), ErrNotFound)
			must(t, Local(sw).Maintenance(context.Background(), "web", false, ""), nil)
		}, State{Services: map[string]ServiceState{"web": {}}}},
		{"targets, the active color's only", func(t *testing.T, sw *Switch) {
			must(t, sw.SetTargets("web", "blue", []string{"10.0.0.1:80"}), nil)
			must(t, sw.SetTargets("web", "green", []string{"10.0.0.2:80", "10.0.0.3:80"}), nil)
		}, State{Services: map[string]ServiceState{"web": {Active: "green", Addrs: []string{"10.0.0.2:80", "10.0.0.3:80"}}}}},
		{"targets cleared", func(t *testing.T, sw *Switch) {
			must(t, sw.SetTargets("web", "blue", []string{"10.0.0.1:80"}), nil)
			must(t, sw.SetTargets("web", "blue", nil), nil)
		}, State{Services: map[string]ServiceState{"web": {Active: "blue"}}}},
		{"paused and in maintenance with the default text", func(t *testing.T, sw *Switch) {
			must(t, sw.SetTargets("web", "blue", []string{"10.0.0.1:80"}), nil)
			must(t, sw.Pause("web", 1500*time.Millisecond, 7), nil)
			must(t, sw.Maintenance("web", true, ""), nil)
		}, State{Services: map[string]ServiceState{"web": {
			Active: "blue", Addrs: []string{"10.0.0.1:80"}, Paused: true, MaxHold: 1500 * time.Millisecond, MaxHeld: 7,
			Maintenance: true, Message: DefaultMaintenanceMessage,
		}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sw := newBareSwitch(t)
			tt.setup(t, sw)
			if got := sw.State(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("State() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func must(t *testing.T, err, want error) {
	t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
}

func TestRestore_ConvergesAndIsIdempotent(t *testing.T) {
	full := ServiceState{Active: "green", Addrs: []string{"10.0.0.2:80"}, Paused: true, MaxHold: 2 * time.Second, MaxHeld: 3,
		Maintenance: true, Message: "Migrating"}
	tests := []struct {
		name  string
		setup func(t *testing.T, sw *Switch)
		st    State
		// want is the state afterwards; the zero value means st itself.
		want State
	}{
		{"empty switch gets everything", func(*testing.T, *Switch) {},
			State{Services: map[string]ServiceState{"web": full, "api": {Active: "blue", Addrs: []string{"10.0.1.1:80"}}}}, State{}},
		{"pause and maintenance end", func(t *testing.T, sw *Switch) {
			must(t, sw.SetTargets("web", "green", []string{"10.0.0.2:80"}), nil)
			must(t, sw.Pause("web", time.Second, 1), nil)
			must(t, sw.Maintenance("web", true, "x"), nil)
		}, State{Services: map[string]ServiceState{"web": {Active: "green", Addrs: []string{"10.0.0.2:80"}}}}, State{}},
		{"other hold limits and message", func(t *testing.T, sw *Switch) {
			must(t, sw.SetTargets("web", "blue", []string{"10.0.0.1:80"}), nil)
			must(t, sw.Pause("web", time.Second, 1), nil)
			must(t, sw.Maintenance("web", true, "old"), nil)
		}, State{Services: map[string]ServiceState{"web": full}}, State{}},
		{"default maintenance text", func(t *testing.T, sw *Switch) {
			must(t, sw.Maintenance("web", false, ""), ErrNotFound)
		}, State{Services: map[string]ServiceState{"web": {Maintenance: true}}},
			State{Services: map[string]ServiceState{"web": {Maintenance: true, Message: DefaultMaintenanceMessage}}}},
		{"no active color keeps the targets; unnamed services are left alone", func(t *testing.T, sw *Switch) {
			must(t, sw.SetTargets("web", "blue", []string{"10.0.0.1:80"}), nil)
			must(t, sw.SetTargets("api", "blue", []string{"10.0.1.1:80"}), nil)
		}, State{Services: map[string]ServiceState{"web": {}}},
			State{Services: map[string]ServiceState{
				"web": {Active: "blue", Addrs: []string{"10.0.0.1:80"}},
				"api": {Active: "blue", Addrs: []string{"10.0.1.1:80"}},
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sw := newBareSwitch(t)
			tt.setup(t, sw)
			if err := sw.Restore(tt.st); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			want := tt.want
			if want.Services == nil {
				want = tt.st
			}
			if got := sw.State(); !reflect.DeepEqual(got, want) {
				t.Fatalf("State() after Restore = %+v, want %+v", got, want)
			}
			// Again: nothing changes, not even a time or a generation.
			before := statuses(t, sw)
			if err := sw.Restore(tt.st); err != nil {
				t.Fatalf("second Restore: %v", err)
			}
			if after := statuses(t, sw); !reflect.DeepEqual(after, before) {
				t.Errorf("second Restore changed the switch:\n%+v\nwas\n%+v", after, before)
			}
		})
	}
}

func statuses(t *testing.T, sw *Switch) map[string]Status {
	t.Helper()
	out := map[string]Status{}
	for name := range sw.State().Services {
		st, err := sw.Status(name)
		if err != nil {
			t.Fatalf("Status(%s): %v", name, err)
		}
		out[name] = st
	}
	return out
}

func TestRestore_ReportsWhatItCannotApplyAndAppliesTheRest(t *testing.T) {
	sw := newBareSwitch(t)
	err := sw.Restore(State{Services: map[string]ServiceState{
		"web": {Active: "Blue!", Paused: true, MaxHold: 0, MaxHeld: 1},
		"api": {Active: "blue", Addrs: []string{"10.0.1.1:80"}},
	}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Restore = %v, want ErrInvalid", err)
	}
	if got := sw.State().Services["api"]; got.Active != "blue" {
		t.Errorf("api after Restore = %+v, want its targets despite web's errors", got)
	}
}

// A hold whose limits change stays a hold: a request held under the old
// limits is not let through.
func TestRestore_NewHoldLimitsKeepRequestsHeld(t *testing.T) {
	h := newHarness(t, Options{})
	h.setTargets("blue", newBackend(t, "blue", nil).addr())
	must(t, h.sw.Pause(h.service, 10*time.Second, 5), nil)
	done := make(chan answer, 1)
	go func() { done <- get(h.url + "/") }()
	waitHeld(t, h, 1)
	must(t, h.sw.Restore(State{Services: map[string]ServiceState{h.service: {
		Active: "blue", Addrs: h.sw.State().Services[h.service].Addrs, Paused: true, MaxHold: 20 * time.Second, MaxHeld: 9,
	}}}), nil)
	waitHeld(t, h, 1)
	if st, _ := h.sw.Status(h.service); st.MaxHeld != 9 || st.MaxHold != 20*time.Second {
		t.Errorf("Status = %+v, want the new limits", st)
	}
	must(t, h.sw.Resume(h.service), nil)
	if a := <-done; a.err != nil || a.status != 200 {
		t.Errorf("held request = %+v, want 200 after Resume", a)
	}
}

func waitHeld(t *testing.T, h *harness, n int) {
	t.Helper()
	xtest.Eventually(t, 5*time.Second, 2*time.Millisecond, fmt.Sprintf("%d request(s) held", n), func() error {
		st, err := h.sw.Status(h.service)
		if err != nil {
			return err
		}
		if st.Held != n {
			return fmt.Errorf("%d held", st.Held)
		}
		return nil
	})
}

func TestSaveState_LoadStateRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		st   State
	}{
		{"empty", State{}},
		{"no services", State{Services: map[string]ServiceState{}}},
		{"every field", State{Services: map[string]ServiceState{
			"web": {Active: "green", Addrs: []string{"10.0.0.2:80", "[::1]:81"}, Paused: true, MaxHold: 1500 * time.Millisecond,
				MaxHeld: 7, Maintenance: true, Message: "Zurück um 18:00 \"UTC\""},
			"api": {},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "switch.json")
			// Over an older file, too.
			if err := os.WriteFile(path, []byte(`{"services":{"old":{}}}`), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := SaveState(path, tt.st); err != nil {
				t.Fatalf("SaveState: %v", err)
			}
			got, err := LoadState(path)
			if err != nil {
				t.Fatalf("LoadState: %v", err)
			}
			if !reflect.DeepEqual(got, tt.st) && !(len(got.Services) == 0 && len(tt.st.Services) == 0) {
				t.Errorf("LoadState = %+v, want %+v", got, tt.st)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if mode := fi.Mode().Perm(); mode != 0o600 {
				t.Errorf("mode = %o, want 600", mode)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("directory holds %d entries, want the state file only (no temp file left)", len(entries))
			}
		})
	}
}

func TestLoadState_MissingCorruptAndUnwritable(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.json")
	if err := os.WriteFile(corrupt, []byte(`{"services":`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		want    error
		wantNil bool
	}{
		{"missing file is an empty state", filepath.Join(dir, "none.json"), nil, true},
		{"corrupt file", corrupt, ErrInvalid, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := LoadState(tt.path)
			if tt.wantNil {
				if err != nil || len(st.Services) != 0 {
					t.Fatalf("LoadState = %+v, %v; want an empty state", st, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("LoadState = %v, want %v", err, tt.want)
			}
		})
	}
	if err := SaveState(filepath.Join(dir, "no", "such", "dir", "s.json"), State{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SaveState into a missing directory = %v, want ErrNotExist", err)
	}
}
