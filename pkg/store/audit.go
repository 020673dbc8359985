package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

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

// ListAudit returns up to limit audit entries older than the entry with ID
// before ("" starts at the newest), newest first. A limit <= 0 means 50;
// limits are capped at 1000. An empty page is an empty slice.
func (s *Store) ListAudit(ctx context.Context, before string, limit int) ([]controller.AuditEntry, error) {
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
		k, v := c.Last()
		if before != "" {
			// Keys are fixed-width digits, so byte order is number order
			// once the cursor is padded like them.
			k, v = c.Seek([]byte(auditKey(before)))
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && string(k) >= auditKey(before) {
				k, v = c.Prev()
			}
		}
		for ; k != nil && len(out) < limit; k, v = c.Prev() {
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

// auditKey pads an entry ID to the width of the bucket's keys.
func auditKey(id string) string {
	if len(id) >= auditKeyWidth {
		return id
	}
	return strings.Repeat("0", auditKeyWidth-len(id)) + id
}

const (
	auditKeyWidth = 16
	// pruneBatch bounds one transaction of PruneAudit, so appends (one
	// per request) never wait long behind a large first pass.
	pruneBatch = 5000
)

// PruneAudit deletes the audit entries older than olderThan (unless it is
// zero) and, when keep > 0, the oldest entries beyond the newest keep. It
// returns how many it deleted. Entries are appended in time order, so the
// age cut stops at the first entry young enough.
func (s *Store) PruneAudit(ctx context.Context, olderThan time.Time, keep int) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("prune audit entries: %w", err)
		}
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte(bucketAudit))
			excess := 0
			if keep > 0 {
				excess = b.Stats().KeyN - keep
			}
			var doomed [][]byte
			c := b.Cursor()
			for k, v := c.First(); k != nil && len(doomed) < pruneBatch; k, v = c.Next() {
				if len(doomed) >= excess {
					if olderThan.IsZero() {
						break
					}
					e, err := decodeAudit(string(k), v)
					if err != nil {
						return err
					}
					if !e.Time.Before(olderThan) {
						break
					}
				}
				doomed = append(doomed, bytes.Clone(k))
			}
			for _, k := range doomed {
				if err := b.Delete(k); err != nil {
					return fmt.Errorf("delete %s: %w", k, err)
				}
			}
			n = len(doomed)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("prune audit entries: %w", err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

func appendAudit(tx *bolt.Tx, e controller.AuditEntry) error {
	b := tx.Bucket([]byte(bucketAudit))
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("next sequence: %w", err)
	}
	key := fmt.Sprintf("%0*d", auditKeyWidth, seq)
	if e.ID == "" {
		e.ID = key
	}
	v, err := json.Marshal(newAuditV1(e))
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return b.Put([]byte(key), v)
}
