package main

import (
	"context"

	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/store"
)

// sessionStore keeps the status page's sessions in the store, so that a
// restart does not log operators out. It only translates: auth owns what a
// session is, store how it is written, and neither imports the other.
type sessionStore struct{ st *store.Store }

var _ auth.SessionStore = sessionStore{}

func (s sessionStore) PutSession(ctx context.Context, r auth.StoredSession) error {
	return s.st.PutSession(ctx, store.SessionRecord(r))
}

func (s sessionStore) DeleteSessions(ctx context.Context, keys ...string) error {
	return s.st.DeleteSessions(ctx, keys...)
}

func (s sessionStore) ListSessions(ctx context.Context) ([]auth.StoredSession, error) {
	rs, err := s.st.ListSessions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]auth.StoredSession, len(rs))
	for i, r := range rs {
		out[i] = auth.StoredSession(r)
	}
	return out, nil
}
