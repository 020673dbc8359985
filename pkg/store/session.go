package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketSessions holds one sessionV1 per status page login, keyed by the
// digest of the session's id; the id itself is never stored.
const bucketSessions = "sessions"

// SessionRecord is a status page login as the store keeps it. Key is the
// hex SHA-256 of the session id, TokenTag names the token's secret without
// revealing it, and CSRF is the session's CSRF token, which is of no use
// without the id.
type SessionRecord struct {
	Key      string
	Token    string
	TokenTag string
	CSRF     string
	Created  time.Time
	Expires  time.Time
}

type sessionV1 struct {
	Token    string    `json:"token"`
	TokenTag string    `json:"token_tag"`
	CSRF     string    `json:"csrf"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
}

// PutSession creates or replaces the session of r.Key.
func (s *Store) PutSession(ctx context.Context, r SessionRecord) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put session: %w", err)
	}
	if r.Key == "" {
		return errors.New("put session: empty key")
	}
	v, err := json.Marshal(sessionV1{Token: r.Token, TokenTag: r.TokenTag, CSRF: r.CSRF, Created: r.Created, Expires: r.Expires})
	if err != nil {
		return fmt.Errorf("encode session of %s: %w", r.Token, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketSessions)).Put([]byte(r.Key), v)
	})
	if err != nil {
		return fmt.Errorf("put session of %s: %w", r.Token, err)
	}
	return nil
}

// DeleteSessions removes the sessions of keys in one transaction; unknown
// keys are not an error.
func (s *Store) DeleteSessions(ctx context.Context, keys ...string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete sessions: %w", err)
	}
	if len(keys) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketSessions))
		for _, k := range keys {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete sessions: %w", err)
	}
	return nil
}

// ListSessions returns every stored session, expired ones included, in
// key order.
func (s *Store) ListSessions(ctx context.Context) ([]SessionRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	var out []SessionRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketSessions)).ForEach(func(k, v []byte) error {
			var r sessionV1
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode session %.8s…: %w", k, err)
			}
			out = append(out, SessionRecord{Key: string(k), Token: r.Token, TokenTag: r.TokenTag,
				CSRF: r.CSRF, Created: r.Created, Expires: r.Expires})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}
