package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"
)

var alice = Identity{Name: "alice", Role: RoleOperator}

func TestSessions_CreateThenGet(t *testing.T) {
	clock := newFakeClock()
	s := NewSessions(12*time.Hour, clock.Now)
	sess := mustCreate(t, s, alice)
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
		sess := mustCreate(t, s, alice)
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
			sess := mustCreate(t, s, alice)
			clock.Advance(tt.after)
			if _, ok := s.Get(sess.ID); ok != tt.wantOK {
				t.Errorf("Get after %v: ok = %v, want %v", tt.after, ok, tt.wantOK)
			}
		})
	}
}

func TestSessions_RevokeEndsOnlyThatSession(t *testing.T) {
	s := NewSessions(time.Hour, newFakeClock().Now)
	a, b := mustCreate(t, s, alice), mustCreate(t, s, alice)
	mustRevoke(t, s, a.ID)
	if _, ok := s.Get(a.ID); ok {
		t.Error("revoked session still valid")
	}
	if _, ok := s.Get(b.ID); !ok {
		t.Error("other session of the same identity revoked too")
	}
	mustRevoke(t, s, a.ID) // twice is fine
	mustRevoke(t, s, "never-issued")
}

func TestSessions_UnknownIDsAreRefused(t *testing.T) {
	s := NewSessions(time.Hour, newFakeClock().Now)
	sess := mustCreate(t, s, alice)
	for _, id := range []string{"", "x", sess.CSRF, sess.ID[:len(sess.ID)-1]} {
		if _, ok := s.Get(id); ok {
			t.Errorf("Get(%q) succeeded, want refused", id)
		}
	}
}

func TestSessions_ConcurrentUse(t *testing.T) {
	s := newSessions(SessionOptions{TTL: time.Hour, Now: newFakeClock().Now, PerToken: 50})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				sess, err := s.Create(t.Context(), Identity{Name: fmt.Sprint(i), Role: RoleViewer})
				if err != nil {
					t.Error(err)
					return
				}
				s.Get(sess.ID)
				if err := s.Revoke(t.Context(), sess.ID); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n := s.count(); n != 0 {
		t.Errorf("count = %d, want 0", n)
	}
}

func mustCreate(t *testing.T, s *Sessions, id Identity) Session {
	t.Helper()
	sess, err := s.Create(t.Context(), id)
	if err != nil {
		t.Fatalf("Create(%s): %v", id.Name, err)
	}
	return sess
}

func mustRevoke(t *testing.T, s *Sessions, id string) {
	t.Helper()
	if err := s.Revoke(t.Context(), id); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
}

// A token that logs in again and again only ever ends its own oldest
// sessions; every other token's sessions stay valid.
func TestSessions_FloodOfOneTokenNeverEndsAnothers(t *testing.T) {
	s := newSessions(SessionOptions{TTL: time.Hour, Now: newFakeClock().Now, PerToken: 5})
	bob := Identity{Name: "bob", Role: RoleViewer}
	victim := mustCreate(t, s, alice)
	var own []Session
	for range 10000 {
		own = append(own, mustCreate(t, s, bob))
	}
	if _, ok := s.Get(victim.ID); !ok {
		t.Fatal("alice's session ended by bob's logins")
	}
	if n := s.count(); n != 6 {
		t.Errorf("sessions held = %d, want 6 (alice's one and bob's cap of 5)", n)
	}
	for i, sess := range own {
		_, ok := s.Get(sess.ID)
		if want := i >= len(own)-5; ok != want {
			t.Errorf("bob's session %d valid = %v, want %v (only the newest 5 live)", i, ok, want)
		}
	}
}

func TestSessions_CapDropsTheTokensExpiredSessionsFirst(t *testing.T) {
	clock := newFakeClock()
	s := newSessions(SessionOptions{TTL: time.Hour, Now: clock.Now, PerToken: 3})
	mustCreate(t, s, alice)
	mustCreate(t, s, alice)
	clock.Advance(2 * time.Hour)
	live := mustCreate(t, s, alice)
	if n := s.count(); n != 1 {
		t.Errorf("count = %d, want 1 (expired sessions dropped)", n)
	}
	if _, ok := s.Get(live.ID); !ok {
		t.Error("new session not found")
	}
}

// memSessionStore is a SessionStore in a map, for tests.
type memSessionStore struct {
	mu   sync.Mutex
	recs map[string]StoredSession
	fail error
}

func newMemSessionStore() *memSessionStore {
	return &memSessionStore{recs: map[string]StoredSession{}}
}

func (m *memSessionStore) PutSession(_ context.Context, s StoredSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.recs[s.Key] = s
	return nil
}

func (m *memSessionStore) DeleteSessions(_ context.Context, keys ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.recs, k)
	}
	return nil
}

func (m *memSessionStore) ListSessions(context.Context) ([]StoredSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []StoredSession
	for _, r := range m.recs {
		out = append(out, r)
	}
	return out, nil
}

