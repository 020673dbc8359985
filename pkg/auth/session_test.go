package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

var alice = Identity{Name: "alice", Role: RoleOperator}

func TestSessions_CreateThenGet(t *testing.T) {
	clock := newFakeClock()
	s := NewSessions(12*time.Hour, clock.Now)
	sess := s.Create(alice)
	if sess.Identity != alice {
		t.Errorf("Identity = %+v, want %+v", sess.Identity, alice)
	}
	if want := clock.Now().Add(12 * time.Hour); !sess.Expires.Equal(want) {
		t.Errorf("Expires = %v, want %v", sess.Expires, want)
	}
	if len(sess.ID) < 43 || len(sess.CSRF) < 43 || sess.ID == sess.CSRF {
		t.Errorf("ID %q and CSRF %q: want two distinct 256-bit tokens", sess.ID, sess.CSRF)
	}
	got, ok := s.Get(sess.ID)
	if !ok || got != sess {
		t.Errorf("Get = %+v, %v; want %+v", got, ok, sess)
	}
	if s.TTL() != 12*time.Hour {
		t.Errorf("TTL = %v, want 12h", s.TTL())
	}
}

func TestSessions_IDsAreUnique(t *testing.T) {
	s := NewSessions(time.Hour, newFakeClock().Now)
	seen := map[string]bool{}
	for range 1000 {
		sess := s.Create(alice)
		if seen[sess.ID] || seen[sess.CSRF] {
			t.Fatalf("token repeated after %d sessions", len(seen)/2)
		}
		seen[sess.ID], seen[sess.CSRF] = true, true
	}
}

func TestSessions_Expiry(t *testing.T) {
	tests := []struct {
		name   string
		after  time.Duration
		wantOK bool
	}{
		{"fresh", 0, true},
		{"just before expiry", time.Hour - time.Nanosecond, true},
		{"at expiry", time.Hour, false},
		{"long after", 48 * time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := NewSessions(time.Hour, clock.Now)
			sess := s.Create(alice)
			clock.Advance(tt.after)
			if _, ok := s.Get(sess.ID); ok != tt.wantOK {
				t.Errorf("Get after %v: ok = %v, want %v", tt.after, ok, tt.wantOK)
			}
			if !tt.wantOK && s.count() != 0 {
				t.Errorf("expired session still stored: count = %d, want 0", s.count())
			}
		})
	}
}

func TestSessions_RevokeEndsOnlyThatSession(t *testing.T) {
	s := NewSessions(time.Hour, newFakeClock().Now)
	a, b := s.Create(alice), s.Create(alice)
	s.Revoke(a.ID)
	if _, ok := s.Get(a.ID); ok {
		t.Error("revoked session still valid")
	}
	if _, ok := s.Get(b.ID); !ok {
		t.Error("other session of the same identity revoked too")
	}
	s.Revoke(a.ID) // twice is fine
	s.Revoke("never-issued")
}

func TestSessions_UnknownIDsAreRefused(t *testing.T) {
	s := NewSessions(time.Hour, newFakeClock().Now)
	sess := s.Create(alice)
	for _, id := range []string{"", "x", sess.CSRF, sess.ID[:len(sess.ID)-1]} {
		if _, ok := s.Get(id); ok {
			t.Errorf("Get(%q) succeeded, want refused", id)
		}
	}
}

func TestSessions_FullStoreEvictsOldest(t *testing.T) {
	clock := newFakeClock()
	s := newSessions(time.Hour, clock.Now, 3)
	var ids []string
	for range 4 {
		ids = append(ids, s.Create(alice).ID)
		clock.Advance(time.Second)
	}
	if n := s.count(); n != 3 {
		t.Errorf("count = %d, want 3", n)
	}
	if _, ok := s.Get(ids[0]); ok {
		t.Error("oldest session survived eviction")
	}
	for _, id := range ids[1:] {
		if _, ok := s.Get(id); !ok {
			t.Errorf("session %s evicted, want kept", id)
		}
	}
}

func TestSessions_CreateDropsExpiredBeforeEvicting(t *testing.T) {
	clock := newFakeClock()
	s := newSessions(time.Hour, clock.Now, 3)
	s.Create(alice)
	s.Create(alice)
	clock.Advance(2 * time.Hour)
	live := s.Create(alice)
	if n := s.count(); n != 1 {
		t.Errorf("count = %d, want 1 (expired sessions dropped)", n)
	}
	if _, ok := s.Get(live.ID); !ok {
		t.Error("new session not found")
	}
}

func TestSessions_ConcurrentUse(t *testing.T) {
	s := newSessions(time.Hour, newFakeClock().Now, 50)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				sess := s.Create(Identity{Name: fmt.Sprint(i), Role: RoleViewer})
				s.Get(sess.ID)
				s.Revoke(sess.ID)
			}
		}()
	}
	wg.Wait()
	if n := s.count(); n != 0 {
		t.Errorf("count = %d, want 0", n)
	}
}
