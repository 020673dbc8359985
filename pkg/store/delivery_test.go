package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/deployd/deployd/internal/xtest"
	"github.com/deployd/deployd/pkg/controller"
)

func newClockedStore(t *testing.T) (*Store, *xtest.Clock) {
	t.Helper()
	clock := xtest.NewClock(t0)
	s, err := Open(t.Context(), Options{Path: filepath.Join(t.TempDir(), "deployd.db"), Now: clock.Now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, clock
}

func TestDelivery_PutThenGetReturnsDeployment(t *testing.T) {
	s := newStore(t)
	tests := []struct {
		key, id string
	}{
		{"72d3162e-cc78-11e3-81ab-4c9367dc0958", "01JPD0000000000000000000A1"},
		{"idem/with spaces and ünïcode", "01JPD0000000000000000000A2"},
		{strings.Repeat("k", maxDeliveryKeyLen), "01JPD0000000000000000000A3"},
	}
	for _, tt := range tests {
		if err := s.PutDelivery(t.Context(), tt.key, tt.id); err != nil {
			t.Fatalf("PutDelivery(%q): %v", tt.key, err)
		}
	}
	for _, tt := range tests {
		got, err := s.GetDelivery(t.Context(), tt.key)
		if err != nil {
			t.Fatalf("GetDelivery(%q): %v", tt.key, err)
		}
		if got != tt.id {
			t.Fatalf("GetDelivery(%q) = %q, want %q", tt.key, got, tt.id)
		}
	}
}

func TestDelivery_StoredValueIsDeploymentAndTime(t *testing.T) {
	s, _ := newClockedStore(t)
	if err := s.PutDelivery(t.Context(), "k1", "dep-1"); err != nil {
		t.Fatalf("PutDelivery: %v", err)
	}
	var raw string
	if err := s.db.View(func(tx *bolt.Tx) error {
		raw = string(tx.Bucket([]byte(bucketDeliveries)).Get([]byte("k1")))
		return nil
	}); err != nil {
		t.Fatalf("View: %v", err)
	}
	want := `{"deployment_id":"dep-1","time":"2025-03-14T15:09:26.535897932Z"}`
	if raw != want {
		t.Fatalf("stored value = %s, want %s", raw, want)
	}
}

func TestDelivery_MissingWrapsErrNotFound(t *testing.T) {
	s := newStore(t)
	_, err := s.GetDelivery(t.Context(), "never-seen")
	if !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("err = %v, want one wrapping ErrNotFound", err)
	}
}

func TestDelivery_BadKeyIsInvalidAndStoresNothing(t *testing.T) {
	s := newStore(t)
	tests := []struct {
		name string
		key  string
	}{
		{"empty", ""},
		{"one byte too long", strings.Repeat("k", maxDeliveryKeyLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.PutDelivery(t.Context(), tt.key, "dep-1"); controller.ErrorCode(err) != controller.EINVALID {
				t.Fatalf("PutDelivery err = %v (code %q), want code %q", err, controller.ErrorCode(err), controller.EINVALID)
			}
			if _, err := s.GetDelivery(t.Context(), tt.key); controller.ErrorCode(err) != controller.EINVALID {
				t.Fatalf("GetDelivery err = %v (code %q), want code %q", err, controller.ErrorCode(err), controller.EINVALID)
			}
		})
	}
	if n := countDeliveries(t, s); n != 0 {
		t.Fatalf("deliveries stored = %d, want 0", n)
	}
	if err := s.PutDelivery(t.Context(), "k", ""); err == nil {
		t.Fatal("PutDelivery with an empty deployment id succeeded, want an error")
	}
}

func countDeliveries(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	if err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte(bucketDeliveries)).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatalf("View: %v", err)
	}
	return n
}

func TestDelivery_ExpiredIsNotFoundBeforeItIsPruned(t *testing.T) {
	s, clock := newClockedStore(t)
	if err := s.PutDelivery(t.Context(), "k1", "dep-1"); err != nil {
		t.Fatalf("PutDelivery: %v", err)
	}
	clock.Advance(deliveryTTL - time.Minute)
	if got, err := s.GetDelivery(t.Context(), "k1"); err != nil || got != "dep-1" {
		t.Fatalf("GetDelivery just inside the window = %q, %v; want dep-1, nil", got, err)
	}
	clock.Advance(2 * time.Minute)
	if _, err := s.GetDelivery(t.Context(), "k1"); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("GetDelivery after the window: err = %v, want one wrapping ErrNotFound", err)
	}
}

// seedDeliveries stores n deliveries stamped at when, in one transaction.
func seedDeliveries(t *testing.T, s *Store, prefix string, n int, when time.Time) {
	t.Helper()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketDeliveries))
		for i := range n {
			v := fmt.Sprintf(`{"deployment_id":"dep-%d","time":%q}`, i, when.Format(time.RFC3339Nano))
			if err := b.Put(fmt.Appendf(nil, "%s-%04d", prefix, i), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("seed: %v", err)
	}
}

func TestPutDelivery_PrunesExpiredInBoundedSweeps(t *testing.T) {
	s, clock := newClockedStore(t)
	const old, recent = 300, 40
	seedDeliveries(t, s, "old", old, t0.Add(-deliveryTTL-time.Hour))
	seedDeliveries(t, s, "recent", recent, t0.Add(-deliveryTTL+time.Hour))
	// A value nothing can decode would otherwise stay forever.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketDeliveries)).Put([]byte("garbage"), []byte("{"))
	}); err != nil {
		t.Fatalf("seed garbage: %v", err)
	}
	total := old + recent + 1

	puts := 0
	put := func() {
		t.Helper()
		puts++
		if err := s.PutDelivery(t.Context(), fmt.Sprintf("new-%04d", puts), "dep-new"); err != nil {
			t.Fatalf("PutDelivery: %v", err)
		}
	}

	put()
	if got, want := countDeliveries(t, s), total+1-deliveryPruneScan; got < want {
		t.Fatalf("after one put: %d deliveries, want at least %d (one put removes at most %d)", got, want, deliveryPruneScan)
	}
	// Every entry is examined within (entries / scan) + 1 puts.
	for range (total+10)/deliveryPruneScan + 1 {
		put()
	}
	if got, want := countDeliveries(t, s), recent+puts; got != want {
		t.Fatalf("after a full sweep: %d deliveries, want %d (the recent and new ones)", got, want)
	}
	for _, key := range []string{"recent-0000", fmt.Sprintf("recent-%04d", recent-1), "new-0001"} {
		if _, err := s.GetDelivery(t.Context(), key); err != nil {
			t.Fatalf("GetDelivery(%s) after pruning: %v", key, err)
		}
	}

	// Once the recent ones age out, the next sweeps remove them too.
	clock.Advance(2 * time.Hour)
	for range (recent+puts)/deliveryPruneScan + 2 {
		put()
	}
	if _, err := s.GetDelivery(t.Context(), "recent-0000"); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("GetDelivery(recent-0000) after it expired: err = %v, want ErrNotFound", err)
	}
	var left []string
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketDeliveries)).ForEach(func(k, _ []byte) error {
			if !strings.HasPrefix(string(k), "new-") {
				left = append(left, string(k))
			}
			return nil
		})
	}); err != nil {
		t.Fatalf("View: %v", err)
	}
	if len(left) != 0 {
		t.Fatalf("expired deliveries left after sweeps: %v", left)
	}
}
