package store

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/deployd/deployd/pkg/controller"
)

const (
	defaultAuditLimit = 50
	maxAuditLimit     = 1000
)

// AppendAudit adds e to the audit trail. Its key is the bucket's next
// sequence number, zero-padded to 16 digits so that byte order is append
// order; an e without an ID gets that key as its ID.
func (s *Store) AppendAudit(ctx context.Context, e controller.AuditEntry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("append audit entry: %w", err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error { return appendAudit(tx, e) })
	if err != nil {
		return fmt.Errorf("append audit entry: %w", err)
	}
	return nil
}

// ListAudit returns up to limit audit entries, newest first. A limit <= 0
// means 50; limits are capped at 1000. An empty trail is an empty slice.
func (s *Store) ListAudit(ctx context.Context, limit int) ([]controller.AuditEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	limit = min(limit, maxAuditLimit)
	out := []controller.AuditEntry{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketAudit)).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			e, err := decodeAudit(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	return out, nil
}

func appendAudit(tx *bolt.Tx, e controller.AuditEntry) error {
	b := tx.Bucket([]byte(bucketAudit))
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("next sequence: %w", err)
	}
	key := fmt.Sprintf("%016d", seq)
	if e.ID == "" {
		e.ID = key
	}
	v, err := json.Marshal(newAuditV1(e))
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return b.Put([]byte(key), v)
}
