package auth

import (
	"container/list"
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

const (
	// CookieName is the session cookie of the status page.
	CookieName = "deployd_session"
	// CSRFHeader carries the session's CSRF token on requests made by the
	// page's scripts; CSRFField carries it in posted forms.
	CSRFHeader = "X-CSRF-Token"
	CSRFField  = "csrf_token"

	// maxSessions bounds memory whatever the number of logins; past it the
	// oldest session is dropped, which at worst logs someone out early.
	maxSessions = 10000
)

// Session is a logged-in browser. ID is the cookie's value and CSRF the
// token its state-changing requests must echo; both are 256 random bits.
type Session struct {
	ID string
	Identity
	CSRF    string
	Expires time.Time
}

// Sessions is an in-memory session store, safe for concurrent use. A
// restart logs everyone out, which is the safe direction for a deploy
// controller. It owns no goroutine: expired sessions are dropped when met.
type Sessions struct {
	ttl time.Duration
	now func() time.Time
	max int

	mu sync.Mutex
	// order holds *Session oldest first; with one TTL for all, it is also
	// expiry order, so expired sessions collect at its front.
	order *list.List
	byID  map[string]*list.Element
}

// NewSessions returns a store whose sessions last ttl from their creation
// on the clock now.
func NewSessions(ttl time.Duration, now func() time.Time) *Sessions {
	return newSessions(ttl, now, maxSessions)
}

func newSessions(ttl time.Duration, now func() time.Time, max int) *Sessions {
	return &Sessions{ttl: ttl, now: now, max: max, order: list.New(), byID: make(map[string]*list.Element)}
}

// TTL is how long a session lasts; the cookie's Max-Age.
func (s *Sessions) TTL() time.Duration { return s.ttl }

// Create starts a session for id.
func (s *Sessions) Create(id Identity) Session {
	sess := Session{ID: randomToken(), Identity: id, CSRF: randomToken(), Expires: s.now().Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropExpired()
	for s.order.Len() >= s.max {
		s.remove(s.order.Front())
	}
	stored := sess
	s.byID[sess.ID] = s.order.PushBack(&stored)
	return sess
}

// Get returns the session with this id unless it is unknown, revoked or
// expired; an expired session is dropped.
func (s *Sessions) Get(id string) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[id]
	if !ok {
		return Session{}, false
	}
	sess := e.Value.(*Session)
	if !s.now().Before(sess.Expires) {
		s.remove(e)
		return Session{}, false
	}
	return *sess, true
}

// Revoke ends a session; an unknown id is not an error, so logout is
// idempotent.
func (s *Sessions) Revoke(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.byID[id]; ok {
		s.remove(e)
	}
}

// count is the number of stored sessions, expired ones not yet dropped
// included.
func (s *Sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

func (s *Sessions) dropExpired() {
	now := s.now()
	for e := s.order.Front(); e != nil; e = s.order.Front() {
		if now.Before(e.Value.(*Session).Expires) {
			return
		}
		s.remove(e)
	}
}

func (s *Sessions) remove(e *list.Element) {
	delete(s.byID, e.Value.(*Session).ID)
	s.order.Remove(e)
}

func randomToken() string {
	var b [32]byte
	// crypto/rand.Read never returns an error (Go 1.24+).
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
