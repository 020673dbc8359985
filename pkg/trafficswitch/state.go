package trafficswitch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/deployd/deployd/internal/atomicfile"
)

// State is what the switch process persists of its Switch, so that it
// routes as before after its own restart or upgrade: per service the
// active target set, the pause and the maintenance page. Requests in
// flight, held requests and the colors' windows are not state: they end
// with the process.
type State struct {
	Services map[string]ServiceState `json:"services"`
}

// ServiceState is one service's State.
type ServiceState struct {
	// Active is the active color and Addrs its target set; "" before the
	// first SetTargets.
	Active string   `json:"active,omitempty"`
	Addrs  []string `json:"addrs,omitempty"`

	Paused  bool          `json:"paused,omitempty"`
	MaxHold time.Duration `json:"max_hold,omitempty"`
	MaxHeld int           `json:"max_held,omitempty"`

	Maintenance bool `json:"maintenance,omitempty"`
	// Message is the page's text as the Switch answers it (the default
	// text when it was set with "").
	Message string `json:"message,omitempty"`
}

// State returns the Switch's state, every service it knows included.
func (sw *Switch) State() State {
	sw.mu.Lock()
	services := make([]*service, 0, len(sw.services))
	for _, s := range sw.services {
		services = append(services, s)
	}
	sw.mu.Unlock()
	st := State{Services: make(map[string]ServiceState, len(services))}
	for _, s := range services {
		var ss ServiceState
		if set := s.active.Load(); set != nil {
			ss.Active = set.color.name
			if len(set.replicas) > 0 {
				ss.Addrs = set.addrs()
			}
		}
		if h := s.hold.Load(); h != nil {
			ss.Paused, ss.MaxHold, ss.MaxHeld = true, h.maxHold, int(h.maxHeld)
		}
		if m := s.maint.Load(); m != nil {
			ss.Maintenance, ss.Message = true, m.message
		}
		st.Services[s.name] = ss
	}
	return st
}

// Restore makes the Switch's services what st says, creating those it
// does not know: the active target set (SetTargets, which does nothing
// when it is already so), the pause (on, off, or its limits changed) and
// the maintenance page (on with the message, or off). What already agrees
// is left as it is, its times and generation included, so Restore is
// cheap and may be called again and again: an old process follows the
// new one's state file with it during a handoff. A service with no
// Active keeps its targets (a Switch has no way back to none), and
// services st does not name are left alone.
//
// It converges every service it can and returns their errors joined
// (ErrInvalid for a malformed color, address, limit or message; ErrClosed).
func (sw *Switch) Restore(st State) error {
	names := make([]string, 0, len(st.Services))
	for name := range st.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		if err := sw.restoreService(name, st.Services[name]); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (sw *Switch) restoreService(name string, ss ServiceState) error {
	s, err := sw.serviceFor(name, true)
	if err != nil {
		return err
	}
	var errs []error
	if ss.Active != "" {
		if err := sw.SetTargets(name, ss.Active, ss.Addrs); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.restoreHold(ss); err != nil {
		errs = append(errs, err)
	}
	if err := sw.restoreMaintenance(s, ss); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *service) restoreHold(ss ServiceState) error {
	cur := s.hold.Load()
	if !ss.Paused {
		if cur != nil && s.hold.CompareAndSwap(cur, nil) {
			cur.release(false)
		}
		return nil
	}
	if cur != nil && cur.maxHold == ss.MaxHold && cur.maxHeld == int64(ss.MaxHeld) {
		return nil
	}
	h, err := newHold(ss.MaxHold, ss.MaxHeld)
	if err != nil {
		return err
	}
	// Other limits: the new hold replaces the old one in one step, so the
	// service is never unpaused between them. The old hold's requests are
	// released into the new one and wait there once more (see admit).
	if s.hold.CompareAndSwap(cur, h) && cur != nil {
		cur.release(false)
	}
	return nil
}

func (sw *Switch) restoreMaintenance(s *service, ss ServiceState) error {
	cur := s.maint.Load()
	if !ss.Maintenance {
		if cur != nil {
			return sw.Maintenance(s.name, false, "")
		}
		return nil
	}
	want := ss.Message
	if want == "" {
		want = DefaultMaintenanceMessage
	}
	if cur != nil && cur.message == want {
		return nil
	}
	return sw.Maintenance(s.name, true, ss.Message)
}

// SaveState writes st to path atomically (internal/atomicfile: a crash
// leaves the old file or the new one, never a part), readable by its owner
// only (0600).
func SaveState(path string, st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode switch state: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save switch state: %w", err)
	}
	return nil
}

// LoadState reads the state SaveState wrote. A missing file is an empty
// State (a first start); a file that does not parse is an error wrapping
// ErrInvalid.
func LoadState(path string) (State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("load switch state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("load switch state from %s: %w: %w", path, ErrInvalid, err)
	}
	return st, nil
}
