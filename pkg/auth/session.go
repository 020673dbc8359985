package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
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

	// DefaultSessionsPerToken bounds the live sessions of one token. Past
	// it that token's oldest session ends: a flood of logins with one token
	// only ever logs out that token's own browsers. With tokens coming from
	// the config, it also bounds the whole store.
	DefaultSessionsPerToken = 10
)

// Session is a logged-in browser. ID is the cookie's value and CSRF the
// token its state-changing requests must echo; both are 256 random bits.
type Session struct {
	ID string
	Identity
	CSRF    string
	Expires time.Time
}

// StoredSession is what a SessionStore keeps of a session. Key is the hex
// SHA-256 of the session's id: whoever reads the store cannot present it
// as a cookie. TokenTag ties the session to the token secret it was made
// with, so that rotating or removing a token ends its sessions at the next
// start.
type StoredSession struct {
	Key      string
	Token    string
	TokenTag string
	CSRF     string
	Created  time.Time
	Expires  time.Time
}

// SessionStore persists sessions across restarts. Errors are returned as
// they come; Sessions wraps them.
type SessionStore interface {
	PutSession(ctx context.Context, s StoredSession) error
	// DeleteSessions removes the sessions of these keys; unknown keys are
	// not an error.
	DeleteSessions(ctx context.Context, keys ...string) error
	// ListSessions returns every stored session, expired ones included.
	ListSessions(ctx context.Context) ([]StoredSession, error)
}

// SessionOptions configures OpenSessions.
type SessionOptions struct {
	// TTL is how long a session lasts from its creation.
	TTL time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// PerToken caps the live sessions of one token; 0 means
	// DefaultSessionsPerToken.
	PerToken int
	// Tokens resolves stored sessions to the tokens configured now, by
	// name and tag; required with Store.
	Tokens *Authenticator
	// Store, when set, keeps sessions across restarts. Nil: memory only.
	Store SessionStore
}

// Sessions is the session store of the status page, safe for concurrent
// use. Lookups are served from memory; with a SessionStore, creations and
// revocations are written through to it. It owns no goroutine: expired
// sessions are dropped when met.
type Sessions struct {
	ttl      time.Duration
	now      func() time.Time
	perToken int
	tokens   *Authenticator
	store    SessionStore

	mu sync.Mutex
	// byKey maps the digest of a session id to the session; byToken holds
	// each token's keys, oldest first.
	byKey   map[string]*Session
	byToken map[string][]string
}

// NewSessions returns a memory-only store whose sessions last ttl from
// their creation on the clock now, at most DefaultSessionsPerToken per
// token.
func NewSessions(ttl time.Duration, now func() time.Time) *Sessions {
	return newSessions(SessionOptions{TTL: ttl, Now: now})
}

// OpenSessions returns a store configured by o and, with o.Store, loads
// the stored sessions that are still good: unexpired, and of a token that
// is still configured with the same secret. It deletes the others from
// o.Store.
func OpenSessions(ctx context.Context, o SessionOptions) (*Sessions, error) {
	if o.Store != nil && o.Tokens == nil {
		return nil, errors.New("open sessions: a session store needs the tokens to resolve its sessions")
	}
	s := newSessions(o)
	if s.store == nil {
		return s, nil
	}
	stored, err := s.store.ListSessions(ctx)
	if err != nil {
		return nil, fmt.Errorf("load sessions: %w", err)
	}
	now := s.now()
	var stale []string
	// Oldest first, so that each token's order and cap hold as if its
	// sessions had been created in this process.
	sortByCreated(stored)
	for _, st := range stored {
		id, tag, ok := s.tokens.byName(st.Token)
		if !ok || tag != st.TokenTag || !now.Before(st.Expires) || st.Key == "" {
			stale = append(stale, st.Key)
			continue
		}
		sess := &Session{ID: "", Identity: id, CSRF: st.CSRF, Expires: st.Expires}
		stale = append(stale, s.insert(st.Key, sess)...)
	}
	if len(stale) > 0 {
		if err := s.store.DeleteSessions(ctx, stale...); err != nil {
			return nil, fmt.Errorf("drop stale sessions: %w", err)
		}
	}
	return s, nil
}

