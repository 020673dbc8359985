package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/deployd/deployd/pkg/controller"
)

// bucketTraffic holds one trafficV1 per service that was ever paused or put
// in maintenance, keyed by the service's name.
const bucketTraffic = "traffic"

// GetTraffic returns the service's recorded pause and maintenance, or an
// error wrapping controller.ErrNotFound when none was recorded.
func (s *Store) GetTraffic(ctx context.Context, service string) (controller.TrafficState, error) {
	return getRecord(ctx, s, bucketTraffic, "traffic state", service, decodeTraffic)
}

// PutTraffic creates or replaces the record of st.Service.
func (s *Store) PutTraffic(ctx context.Context, st controller.TrafficState) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put traffic state of %q: %w", st.Service, err)
	}
	if st.Service == "" {
		return errors.New("put traffic state: empty service")
	}
	v, err := json.Marshal(newTrafficV1(st))
	if err != nil {
		return fmt.Errorf("encode traffic state of %q: %w", st.Service, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketTraffic)).Put([]byte(st.Service), v)
	})
	if err != nil {
		return fmt.Errorf("put traffic state of %q: %w", st.Service, err)
	}
	return nil
}

func decodeTraffic(service string, v []byte) (controller.TrafficState, error) {
	var r trafficV1
	if err := json.Unmarshal(v, &r); err != nil {
		return controller.TrafficState{}, fmt.Errorf("decode traffic state of %q: %w", service, err)
	}
	return r.state(), nil
}
