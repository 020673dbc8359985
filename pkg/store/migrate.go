package store

import (
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// schemaVersion is the version of the records this build writes (the
// types of record.go with this suffix). It is one more than the number of
// migrations: a file of any older version is brought up to it at Open.
const schemaVersion = 1

// A migration rewrites the records of one schema version into the next,
// inside the transaction that opens the file.
type migration func(tx *bolt.Tx) error

// migrations[i] turns a schema i+1 file into schema i+2. To change a stored
// form: add the new record type, switch the store to it, append the
// migration that decodes every old record with the old type and writes it
// with the new one, and bump schemaVersion. An older deployd then refuses
// the migrated file with ErrSchema instead of misreading it.
var migrations = []migration{}

// migrate brings a file of schema version from up to len(steps)+1 by
// running steps[from-1:] in order, and stamps the version reached. It runs
// in the caller's transaction, so a failing step leaves the file as it was.
func migrate(tx *bolt.Tx, from int, steps []migration) error {
	to := len(steps) + 1
	if from < 1 || from > to {
		return fmt.Errorf("schema version %d, this deployd understands 1 to %d: %w", from, to, ErrSchema)
	}
	for v := from; v < to; v++ {
		if err := steps[v-1](tx); err != nil {
			return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
		}
	}
	if err := tx.Bucket([]byte(bucketMeta)).Put([]byte(keySchemaVersion), []byte(strconv.Itoa(to))); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	return nil
}