func newSessions(o SessionOptions) *Sessions {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	per := o.PerToken
	if per <= 0 {
		per = DefaultSessionsPerToken
	}
	return &Sessions{
		ttl: o.TTL, now: now, perToken: per, tokens: o.Tokens, store: o.Store,
		byKey: make(map[string]*Session), byToken: make(map[string][]string),
	}
}

// TTL is how long a session lasts; the cookie's Max-Age.
func (s *Sessions) TTL() time.Duration { return s.ttl }

// Create starts a session for id. With a SessionStore the session is
// stored before it is returned, and an error means no session exists.
// When id's token has PerToken sessions already, its oldest one ends.
func (s *Sessions) Create(ctx context.Context, id Identity) (Session, error) {
	sess := Session{ID: randomToken(), Identity: id, CSRF: randomToken(), Expires: s.now().Add(s.ttl)}
	key := sessionKey(sess.ID)
	if s.store != nil {
		_, tag, _ := s.tokens.byName(id.Name)
		err := s.store.PutSession(ctx, StoredSession{
			Key: key, Token: id.Name, TokenTag: tag, CSRF: sess.CSRF, Created: s.now(), Expires: sess.Expires,
		})
		if err != nil {
			return Session{}, fmt.Errorf("store session of %s: %w", id.Name, err)
		}
	}
	stored := sess
	// The id itself is not kept: lookups go by its digest.
	stored.ID = ""
	s.mu.Lock()
	evicted := s.insert(key, &stored)
	s.mu.Unlock()
	if err := s.forget(ctx, evicted); err != nil {
		return Session{}, err
	}
	return sess, nil
}

// insert adds sess under key and returns the keys it pushed out: the
// token's expired sessions and, past the cap, its oldest. The caller holds
// mu, or owns s alone.
func (s *Sessions) insert(key string, sess *Session) []string {
	now := s.now()
	var out []string
	keys := s.byToken[sess.Name][:0:0]
	for _, k := range s.byToken[sess.Name] {
		if other, ok := s.byKey[k]; ok && now.Before(other.Expires) {
			keys = append(keys, k)
			continue
		}
		delete(s.byKey, k)
		out = append(out, k)
	}
	for len(keys) >= s.perToken {
		delete(s.byKey, keys[0])
		out = append(out, keys[0])
		keys = keys[1:]
	}
	s.byKey[key] = sess
	s.byToken[sess.Name] = append(keys, key)
	return out
}

// Get returns the session with this id unless it is unknown, revoked or
// expired. It reads memory only.
func (s *Sessions) Get(id string) (Session, bool) {
	if id == "" {
		return Session{}, false
	}
	key := sessionKey(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byKey[key]
	if !ok || !s.now().Before(sess.Expires) {
		// An expired session stays listed until its token's next login
		// or the next start drops it, in memory and in the store alike.
		return Session{}, false
	}
	out := *sess
	out.ID = id
	return out, true
}

// Revoke ends one session, and only that one; an unknown id is not an
// error, so logout is idempotent.
func (s *Sessions) Revoke(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	key := sessionKey(id)
	s.mu.Lock()
	sess, ok := s.byKey[key]
	if ok {
		delete(s.byKey, key)
		keys := s.byToken[sess.Name]
		for i, k := range keys {
			if k == key {
				s.byToken[sess.Name] = append(keys[:i:i], keys[i+1:]...)
				break
			}
		}
	}
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return s.forget(ctx, []string{key})
}

// forget deletes keys from the SessionStore, if any.
func (s *Sessions) forget(ctx context.Context, keys []string) error {
	if s.store == nil || len(keys) == 0 {
		return nil
	}
	if err := s.store.DeleteSessions(ctx, keys...); err != nil {
		return fmt.Errorf("delete sessions: %w", err)
	}
	return nil
}

// count is the number of sessions held in memory, expired ones not yet
// dropped included.
func (s *Sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byKey)
}

// sessionKey is the digest a session is filed under: the id itself is
// never stored, and map lookups never compare it.
func sessionKey(id string) string {
	d := sha256.Sum256([]byte(id))
	return hex.EncodeToString(d[:])
}

func sortByCreated(ss []StoredSession) {
	slices.SortStableFunc(ss, func(a, b StoredSession) int { return a.Created.Compare(b.Created) })
}

func randomToken() string {
	var b [32]byte
	// crypto/rand.Read never returns an error (Go 1.24+).
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