func sessionTokens(t *testing.T, tokens ...Token) *Authenticator {
	t.Helper()
	log, _ := logtest.NewNullLogger()
	return NewAuthenticator(tokens, log)
}

// A restart (a second OpenSessions on the same store) keeps the sessions
// that were valid: same identity, same CSRF token, same expiry.
func TestOpenSessions_RestartKeepsSessions(t *testing.T) {
	clock := newFakeClock()
	store := newMemSessionStore()
	tokens := sessionTokens(t, Token{Name: "alice", Role: RoleOperator, Secret: "alice-secret-0123456789"})
	o := SessionOptions{TTL: time.Hour, Now: clock.Now, Tokens: tokens, Store: store}
	before, err := OpenSessions(t.Context(), o)
	if err != nil {
		t.Fatalf("OpenSessions: %v", err)
	}
	sess := mustCreate(t, before, alice)
	revoked := mustCreate(t, before, alice)
	mustRevoke(t, before, revoked.ID)

	after, err := OpenSessions(t.Context(), o)
	if err != nil {
		t.Fatalf("OpenSessions after restart: %v", err)
	}
	got, ok := after.Get(sess.ID)
	if !ok || got != sess {
		t.Fatalf("Get after restart = %+v, %v; want %+v", got, ok, sess)
	}
	if _, ok := after.Get(revoked.ID); ok {
		t.Error("a session revoked before the restart is valid after it")
	}
	for key, rec := range store.recs {
		if key == sess.ID || rec.Key == sess.ID || rec.CSRF == sess.ID {
			t.Errorf("store holds the session id itself: %+v", rec)
		}
	}
}

func TestOpenSessions_DropsWhatNoLongerHolds(t *testing.T) {
	const secret = "alice-secret-0123456789"
	tests := []struct {
		name    string
		advance time.Duration
		tokens  []Token
	}{
		{"expired", 2 * time.Hour, []Token{{Name: "alice", Role: RoleOperator, Secret: secret}}},
		{"token removed", 0, []Token{{Name: "bob", Role: RoleOperator, Secret: secret}}},
		{"token rotated", 0, []Token{{Name: "alice", Role: RoleOperator, Secret: "alice-new-secret-0123456789"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			store := newMemSessionStore()
			o := SessionOptions{TTL: time.Hour, Now: clock.Now, Store: store,
				Tokens: sessionTokens(t, Token{Name: "alice", Role: RoleOperator, Secret: secret})}
			first, err := OpenSessions(t.Context(), o)
			if err != nil {
				t.Fatalf("OpenSessions: %v", err)
			}
			sess := mustCreate(t, first, alice)
			clock.Advance(tt.advance)
			o.Tokens = sessionTokens(t, tt.tokens...)
			second, err := OpenSessions(t.Context(), o)
			if err != nil {
				t.Fatalf("OpenSessions again: %v", err)
			}
			if _, ok := second.Get(sess.ID); ok {
				t.Fatal("session still valid")
			}
			if n := len(store.recs); n != 0 {
				t.Errorf("store still holds %d sessions, want 0", n)
			}
		})
	}
}

// A role changed in the config applies to restored sessions: the role is
// the token's now, not the one stored.
func TestOpenSessions_RoleComesFromTheTokenNow(t *testing.T) {
	store := newMemSessionStore()
	tok := Token{Name: "alice", Role: RoleOperator, Secret: "alice-secret-0123456789"}
	o := SessionOptions{TTL: time.Hour, Now: newFakeClock().Now, Store: store, Tokens: sessionTokens(t, tok)}
	first, err := OpenSessions(t.Context(), o)
	if err != nil {
		t.Fatalf("OpenSessions: %v", err)
	}
	sess := mustCreate(t, first, alice)
	tok.Role = RoleViewer
	o.Tokens = sessionTokens(t, tok)
	second, err := OpenSessions(t.Context(), o)
	if err != nil {
		t.Fatalf("OpenSessions again: %v", err)
	}
	if got, ok := second.Get(sess.ID); !ok || got.Role != RoleViewer {
		t.Fatalf("Get = %+v, %v; want a viewer session", got, ok)
	}
}

func TestSessions_FailedStoreWriteCreatesNoSession(t *testing.T) {
	store := newMemSessionStore()
	store.fail = errors.New("disk full")
	s, err := OpenSessions(t.Context(), SessionOptions{TTL: time.Hour, Now: newFakeClock().Now, Store: store,
		Tokens: sessionTokens(t, Token{Name: "alice", Role: RoleOperator, Secret: "alice-secret-0123456789"})})
	if err != nil {
		t.Fatalf("OpenSessions: %v", err)
	}
	if _, err := s.Create(t.Context(), alice); !errors.Is(err, store.fail) {
		t.Fatalf("Create = %v, want the store's error", err)
	}
	if n := s.count(); n != 0 {
		t.Errorf("sessions held = %d, want 0", n)
	}
}
