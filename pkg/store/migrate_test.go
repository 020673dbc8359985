package store

import (
	"errors"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestMigrations_OneForEachVersionBeforeTheCurrent(t *testing.T) {
	if got, want := len(migrations), schemaVersion-1; got != want {
		t.Fatalf("len(migrations) = %d, want schemaVersion-1 = %d", got, want)
	}
}

func schemaOf(t *testing.T, db *bolt.DB) string {
	t.Helper()
	var v string
	if err := db.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket([]byte(bucketMeta)).Get([]byte(keySchemaVersion)))
		return nil
	}); err != nil {
		t.Fatalf("View: %v", err)
	}
	return v
}

// A future schema 2 that renames a service field, run on the schema 1 file
// older code wrote.
func TestMigrate_RewritesRecordsAndStampsTheVersionReached(t *testing.T) {
	s := openTest(t, copySchema1(t))
	renameImage := func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketServices))
		return b.ForEach(func(k, v []byte) error {
			return b.Put(k, []byte(strings.Replace(string(v), `"active_image"`, `"image"`, 1)))
		})
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return migrate(tx, 1, []migration{renameImage}) }); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if got := schemaOf(t, s.db); got != "2" {
		t.Fatalf("schema version after migrating = %q, want 2", got)
	}
	var v string
	if err := s.db.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket([]byte(bucketServices)).Get([]byte("shop")))
		return nil
	}); err != nil {
		t.Fatalf("View: %v", err)
	}
	if !strings.Contains(v, `"image":"shop:v2"`) {
		t.Fatalf("service record after migrating = %s, want the field renamed", v)
	}
}

func TestMigrate_FailingStepLeavesTheFileAsItWas(t *testing.T) {
	s := openTest(t, copySchema1(t))
	boom := errors.New("boom")
	wipe := func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte(bucketServices)) }
	fail := func(*bolt.Tx) error { return boom }
	err := s.db.Update(func(tx *bolt.Tx) error { return migrate(tx, 1, []migration{wipe, fail}) })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "migrate schema 2 to 3") {
		t.Fatalf("migrate = %v, want the failing step's error naming its versions", err)
	}
	if got := schemaOf(t, s.db); got != "1" {
		t.Fatalf("schema version after a failed migration = %q, want 1", got)
	}
	if _, err := s.GetService(t.Context(), "shop"); err != nil {
		t.Fatalf("GetService after a failed migration: %v", err)
	}
}

func TestMigrate_VersionOutsideTheKnownOnesIsErrSchema(t *testing.T) {
	s := newStore(t)
	for _, from := range []int{0, 3} {
		err := s.db.Update(func(tx *bolt.Tx) error { return migrate(tx, from, []migration{func(*bolt.Tx) error { return nil }}) })
		if !errors.Is(err, ErrSchema) {
			t.Errorf("migrate from %d = %v, want ErrSchema", from, err)
		}
	}
}
