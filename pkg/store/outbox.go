package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/deployd/deployd/pkg/controller"
)

// bucketOutbox holds the notifications not yet delivered: one nested
// bucket per target, keyed by the notification's id. The ids come from
// the outbox bucket's sequence, zero-padded to 16 digits, so that byte
// order is the order they were added in, across restarts too.
const bucketOutbox = "notifications"

// AddNotification stores n as pending for each of targets under one new
// id, in one transaction, and returns that id.
func (s *Store) AddNotification(ctx context.Context, targets []string, n controller.Notification) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("add notification: %w", err)
	}
	if len(targets) == 0 {
		return "", errors.New("add notification: no target")
	}
	v, err := json.Marshal(pendingV1{Notification: newNotificationV1(n), AddedAt: s.now().UTC()})
	if err != nil {
		return "", fmt.Errorf("encode notification %s: %w", n.Kind, err)
	}
	var id string
	err = s.db.Update(func(tx *bolt.Tx) error {
		top := tx.Bucket([]byte(bucketOutbox))
		seq, err := top.NextSequence()
		if err != nil {
			return fmt.Errorf("next sequence: %w", err)
		}
		id = fmt.Sprintf("%016d", seq)
		for _, t := range targets {
			if t == "" {
				return errors.New("empty target name")
			}
			b, err := top.CreateBucketIfNotExists([]byte(t))
			if err != nil {
				return fmt.Errorf("target %q: %w", t, err)
			}
			if err := b.Put([]byte(id), v); err != nil {
				return fmt.Errorf("target %q: %w", t, err)
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("add notification %s: %w", n.Kind, err)
	}
	return id, nil
}

// DeleteNotification forgets the notification id of target: it was
// delivered or given up. Deleting one that is not stored is no error.
func (s *Store) DeleteNotification(ctx context.Context, target, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete notification %s of %q: %w", id, target, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		top := tx.Bucket([]byte(bucketOutbox))
		b := top.Bucket([]byte(target))
		if b == nil {
			return nil
		}
		if err := b.Delete([]byte(id)); err != nil {
			return err
		}
		// A target's bucket goes with its last notification, so targets
		// removed from the configuration leave nothing behind.
		if k, _ := b.Cursor().First(); k == nil {
			return top.DeleteBucket([]byte(target))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete notification %s of %q: %w", id, target, err)
	}
	return nil
}

// PendingNotifications returns every stored notification by target, then
// by id; sorting a target's ids gives the order they were added in. An
// empty outbox is an empty map.
func (s *Store) PendingNotifications(ctx context.Context) (map[string]map[string]controller.Notification, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pending notifications: %w", err)
	}
	out := map[string]map[string]controller.Notification{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketOutbox)).ForEachBucket(func(target []byte) error {
			b := tx.Bucket([]byte(bucketOutbox)).Bucket(target)
			notes := map[string]controller.Notification{}
			err := b.ForEach(func(k, v []byte) error {
				var p pendingV1
				if err := json.Unmarshal(v, &p); err != nil {
					return fmt.Errorf("decode notification %s of %q: %w", k, target, err)
				}
				notes[string(k)] = p.Notification.notification()
				return nil
			})
			if err != nil {
				return err
			}
			out[string(target)] = notes
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("pending notifications: %w", err)
	}
	return out, nil
}
