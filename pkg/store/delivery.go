package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/deployd/deployd/pkg/controller"
)

const (
	// maxDeliveryKeyLen bounds a delivery key, which comes from a request
	// header: GitHub's delivery ids are 36 characters.
	maxDeliveryKeyLen = 200
	// deliveryTTL is how long a delivery is remembered. Webhook senders
	// retry for hours at most; a week leaves room for a manual redelivery.
	deliveryTTL = 7 * 24 * time.Hour
	// deliveryPruneScan is how many stored deliveries one PutDelivery
	// examines for expiry. Keys are random, not ordered by time, so expired
	// ones are found by a sweep that resumes where the last one stopped
	// (keyDeliveryPruneAfter in the meta bucket): each write pays a small,
	// fixed cost and the whole bucket is swept every len/scan writes.
	deliveryPruneScan     = 64
	keyDeliveryPruneAfter = "deliveries_prune_after"
)

func checkDeliveryKey(key string) error {
	if key == "" {
		return controller.Errorf(controller.EINVALID, "empty delivery key")
	}
	if len(key) > maxDeliveryKeyLen {
		return controller.Errorf(controller.EINVALID, "delivery key is %d bytes long, at most %d are allowed", len(key), maxDeliveryKeyLen)
	}
	return nil
}

// GetDelivery returns the ID of the deployment the delivery key started.
// A key never seen, or seen more than deliveryTTL ago, wraps
// controller.ErrNotFound; an empty or overlong key is an EINVALID
// *controller.Error.
func (s *Store) GetDelivery(ctx context.Context, key string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("get delivery: %w", err)
	}
	if err := checkDeliveryKey(key); err != nil {
		return "", fmt.Errorf("get delivery: %w", err)
	}
	var d deliveryV1
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketDeliveries)).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("delivery %q: %w", key, controller.ErrNotFound)
		}
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("decode delivery %q: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	// An expired delivery the sweep has not reached yet must behave as a
	// pruned one, so that the replay window does not depend on the sweep.
	if s.expired(d.Time) {
		return "", fmt.Errorf("delivery %q: expired: %w", key, controller.ErrNotFound)
	}
	return d.DeploymentID, nil
}

// PutDelivery remembers that the delivery key started deploymentID,
// replacing any earlier record of key, and removes some expired deliveries
// in the same transaction. An empty or overlong key is an EINVALID
// *controller.Error.
func (s *Store) PutDelivery(ctx context.Context, key, deploymentID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put delivery: %w", err)
	}
	if err := checkDeliveryKey(key); err != nil {
		return fmt.Errorf("put delivery: %w", err)
	}
	if deploymentID == "" {
		return fmt.Errorf("put delivery %q: empty deployment id", key)
	}
	v, err := json.Marshal(deliveryV1{DeploymentID: deploymentID, Time: s.now().UTC()})
	if err != nil {
		return fmt.Errorf("encode delivery %q: %w", key, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte(bucketDeliveries)).Put([]byte(key), v); err != nil {
			return err
		}
		return s.pruneDeliveries(tx)
	})
	if err != nil {
		return fmt.Errorf("put delivery %q: %w", key, err)
	}
	return nil
}

func (s *Store) expired(t time.Time) bool { return s.now().Sub(t) > deliveryTTL }

// pruneDeliveries examines the next deliveryPruneScan deliveries after the
// last one examined, wrapping around once at the end, and deletes the
// expired ones. A value that cannot be decoded is deleted too: nothing
// could ever read it.
func (s *Store) pruneDeliveries(tx *bolt.Tx) error {
	b := tx.Bucket([]byte(bucketDeliveries))
	meta := tx.Bucket([]byte(bucketMeta))
	after := bytes.Clone(meta.Get([]byte(keyDeliveryPruneAfter)))

	c := b.Cursor()
	k, v := c.First()
	if after != nil {
		k, v = c.Seek(after)
		if k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	}
	var stale [][]byte
	var last []byte
	wrapped := after == nil
	for n := 0; n < deliveryPruneScan; n++ {
		if k == nil {
			if wrapped {
				break
			}
			wrapped = true
			if k, v = c.First(); k == nil {
				break
			}
		}
		var d deliveryV1
		if err := json.Unmarshal(v, &d); err != nil || s.expired(d.Time) {
			stale = append(stale, bytes.Clone(k))
		}
		last = bytes.Clone(k)
		k, v = c.Next()
	}
	// Deleted after the scan: deleting under a bbolt cursor makes its Next
	// skip an entry.
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("prune delivery %q: %w", k, err)
		}
	}
	if last == nil {
		return meta.Delete([]byte(keyDeliveryPruneAfter))
	}
	if err := meta.Put([]byte(keyDeliveryPruneAfter), last); err != nil {
		return fmt.Errorf("save prune position: %w", err)
	}
	return nil
}
